"""The stack manager itself: external services pass through, and down leaves nothing."""

from pathlib import Path

import pytest

from devstack.stack import Stack
from tests.support.stack import StackEnv


def test_external_services_pass_through_and_down_stops_everything(
    stack_env: StackEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Point a second stack at the running cluster and database: it must start
    # only NATS and the registry, and hand the external URLs through untouched.
    monkeypatch.setenv("KUBECONFIG", str(stack_env.kubeconfig))
    monkeypatch.setenv("FABU_MONGO_URL", stack_env.mongo_url)
    monkeypatch.delenv("FABU_NATS_URL", raising=False)
    monkeypatch.delenv("FABU_REGISTRY_URL", raising=False)
    second = Stack(tmp_path / "second")

    env = second.up()
    try:
        assert env["KUBECONFIG"] == str(stack_env.kubeconfig)
        assert env["FABU_MONGO_URL"] == stack_env.mongo_url
        assert env["FABU_NATS_URL"] != stack_env.nats_url
        assert set(second.running()) == {"nats", "registry"}
        assert all(second.running().values())
        pids = {pid for pid, _ in second.pids().values()}
    finally:
        stopped = second.down()

    assert stopped == ["nats", "registry"]
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    assert not second.is_up()
