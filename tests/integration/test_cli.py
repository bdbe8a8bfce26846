"""The ``fabu`` command line against the running system: its exit codes follow releases."""

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from devstack.system import FabuSystem
from tests.support.releases import prepare, push
from tests.support.stack import StackEnv

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
    assert "404: service 'no-such-service' not found" in err

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
    assert "401" in err
    code, _, err = await fabu_cli(
        "login", "--user", "admin", "--password-stdin", env=env, stdin="wrong\n"
    )
    assert (code, "401" in err) == (2, True)
