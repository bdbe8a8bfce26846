"""The ``fabu`` command line against the running system: its exit codes follow releases."""

import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from devstack import kwok
from devstack.system import FabuSystem
from tests.conftest import unique
from tests.support.releases import DEMO, finished, prepare, push
from tests.support.stack import StackEnv
from tests.support.users import make_user, token_for

FABU = Path(sys.executable).parent / "fabu"


async def fabu_cli(*args: str, env: dict[str, str], stdin: str = "") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(FABU),
        *args,
        env={**os.environ, **env},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_ci_job_releases_waits_and_gets_the_result_as_its_exit_code(
    api: httpx.AsyncClient,
    fabu: FabuSystem,
    admin_token: str,
    stack_env: StackEnv,
    namespace: str,
    tmp_path: Path,
) -> None:
    env = {"FABU_URL": fabu.api_url, "FABU_TOKEN": admin_token, "XDG_CONFIG_HOME": str(tmp_path)}
    service, environment = await prepare(api, stack_env, namespace, rollout_timeout_s=5)
    await push(api, service, "1.0")
    await push(api, service, "2.0-never-ready")

    code, out, err = await fabu_cli(
        "release", "create", service, environment, "1.0", "-d", "from CI", "--watch", env=env
    )
    assert code == 0, err
    assert f'deployment "{service}" successfully rolled out' in out
    assert out.rstrip().splitlines()[-1].endswith("succeeded")
    first = out.split()[0]

    code, out, err = await fabu_cli(
        "release", "create", service, environment, "2.0-never-ready", "--watch", env=env
    )
    assert code == 1, out + err
    assert "failed: rollout not finished within 5s" in out
    # The cause in one sentence, and the way back.
    assert "cause: 1 of 1 new pods not Ready for " in out
    assert f"last good: 1.0 (release {first}); roll back to it with: " in out
    assert f"fabu release rollback {first}" in out
    failed = out.split()[0]
    code, out, err = await fabu_cli("release", "show", failed, env=env)
    assert code == 0, err
    assert f"fabu release rollback {first}" in out

    code, out, err = await fabu_cli("service", "status", service, env=env)
    assert code == 0, err
    head, running, *rest = out.splitlines()
    assert head.split()[:4] == [environment, "Degraded", "Synced", "2.0-never-ready"]
    assert running.startswith("  running: ")
    assert ":2.0-never-ready x1" in running
    assert any(line.startswith(f"  Deployment/{service}") for line in rest)
    assert f"  last good: 1.0 (release {first}): fabu release rollback {first}" in rest
    code, _, err = await fabu_cli("service", "status", "no-such-service", env=env)
    assert code == 2
    assert err.strip() == "fabu: service 'no-such-service' not found (404)"

    code, out, err = await fabu_cli("-o", "json", "release", "list", "--service", service, env=env)
    assert code == 0, err
    listed: dict[str, Any] = json.loads(out)
    assert [(r["version"], r["state"]) for r in listed["items"]] == [
        ("2.0-never-ready", "failed"),
        ("1.0", "succeeded"),
    ]
    assert listed["items"][1]["description"] == "from CI"

    code, out, err = await fabu_cli("release", "rollback", first, "--watch", env=env)
    assert code == 0, err
    code, out, _ = await fabu_cli("-o", "json", "release", "show", out.split()[0], env=env)
    shown = json.loads(out)
    assert (shown["kind"], shown["version"], shown["state"]) == ("rollback", "1.0", "succeeded")

    repository = (await api.get(f"/services/{service}")).json()["image_repository"]
    code, out, err = await fabu_cli(
        "-o",
        "json",
        "image",
        "register",
        "--service",
        service,
        "--repository",
        repository,
        "--tag",
        "3.0",
        "--digest",
        "sha256:" + "ab" * 32,
        "--commit-sha",
        "c0ffee",
        env=env,
    )
    assert code == 0, err
    assert json.loads(out)["tags"] == ["3.0"]
    code, out, err = await fabu_cli("template", "sync", env=env)
    assert (code, out.strip()) == (0, "every template is being read again from its source"), err


async def test_login_keeps_a_token_and_a_bad_one_fails_with_exit_code_2(
    fabu: FabuSystem, tmp_path: Path
) -> None:
    env = {"FABU_URL": fabu.api_url, "XDG_CONFIG_HOME": str(tmp_path), "FABU_TOKEN": ""}
    code, out, err = await fabu_cli(
        "login", "--user", "admin", "--password-stdin", env=env, stdin=fabu.admin_password + "\n"
    )
    assert code == 0, err
    config = tmp_path / "fabu" / "config.json"
    assert config.stat().st_mode & 0o777 == 0o600
    assert json.loads(config.read_text())["token"].startswith("fabu_")
    code, out, err = await fabu_cli("-o", "json", "release", "list", "--limit", "1", env=env)
    assert code == 0, err
    assert len(json.loads(out)["items"]) <= 1

    code, _, err = await fabu_cli("--token", "fabu_not-a-token", "release", "list", env=env)
    assert code == 2
    assert "(401)" in err
    code, _, err = await fabu_cli(
        "login", "--user", "admin", "--password-stdin", env=env, stdin="wrong\n"
    )
    assert (code, "(401)" in err) == (2, True)


async def test_a_failed_release_shows_its_cause_failing_pods_and_their_last_log_lines(
    api: httpx.AsyncClient,
    fabu: FabuSystem,
    admin_token: str,
    stack_env: StackEnv,
    namespace: str,
    tmp_path: Path,
) -> None:
    env = {"FABU_URL": fabu.api_url, "FABU_TOKEN": admin_token, "XDG_CONFIG_HOME": str(tmp_path)}
    service, environment = await prepare(api, stack_env, namespace, rollout_timeout_s=6)
    await push(api, service, "1.1.0-crash-loop")
    code, out, err = await fabu_cli(
        "release", "create", service, environment, "1.1.0-crash-loop", "--watch", env=env
    )
    assert code == 1, out + err
    failed = out.split()[0]
    code, shown, err = await fabu_cli("release", "show", failed, env=env)
    assert code == 0, err
    for text in (out, shown):
        assert "cause: " in text
        assert f"pod {service}-" in text
        assert "  container app: " in text
        assert "restarts " in text
        assert "last lines of previous container's log:" in text
        for line in kwok.PREVIOUS_LOG_LINES:
            assert f"    | {line}" in text
    # The failed version goes again only when the person says so.
    code, out, err = await fabu_cli("release", "redeploy", failed, env=env)
    assert code == 2, out + err
    assert err.startswith("1.1.0-crash-loop failed (")
    assert err.rstrip().endswith("add --yes to go ahead")
    code, out, err = await fabu_cli("release", "redeploy", failed, "--yes", env=env)
    assert code == 0, out + err
    again = await finished(api, out.split()[0])
    assert (again["kind"], again["version"]) == ("redeploy", "1.1.0-crash-loop")


async def test_errors_are_one_sentence_naming_the_field_and_lists_are_tables(
    api: httpx.AsyncClient,
    fabu: FabuSystem,
    admin_token: str,
    stack_env: StackEnv,
    namespace: str,
    tmp_path: Path,
) -> None:
    env = {"FABU_URL": fabu.api_url, "FABU_TOKEN": admin_token, "XDG_CONFIG_HOME": str(tmp_path)}
    service, environment = await prepare(api, stack_env, namespace)
    code, _, err = await fabu_cli("release", "create", service, environment, "bad tag!", env=env)
    assert code == 2
    [line] = err.strip().splitlines()
    assert line.startswith("fabu: version: ")
    assert line.endswith("(422)")
    assert "[{" not in line

    long_version = "1.0.0-a-rather-long-prerelease-name"
    await push(api, service, "1.0")
    await push(api, service, long_version)
    for version in ("1.0", long_version, "1.0"):
        code, out, err = await fabu_cli(
            "release", "create", service, environment, version, "--watch", env=env
        )
        assert code == 0, out + err
    code, out, err = await fabu_cli(
        "release", "list", "--service", service, "--limit", "2", env=env
    )
    assert code == 0, err
    header, *rows, more = out.rstrip().splitlines()
    assert header.split() == [
        "ID",
        "SERVICE",
        "ENVIRONMENT",
        "VERSION",
        "STATE",
        "TOOK",
        "OPERATOR",
        "DESCRIPTION",
    ]
    assert len(rows) == 2
    # Every column starts where its header does, whatever the length of the values.
    state_at = header.index("STATE")
    assert all(row[state_at:].startswith("succeeded") for row in rows)
    assert long_version in rows[1]
    assert more.startswith("more: add --cursor ")
    code, out, err = await fabu_cli(
        "release",
        "list",
        "--service",
        service,
        "--limit",
        "2",
        "--cursor",
        more.split()[-1],
        env=env,
    )
    assert code == 0, err
    header, row = out.rstrip().splitlines()
    assert " 1.0 " in row

    code, out, err = await fabu_cli("completion", "bash", env=env)
    assert code == 0, err
    assert "_shtab_fabu_subparsers=('login' 'release'" in out
    assert "complete -o filenames -F _shtab_fabu fabu" in out


async def test_a_service_set_up_and_archived_from_the_cli(
    api: httpx.AsyncClient,
    fabu: FabuSystem,
    admin_token: str,
    stack_env: StackEnv,
    namespace: str,
    tmp_path: Path,
) -> None:
    env = {"FABU_URL": fabu.api_url, "FABU_TOKEN": admin_token, "XDG_CONFIG_HOME": str(tmp_path)}
    environment, service = unique("e"), unique("svc")
    registry = stack_env.registry_url.removeprefix("http://")
    steps = [
        (
            "environment",
            "create",
            environment,
            "--namespace",
            namespace,
            "--kubeconfig",
            str(stack_env.kubeconfig),
            "--rollout-timeout-s",
            "60",
        ),
        (
            "service",
            "create",
            service,
            "--team",
            "core",
            "--image-repository",
            f"{registry}/team/{service}",
        ),
    ]
    for step in steps:
        code, out, err = await fabu_cli(*step, env=env)
        assert code == 0, err
        assert out.splitlines()[0].split()[0] == "NAME"
    template_file = tmp_path / "web.yaml.j2"
    template_file.write_text(DEMO)
    code, out, err = await fabu_cli(
        "-o", "json", "template", "create", "web", "-f", str(template_file), env=env
    )
    assert code == 0, err
    template_id = json.loads(out)["id"]
    values = tmp_path / "values.yaml"
    values.write_text("replicas: 2\n")
    code, out, err = await fabu_cli(
        "config",
        "set",
        service,
        environment,
        "--template",
        template_id,
        "--values",
        str(values),
        env=env,
    )
    assert (code, out.strip()) == (0, "saved version 1"), err
    code, out, err = await fabu_cli("config", "show", service, environment, env=env)
    assert code == 0, err
    assert '"replicas": 2' in out
    values.write_text("replcas: 3\n")
    code, _, err = await fabu_cli(
        "config", "set", service, environment, "--values", str(values), env=env
    )
    assert code == 2
    assert err.startswith("fabu: params.replcas: not a parameter of this template")

    await push(api, service, "1.0")
    code, out, err = await fabu_cli("release", "create", service, environment, "1.0", "-w", env=env)
    assert code == 0, out + err

    channels = tmp_path / "channels.yaml"
    channels.write_text("- type: email\n  recipients: [team@example.com]\n")
    code, out, err = await fabu_cli(
        "notifications", "set", environment, "-f", str(channels), env=env
    )
    assert code == 0, err
    assert out.splitlines()[0].split() == ["TYPE", "TO", "EVENTS", "LANGUAGE"]
    channels.write_text("- type: email\n  recipients: [svc@example.com]\n")
    code, out, err = await fabu_cli(
        "notifications", "set", environment, "--service", service, "-f", str(channels), env=env
    )
    assert "svc@example.com" in out
    code, out, err = await fabu_cli(
        "notifications", "reset", environment, "--service", service, env=env
    )
    assert code == 0, err
    assert "team@example.com" in out
    channels.write_text("- type: email\n")
    code, _, err = await fabu_cli("notifications", "set", environment, "-f", str(channels), env=env)
    assert code == 2
    assert "an email channel needs recipients" in err

    code, out, err = await fabu_cli("service", "archive", service, env=env)
    assert code == 0, err
    assert "archived" in out
    code, out, err = await fabu_cli("service", "list", env=env)
    assert service not in out
    code, out, err = await fabu_cli("service", "list", "--archived", env=env)
    assert service in out
    code, _, err = await fabu_cli("release", "create", service, environment, "1.0", env=env)
    assert code == 2
    assert f"service {service} is archived" in err
    code, _, err = await fabu_cli("service", "restore", service, env=env)
    assert code == 0, err
    code, out, err = await fabu_cli("environment", "list", env=env)
    assert environment in out


async def _lines_until(
    stream: asyncio.StreamReader, seen: list[str], wanted: str, within: float = 90
) -> None:
    """Read a running command's output into ``seen`` until a line holds ``wanted``."""
    deadline = asyncio.get_running_loop().time() + within
    while not any(wanted in line for line in seen):
        left = deadline - asyncio.get_running_loop().time()
        try:
            line = await asyncio.wait_for(stream.readline(), max(left, 0.1))
        except TimeoutError:
            raise AssertionError(f"no line with {wanted!r} within {within}s: {seen}") from None
        if not line:
            raise AssertionError(f"the command ended before printing {wanted!r}: {seen}")
        seen.append(line.decode().rstrip("\n"))


async def test_a_watch_awaiting_approval_names_the_approvers_and_gives_up_at_its_timeout(
    api: httpx.AsyncClient,
    fabu: FabuSystem,
    admin_token: str,
    stack_env: StackEnv,
    namespace: str,
    tmp_path: Path,
) -> None:
    env = {"FABU_URL": fabu.api_url, "FABU_TOKEN": admin_token, "XDG_CONFIG_HOME": str(tmp_path)}
    service, environment = await prepare(api, stack_env, namespace)
    settings = (await api.get(f"/environments/{environment}")).json()
    answer = await api.put(
        f"/environments/{environment}", json={**settings, "approval_required": True}
    )
    assert answer.status_code == 200, answer.text
    await push(api, service, "1.0")
    approver = await make_user(api, [{"role": "releaser", "environment": environment}])
    approver_token = (await token_for(api, approver))["token"]

    code, _, err = await fabu_cli(
        "release", "create", service, environment, "1.0", "--timeout", "5", env=env
    )
    assert (code, err.strip()) == (
        2,
        "fabu: timeout: give --watch too (--timeout bounds how long it follows)",
    )
    started = time.monotonic()
    code, out, err = await fabu_cli(
        "release", "create", service, environment, "1.0", "--watch", "--timeout", "5", env=env
    )
    took = time.monotonic() - started
    assert code == 4, out + err
    assert 5 <= took < 30
    release_id = out.split()[0]
    lines = out.rstrip().splitlines()
    [awaits] = [line for line in lines if "awaits approval" in line]
    assert awaits.startswith(f"release {release_id} awaits approval; may approve it: ")
    assert approver in awaits.partition("may approve it: ")[2].split(", ")
    assert f"  approve: fabu release approve {release_id}" in lines
    assert f"  reject:  fabu release reject {release_id}" in lines
    assert lines[-1] == (
        f"gave up after 5 s: release {release_id} is still awaiting_approval "
        f"(nothing was cancelled); follow it with: fabu release watch {release_id}"
    )
    # Giving up cancelled nothing: the release still waits for its approver.
    assert (await api.get(f"/releases/{release_id}")).json()["state"] == "awaiting_approval"

    code, out, err = await fabu_cli(
        "--token", approver_token, "release", "reject", release_id, env=env
    )
    assert code == 0, err
    code, out, err = await fabu_cli("release", "watch", release_id, "--timeout", "60", env=env)
    assert code == 3, out + err
    assert f"release {release_id} rejected" in out.rstrip().splitlines()[-1]
    # Replayed, the wait that is over is not announced again.
    assert "awaits approval" not in out


async def test_a_watched_canary_says_each_pause_once_with_its_commands_and_abort_exits_3(
    api: httpx.AsyncClient,
    fabu: FabuSystem,
    admin_token: str,
    stack_env: StackEnv,
    namespace: str,
    tmp_path: Path,
) -> None:
    env = {"FABU_URL": fabu.api_url, "FABU_TOKEN": admin_token, "XDG_CONFIG_HOME": str(tmp_path)}
    canary = [{"weight": 10}, {"weight": 50}]
    service, environment = await prepare(api, stack_env, namespace, replicas=2, canary=canary)
    await push(api, service, "1.0")
    await push(api, service, "2.0")
    code, out, err = await fabu_cli("release", "create", service, environment, "1.0", "-w", env=env)
    assert code == 0, out + err

    process = await asyncio.create_subprocess_exec(
        str(FABU),
        *("release", "create", service, environment, "2.0", "--watch", "--timeout", "120"),
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    seen: list[str] = []
    try:
        await _lines_until(process.stdout, seen, "  abort:   fabu release abort ")
        release_id = seen[0].split()[0]
        assert f"release {release_id} paused at canary step 1 of 2, 10 % asked" in seen
        assert f"  promote: fabu release promote {release_id}" in seen
        assert f"  abort:   fabu release abort {release_id}" in seen

        code, _, err = await fabu_cli("release", "promote", release_id, env=env)
        assert code == 0, err
        await _lines_until(process.stdout, seen, "canary step 2 of 2, 50 % asked")
        code, _, err = await fabu_cli("release", "abort", release_id, env=env)
        assert code == 0, err
        rest, _ = await asyncio.wait_for(process.communicate(), 90)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    out = "\n".join(seen) + "\n" + rest.decode()
    assert process.returncode == 3, out
    assert out.count("paused at canary step 1 of 2") == 1
    assert out.count("paused at canary step 2 of 2") == 1
    assert out.count(f"  promote: fabu release promote {release_id}") == 2
    assert f"release {release_id} aborted" in out


async def test_a_failure_rolled_back_automatically_names_the_rollback_and_exits_1(
    api: httpx.AsyncClient,
    fabu: FabuSystem,
    admin_token: str,
    stack_env: StackEnv,
    namespace: str,
    tmp_path: Path,
) -> None:
    env = {"FABU_URL": fabu.api_url, "FABU_TOKEN": admin_token, "XDG_CONFIG_HOME": str(tmp_path)}
    service, environment = await prepare(
        api, stack_env, namespace, rollout_timeout_s=5, auto_rollback=True
    )
    await push(api, service, "1.0")
    await push(api, service, "2.0-never-ready")
    code, out, err = await fabu_cli("release", "create", service, environment, "1.0", "-w", env=env)
    assert code == 0, out + err

    code, out, err = await fabu_cli(
        "release", "create", service, environment, "2.0-never-ready", "--watch", env=env
    )
    assert code == 1, out + err
    failed = out.split()[0]
    rollback = (await api.get(f"/releases/{failed}")).json()["rolled_back_by"]
    assert rollback
    assert out.rstrip().splitlines()[-1] == (
        f"Fabu is rolling back automatically: release {rollback}; "
        f"follow it with: fabu release watch {rollback}"
    )
    code, out, err = await fabu_cli("release", "watch", rollback, "--timeout", "90", env=env)
    assert code == 0, out + err


CI_TEMPLATE = Path(__file__).parents[2] / "deploy" / "gitlab" / "fabu.gitlab-ci.yml"


def _expanded(value: str, variables: dict[str, str]) -> str:
    """A CI variable's value with the variables it names filled in, as GitLab does."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), ""), value)


async def _job(name: str, variables: dict[str, str], env: dict[str, str]) -> tuple[int, str]:
    """Run a job of the GitLab CI template: its script lines, one shell, in order, as a
    runner does (with the ``fabu`` of this checkout on the PATH)."""
    template = yaml.safe_load(CI_TEMPLATE.read_text())
    job = template[name]
    defined = {**template["variables"], **template[job["extends"]].get("variables", {})}
    ci = {**variables}
    for key, value in defined.items():
        ci.setdefault(key, _expanded(str(value), ci))
    script = "set -e\n" + "\n".join(job["script"])
    process = await asyncio.create_subprocess_exec(
        "sh",
        "-c",
        script,
        env={**os.environ, "PATH": f"{FABU.parent}:{os.environ['PATH']}", **env, **ci},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 180)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_the_gitlab_ci_template_registers_the_image_and_releases_failing_when_it_fails(
    api: httpx.AsyncClient,
    fabu: FabuSystem,
    admin_token: str,
    stack_env: StackEnv,
    namespace: str,
    tmp_path: Path,
) -> None:
    service, environment = await prepare(api, stack_env, namespace, rollout_timeout_s=5)
    env = {"FABU_URL": fabu.api_url, "FABU_TOKEN": admin_token, "XDG_CONFIG_HOME": str(tmp_path)}
    pipeline = {
        "CI_PROJECT_NAME": service,
        "CI_PROJECT_PATH": f"team/{service}",
        "CI_COMMIT_SHA": "c0ffee" * 6 + "abcd",
        "CI_PIPELINE_ID": "4242",
        "CI_PIPELINE_URL": "https://gitlab.example.com/team/pipelines/4242",
    }
    # A build job pushed the image tagged with the short SHA.
    await push(api, service, "c0ffee12")
    code, out = await _job(".fabu-register", {**pipeline, "CI_COMMIT_SHORT_SHA": "c0ffee12"}, env)
    assert code == 0, out
    versions = (await api.get(f"/services/{service}/images")).json()["versions"]
    [registered] = [v for v in versions if v["tag"] == "c0ffee12"]
    assert registered["registered"] is True
    assert registered["pipeline_url"] == pipeline["CI_PIPELINE_URL"]

    code, out = await _job(
        ".fabu-release",
        {**pipeline, "CI_COMMIT_SHORT_SHA": "c0ffee12", "FABU_ENVIRONMENT": environment},
        env,
    )
    assert code == 0, out
    assert out.rstrip().splitlines()[-1].endswith("succeeded")
    [done] = (await api.get("/releases", params={"service": service})).json()["items"]
    assert done["description"] == f"team/{service} pipeline 4242"

    await push(api, service, "badc0de-never-ready")
    code, out = await _job(
        ".fabu-release",
        {**pipeline, "CI_COMMIT_SHORT_SHA": "badc0de-never-ready", "FABU_ENVIRONMENT": environment},
        env,
    )
    assert code == 1, out
    assert "failed: rollout not finished within 5s" in out
    code, out = await _job(".fabu-release", {**pipeline, "CI_COMMIT_SHORT_SHA": "x"}, env)
    assert code == 2
    assert "set FABU_ENVIRONMENT" in out
