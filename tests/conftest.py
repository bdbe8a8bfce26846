"""Session fixtures: the real local stack, and per-test isolated names on it."""

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
import nats
import pytest
from kubernetes_asyncio import client, config
from nats.aio.client import Client as NatsClient
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from devstack.stack import Stack
from devstack.system import FabuSystem, new_token
from tests.support import gitlab as gitlab_support
from tests.support.gitlab import FakeGitLab
from tests.support.oidc import CLIENT_ID, CLIENT_SECRET, FakeGitLabIdentity
from tests.support.prometheus import Exporter, LocalPrometheus
from tests.support.registries import (
    PASSWORD,
    USER,
    Registry,
    TokenService,
    htpasswd_registry,
    token_registry,
)
from tests.support.smtp import Inbox, start_smtp
from tests.support.stack import StackEnv
from tests.support.trap import TRAP_HOST
from tests.support.wait import eventually

HARBOR_SECRET = "harbor-auth-header-for-tests"
# Fast pods for tests; the stack keeps whatever it was started with when reused.
TEST_READY_DELAY_MS = 500


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
async def no_tasks_left_behind() -> AsyncIterator[None]:
    """Fail any test that leaves asyncio tasks running: every task a test (or the code it
    runs) starts must have ended, or been cancelled and awaited, when it returns."""
    before = asyncio.all_tasks()
    yield
    this = asyncio.current_task()

    async def left() -> set[asyncio.Task[object]] | None:
        tasks = {t for t in asyncio.all_tasks() - before if t is not this and not t.done()}
        return tasks or None

    try:
        # A task cancelled a moment ago may need a turn of the loop to end.
        await eventually(lambda: _none(left), "no task left behind", within=2.0, interval=0.02)
    except AssertionError:
        names = sorted(t.get_name() + ": " + repr(t.get_coro()) for t in await left() or ())
        pytest.fail(f"the test left {len(names)} asyncio task(s) running: {names}")


async def _none(probe: Callable[[], Awaitable[object | None]]) -> bool:
    return await probe() is None


@pytest.fixture(scope="session")
def stack_env() -> Iterator[StackEnv]:
    """Bring the local stack up, or reuse a running one; stop it only if we started it."""
    with ExitStack() as cleanup:
        if os.environ.get("FABU_STACK") == "containers":
            from tests.support.containers import nats_and_mongo  # noqa: PLC0415

            os.environ.update(cleanup.enter_context(nats_and_mongo()))
        stack = Stack()
        started = not stack.is_up()
        env = stack.up(ready_delay_ms=TEST_READY_DELAY_MS)
        if started:
            cleanup.callback(stack.down)
        yield StackEnv.from_env(env)


def _local_prometheus(stack_env: StackEnv) -> LocalPrometheus:
    stack = Stack()
    if "prometheus" not in stack.pids():
        pytest.skip("FABU_PROMETHEUS_URL names a Prometheus outside the stack")
    return LocalPrometheus(stack, stack_env.prometheus_url)


@pytest.fixture
def exporter(stack_env: StackEnv) -> Iterator[Exporter]:
    """Counters the test sets, scraped by the stack's Prometheus every second (a
    test-owned stand-in for what a canary's pods would publish: tests/support/prometheus.py)."""
    server = Exporter(_local_prometheus(stack_env).stack.prometheus_targets)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def prometheus(stack_env: StackEnv) -> AsyncIterator[LocalPrometheus]:
    """The stack's Prometheus, which the test may stop and start; running again after it."""
    local = _local_prometheus(stack_env)
    try:
        yield local
    finally:
        if not local.running():
            await local.start()


@pytest.fixture(scope="session")
async def kube(stack_env: StackEnv) -> AsyncIterator[client.ApiClient]:
    api = await config.new_client_from_config(config_file=str(stack_env.kubeconfig))
    async with api:
        yield api


async def _own_namespace(kube: client.ApiClient) -> AsyncIterator[str]:
    core = client.CoreV1Api(kube)
    name = unique("t")
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    await core.delete_namespace(name)


@pytest.fixture
async def namespace(kube: client.ApiClient) -> AsyncIterator[str]:
    """A namespace of the test's own, deleted afterwards."""
    async for name in _own_namespace(kube):
        yield name


@pytest.fixture
async def other_namespace(kube: client.ApiClient) -> AsyncIterator[str]:
    """A second namespace of the test's own (a second environment), deleted afterwards."""
    async for name in _own_namespace(kube):
        yield name


@pytest.fixture
async def mongo_db(stack_env: StackEnv) -> AsyncIterator[AsyncDatabase[dict[str, object]]]:
    """A database of the test's own, dropped afterwards."""
    mongo: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(stack_env.mongo_url)
    name = unique("t").replace("-", "_")
    try:
        yield mongo[name]
        await mongo.drop_database(name)
    finally:
        await mongo.close()


@pytest.fixture
async def nats_client(stack_env: StackEnv) -> AsyncIterator[NatsClient]:
    nc = await nats.connect(stack_env.nats_url)
    try:
        yield nc
    finally:
        await nc.drain()


@pytest.fixture
def stream_name() -> str:
    """A JetStream stream name (and subject prefix) of the test's own."""
    return unique("T").replace("-", "_").upper()


@pytest.fixture(scope="session")
def inbox() -> Iterator[Inbox]:
    controller, received = start_smtp()
    try:
        yield received
    finally:
        controller.stop()


@pytest.fixture(scope="session")
async def gitlab() -> AsyncIterator[FakeGitLab]:
    """The tests' GitLab stand-in (not GitLab: see tests/support/gitlab.py)."""
    server = FakeGitLab()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(scope="session")
async def identity() -> AsyncIterator[FakeGitLabIdentity]:
    """The tests' stand-in for GitLab as an OpenID Connect provider (see tests/support/oidc.py)."""
    server = FakeGitLabIdentity()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@dataclass
class AuthRegistries:
    basic: Registry
    token: Registry
    tokens: TokenService


@pytest.fixture(scope="session")
async def auth_registries(
    stack_env: StackEnv, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AuthRegistries]:
    """Two more real registries: behind htpasswd, and behind token auth."""
    root = tmp_path_factory.mktemp("registries")
    tokens = TokenService(root / "tokens")
    await tokens.start()
    basic = htpasswd_registry(root / "basic")
    token = token_registry(root / "token", tokens)
    try:
        yield AuthRegistries(basic, token, tokens)
    finally:
        basic.stop()
        token.stop()
        await tokens.stop()


@pytest.fixture(scope="session")
async def fabu(
    stack_env: StackEnv,
    inbox: Inbox,
    gitlab: FakeGitLab,
    identity: FakeGitLabIdentity,
    auth_registries: AuthRegistries,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[FabuSystem]:
    """All five services, started once for the session on their own database and stream."""
    system = FabuSystem(
        stack_env.as_env(),
        tmp_path_factory.mktemp("fabu"),
        smtp_port=inbox.port,
        name=unique("f"),
        # Short, so a killed stage's message reaches its replacement soon.
        extra_env={
            "FABU_ACK_WAIT_S": "3",
            # The tests' Git sources are repositories on this machine.
            "FABU_GIT_PROTOCOLS": "file,https,ssh",
            # The trap listener's address (tests/support/trap.py), and the clouds'.
            "FABU_EGRESS_DENY": f"{TRAP_HOST}/32,metadata",
            "FABU_APPLY_RETRY_S": "0.25",
            # Every test logs in from 127.0.0.1 and the fuzzing fails logins by the dozen:
            # a limit none reaches (test_hardening throttles an API of its own).
            "FABU_LOGIN_ATTEMPTS": "1000000",
            "FABU_NOTIFY_CLAIM_STALE_S": "5",
            "FABU_GITLAB_URL": gitlab.url,
            "FABU_GITLAB_TOKEN": gitlab_support.TOKEN,
            "FABU_GITLAB_WEBHOOK_TOKEN": gitlab_support.WEBHOOK_SECRET,
            "FABU_HARBOR_WEBHOOK_SECRET": HARBOR_SECRET,
            "FABU_OIDC_ISSUER": identity.url,
            "FABU_OIDC_CLIENT_ID": CLIENT_ID,
            "FABU_OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "FABU_REGISTRIES": json.dumps(
                {
                    stack_env.registry_url.removeprefix("http://"): {"url": stack_env.registry_url},
                    **{
                        r.host: {"url": r.url, "username": USER, "password": PASSWORD}
                        for r in (auth_registries.basic, auth_registries.token)
                    },
                }
            ),
        },
    )
    system.start_all()
    try:
        async with httpx.AsyncClient(base_url=system.api_url) as http:

            async def healthy() -> bool:
                try:
                    return (await http.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(healthy, "the API to answer", within=30)
        yield system
    finally:
        system.stop()


@pytest.fixture(scope="session")
async def admin_token(fabu: FabuSystem) -> str:
    """An API token of the first user, ``admin``."""
    return await new_token(fabu.api_url, "admin", fabu.admin_password, "tests")


@pytest.fixture
async def api(fabu: FabuSystem, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    """The JSON API as ``admin``."""
    async with httpx.AsyncClient(
        base_url=fabu.api_url + "/api/v1",
        timeout=30,
        headers={"Authorization": f"Bearer {admin_token}"},
    ) as http:
        yield http
