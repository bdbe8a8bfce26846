"""The stack manager itself: external services pass through, and down leaves nothing."""

import asyncio
import signal
import time
from pathlib import Path

import nats
import pytest
from nats.errors import Error as NatsError
from nats.js.api import StorageType
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from devstack.stack import Stack
from tests.support.stack import StackEnv


@pytest.fixture
def second(stack_env: StackEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """A second stack pointed at the running cluster, database and Prometheus: it starts
    only NATS and the registry of its own."""
    monkeypatch.setenv("KUBECONFIG", str(stack_env.kubeconfig))
    monkeypatch.setenv("FABU_MONGO_URL", stack_env.mongo_url)
    monkeypatch.setenv("FABU_PROMETHEUS_URL", stack_env.prometheus_url)
    monkeypatch.delenv("FABU_NATS_URL", raising=False)
    monkeypatch.delenv("FABU_REGISTRY_URL", raising=False)
    return Stack(tmp_path / "second")


@pytest.fixture
def own_database(stack_env: StackEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """A stack pointed at the running cluster, NATS, registry and Prometheus: it starts
    only the MongoDB-protocol server (SecantusDB) of its own."""
    monkeypatch.setenv("KUBECONFIG", str(stack_env.kubeconfig))
    monkeypatch.setenv("FABU_PROMETHEUS_URL", stack_env.prometheus_url)
    monkeypatch.setenv("FABU_NATS_URL", stack_env.nats_url)
    monkeypatch.setenv("FABU_REGISTRY_URL", stack_env.registry_url)
    monkeypatch.delenv("FABU_MONGO_URL", raising=False)
    return Stack(tmp_path / "own-database")


def test_external_services_pass_through_and_down_stops_everything(
    stack_env: StackEnv, second: Stack
) -> None:
    # It must hand the external URLs through untouched.
    env = second.up()
    try:
        assert env["KUBECONFIG"] == str(stack_env.kubeconfig)
        assert env["FABU_MONGO_URL"] == stack_env.mongo_url
        assert env["FABU_PROMETHEUS_URL"] == stack_env.prometheus_url
        assert env["FABU_NATS_URL"] != stack_env.nats_url
        assert set(second.running()) == {"nats", "registry"}
        assert all(second.running().values())
        pids = {pid for pid, _ in second.pids().values()}
    finally:
        stopped = second.down()

    assert stopped == ["nats", "registry"]
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    assert not second.is_up()


async def test_one_component_restarts_with_its_port_and_data(second: Stack) -> None:
    """What make chaos does to NATS and the API server, on a stack of its own."""
    url = second.up()["FABU_NATS_URL"]
    try:
        await _restart_keeps_data(second, url)
    finally:
        second.down()


async def _restart_keeps_data(stack: Stack, url: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="kept", subjects=["kept.>"], storage=StorageType.FILE)
    await js.publish("kept.one", b"before the restart")
    await nc.close()

    stack.stop_component("nats", signal.SIGKILL)
    assert stack.running()["nats"] is False
    stack.start_component("nats")
    assert stack.running()["nats"] is True

    deadline = time.monotonic() + 30
    while True:
        try:
            nc = await nats.connect(url, allow_reconnect=False, connect_timeout=1)
            kept = await nc.jetstream().get_msg("kept", 1)
            break
        except (OSError, NatsError):
            assert time.monotonic() < deadline, "NATS did not come back"
            await asyncio.sleep(0.2)
    await nc.close()
    assert kept.data == b"before the restart"


async def test_the_database_restarts_with_its_port_and_data(own_database: Stack) -> None:
    """What make chaos does to the database (SecantusDB): SIGKILLed, started again on its
    port, it still holds every write it had acknowledged."""
    url = own_database.up()["FABU_MONGO_URL"]
    try:
        assert set(own_database.running()) == {"secantusdb"}
        assert url.endswith("?directConnection=true")
        await _database_restart_keeps_data(own_database, url)
    finally:
        own_database.down()


async def _database_restart_keeps_data(stack: Stack, url: str) -> None:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(url)
    try:
        kept = client["kept"]["docs"]
        await kept.insert_many([{"_id": n} for n in range(200)])
        await kept.update_one({"_id": 0}, {"$addToSet": {"tags": "last"}})
    finally:
        await client.close()

    stack.stop_component("secantusdb", signal.SIGKILL)
    assert stack.running()["secantusdb"] is False
    stack.start_component("secantusdb")
    assert stack.running()["secantusdb"] is True

    client = AsyncMongoClient(url, serverSelectionTimeoutMS=1000)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                count = await client["kept"]["docs"].count_documents({})
                first = await client["kept"]["docs"].find_one({"_id": 0})
                break
            except PyMongoError:
                assert time.monotonic() < deadline, "the database did not come back"
                await asyncio.sleep(0.2)
    finally:
        await client.close()
    assert count == 200
    assert first == {"_id": 0, "tags": ["last"]}
