"""Hostile input: the whole API fuzzed from its OpenAPI description, and the inputs an
attacker or a careless client sends: never a 5xx, never an answer outside the schema."""

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from devstack.system import FabuSystem
from tests.conftest import unique
from tests.support.git import repository as git_repository
from tests.support.releases import prepare, push
from tests.support.stack import StackEnv
from tests.support.trap import TRAP_HOST, Listener

EXAMPLES = 10
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


@pytest.fixture
async def trap() -> AsyncIterator[Listener]:
    """A listener on an address the tests' Fabu denies: no request may reach it."""
    async with Listener(TRAP_HOST) as listener:
        yield listener


async def test_no_input_makes_the_api_fail_or_answer_outside_its_schema(
    fabu: FabuSystem, admin_token: str, trap: Listener
) -> None:
    """Every operation of /openapi.json, with generated valid and invalid input, as admin.

    It runs in a thread: the tests' stand-ins (the GitLab identity provider) serve
    from this event loop.
    """
    failures = await asyncio.to_thread(fuzz_all, fabu.api_url, admin_token)
    assert not failures, "\n\n".join(failures)
    assert trap.connections == 0


async def test_a_template_source_runs_nothing_on_the_apis_host(
    api: httpx.AsyncClient, tmp_path: Path, trap: Listener
) -> None:
    """The attack that once ran a command: refused with 422 naming the field, and the
    canary file it would create is never created."""
    canary = tmp_path / "canary"
    touch = f"touch {canary}"
    repository = git_repository(tmp_path, "kind: ConfigMap\n")[0].as_uri()
    before = len((await api.get("/templates")).json())
    for field, source in [
        ("url", {"url": f"--upload-pack={touch}", "ref": "main"}),
        ("url", {"url": f"ext::sh -c touch% {canary}", "ref": "main"}),
        ("url", {"url": "ssh://-oProxyCommand=touch%20x/r", "ref": "main"}),
        ("ref", {"url": repository, "ref": f"--upload-pack={touch}"}),
        ("ref", {"url": "https://git.example.com/t.git", "ref": f"-u{touch}"}),
    ]:
        body = {"name": "t", "source": {"type": "git", "path": "web.yaml.j2", **source}}
        answer = await api.post("/templates", json=body)
        assert answer.status_code == 422, (source, answer.text)
        [error] = answer.json()["detail"]
        assert error["loc"][-1] == field, (source, error)
    # A Git remote over HTTP is an egress like any other: the trap is never reached.
    url = f"https://{TRAP_HOST}:{trap.port}/t.git"
    body = {"name": "t", "source": {"type": "git", "url": url, "path": "t.yaml"}}
    answer = await api.post("/templates", json=body)
    assert answer.status_code == 422, answer.text
    assert "may not reach" in answer.text
    # The same repository, named properly, is read.
    body = {"name": "t", "source": {"type": "git", "url": repository, "path": "web.yaml.j2"}}
    assert (await api.post("/templates", json=body)).status_code == 201
    assert len((await api.get("/templates")).json()) == before + 1
    assert not canary.exists()
    assert trap.connections == 0


async def test_notification_urls_cannot_name_denied_addresses(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, trap: Listener
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    where = f"/services/{service}/notifications/{environment}"
    before = (await api.get(where)).json()
    for channel in (
        {"type": "webhook", "url": trap.url},
        {"type": "dingtalk", "url": f"http://{TRAP_HOST}:{trap.port}/robot/send?access_token=x"},
        {"type": "webhook", "url": "http://169.254.169.254/latest/meta-data/"},
        {"type": "webhook", "url": "http://[::ffff:169.254.169.254]/"},
        {"type": "webhook", "url": "http://[not-an-address/"},
    ):
        answer = await api.put(where, json=[{"type": "email", "recipients": ["a@b.c"]}, channel])
        assert answer.status_code == 422, (channel, answer.text)
        assert "[1].url" in answer.text, answer.text
    assert (await api.get(where)).json() == before
    assert trap.connections == 0


async def test_kubeconfigs_stay_in_the_operators_directory(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, tmp_path: Path
) -> None:
    directory = stack_env.kubeconfig.parent
    outside = tmp_path / "elsewhere.yaml"
    shutil.copy(stack_env.kubeconfig, outside)
    link = directory / f"link-{namespace}.yaml"
    link.symlink_to(outside)
    try:
        for name in (str(outside), "/etc/passwd", "../../../../etc/passwd", link.name):
            body = {"name": unique("e"), "namespace": namespace, "kubeconfig": name}
            answer = await api.post("/environments", json=body)
            assert answer.status_code == 422, (name, answer.text)
            assert "not in the kubeconfig directory" in answer.text
            # Only the name given is told, never where it led.
            assert str(tmp_path) not in answer.text.replace(name, "")
        body = {"name": unique("e"), "namespace": namespace, "kubeconfig": "nowhere.yaml"}
        answer = await api.post("/environments", json=body)
        assert answer.status_code == 422
        assert "'nowhere.yaml' is not a file in the kubeconfig directory" in answer.text
        named = {
            "name": unique("e"),
            "namespace": namespace,
            "kubeconfig": stack_env.kubeconfig.name,
        }
        assert (await api.post("/environments", json=named)).status_code == 201
    finally:
        link.unlink()


def fuzz_all(api_url: str, admin_token: str) -> list[str]:
    headers = {"Authorization": f"Bearer {admin_token}"}
    schema = schemathesis.openapi.from_url(api_url + "/openapi.json", headers=headers)
    failures: list[str] = []
    operations = list(schema.get_all_operations())
    # Every operation of the description, read without error.
    assert len(operations) >= 50
    for found in operations:
        operation = found.ok()  # type: ignore[union-attr]

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,  # the same inputs every run: a failure reproduces
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def fuzz(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)

        try:
            fuzz()
        except Exception as exc:
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    return failures


async def test_hostile_bodies_get_a_clear_4xx_and_nothing_is_stored(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    await push(api, service, "1.0")
    release = {"service": service, "environment": environment, "version": "1.0"}

    async def refused(answer: httpx.Response, status: int, words: str) -> None:
        assert answer.status_code == status, answer.text
        assert words in answer.text
        listed = (await api.get("/releases", params={"service": service})).json()
        assert listed["items"] == []

    huge = {**release, "description": "x" * 2_000_000}
    await refused(await api.post("/releases", json=huge), 413, "")
    deep: Any = "x"
    for _ in range(40):
        deep = [deep]
    await refused(await api.post("/releases", json={**release, "description": deep}), 422, "nested")
    very_deep = b'{"service": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    answer = await api.post(
        "/releases", content=very_deep, headers={"Content-Type": "application/json"}
    )
    # Too deep for Python's JSON parser: FastAPI refuses it before any route runs.
    await refused(answer, 400, "error parsing the body")
    await refused(
        await api.post("/releases", json={**release, "description": "a\x00b"}), 422, "NUL"
    )
    surrogate = json.dumps({**release, "description": "x"})[:-2] + '\\ud800"}'
    answer = await api.post(
        "/releases", content=surrogate, headers={"Content-Type": "application/json"}
    )
    await refused(answer, 422, "surrogate")
    await refused(
        await api.post(
            "/releases", content=b"{not json", headers={"Content-Type": "application/json"}
        ),
        422,
        "",
    )

    words = "发布 🚀 שלום Ünïcødé"
    accepted = await api.post("/releases", json={**release, "description": words})
    assert accepted.status_code == 202, accepted.text
    assert (await api.get(f"/releases/{accepted.json()['id']}")).json()["description"] == words


async def test_template_paths_cannot_leave_their_repository(api: httpx.AsyncClient) -> None:
    before = len((await api.get("/templates")).json())
    for path in ("../etc/passwd", "templates/../../secret", "/etc/passwd", "a\\..\\b"):
        source = {"type": "git", "url": "file:///nowhere", "path": path, "ref": "main"}
        answer = await api.post("/templates", json={"name": "t", "source": source})
        assert answer.status_code == 422, (path, answer.text)
        assert "inside the repository" in answer.text
    assert len((await api.get("/templates")).json()) == before


async def test_notification_fields_cannot_inject_headers(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(
        api, stack_env, namespace, notify_emails=["team@example.com"]
    )
    where = f"/services/{service}/notifications/{environment}"
    before = (await api.get(where)).json()
    for channel in (
        {"type": "email", "recipients": ["team@example.com\r\nBcc: all@example.com"]},
        {"type": "webhook", "url": "https://hooks.example.com/x\r\nX-Evil: 1"},
        {"type": "dingtalk", "url": "https://oapi.dingtalk.com/robot/send", "secret": "S\r\nX: 1"},
    ):
        answer = await api.put(where, json=[channel])
        assert answer.status_code == 422, (channel, answer.text)
    assert (await api.get(where)).json() == before
