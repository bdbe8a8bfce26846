"""``fabu plan`` against the running system: a plan of two waves followed to its end,
promoted to another environment, rolled back after its preview; one approval after the
review; a scheduled release; a failed plan's exit code; errors naming their cause."""

import json
from pathlib import Path

import httpx
from kubernetes_asyncio import client

from devstack.system import FabuSystem
from tests.integration.test_cli import fabu_cli
from tests.support.plans import environment, services
from tests.support.stack import StackEnv
from tests.support.users import make_user, token_for


async def _versions(kube: client.ApiClient, namespace: str, names: list[str]) -> list[str]:
    apps = client.AppsV1Api(kube)
    found = []
    for name in names:
        live = await apps.read_namespaced_deployment(name, namespace)
        found.append(live.spec.template.spec.containers[0].image.rpartition(":")[2])
    return found


async def test_a_plan_in_two_waves_is_followed_promoted_and_rolled_back_from_the_cli(
    api: httpx.AsyncClient,
    fabu: FabuSystem,
    admin_token: str,
    stack_env: StackEnv,
    namespace: str,
    other_namespace: str,
    kube: client.ApiClient,
    tmp_path: Path,
) -> None:
    env = {"FABU_URL": fabu.api_url, "FABU_TOKEN": admin_token, "XDG_CONFIG_HOME": str(tmp_path)}
    staging = await environment(api, stack_env, namespace)
    production = await environment(api, stack_env, other_namespace)
    a, b = await services(api, stack_env, [staging, production], 2, ("1.0.0", "2.0.0"))

    # Two waves, followed to the end: b starts only once a has succeeded.
    code, out, err = await fabu_cli(
        "plan",
        "create",
        "-e",
        staging,
        "--item",
        f"{a}=1.0.0",
        "--item",
        f"{b}=1.0.0",
        "--after",
        f"{b}:{a}",
        "--name",
        "first",
        "--watch",
        env=env,
    )
    assert code == 0, out + err
    first = out.split()[0]
    assert out.splitlines()[0] == f"{first} running"
    assert f"  wave 2 {b} 1.0.0: waiting" in out
    assert f"  wave 2 {b} 1.0.0: succeeded release " in out
    assert out.rstrip().splitlines()[-1] == f"plan {first} succeeded"
    code, out, err = await fabu_cli("plan", "show", first, env=env)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"plan {first} first: succeeded"
    header = next(line for line in lines if line.startswith("WAVE"))
    rows = lines[lines.index(header) + 1 : lines.index(header) + 3]
    assert [r.split()[:4] for r in rows] == [
        ["1", a, "1.0.0", "succeeded"],
        ["2", b, "1.0.0", "succeeded"],
    ]
    code, out, err = await fabu_cli("plan", "list", "-e", staging, env=env)
    assert code == 0, err
    assert out.splitlines()[0].split() == [
        "ID",
        "NAME",
        "ENVIRONMENT",
        "KIND",
        "STATE",
        "ITEMS",
        "OPERATOR",
        "CREATED",
    ]
    assert out.splitlines()[1].split()[:5] == [first, "first", staging, "release", "succeeded"]

    # Production takes only what succeeded in staging; the promotion says what it does.
    code, out, err = await fabu_cli(
        "environment", "update", production, "--requires-success-in", staging, env=env
    )
    assert code == 0, err
    code, out, err = await fabu_cli("environment", "list", env=env)
    assert code == 0, err
    assert "REQUIRES SUCCESS IN" in out.splitlines()[0]
    [row] = [line for line in out.splitlines() if line.startswith(production + " ")]
    assert staging in row.split()
    code, out, err = await fabu_cli(
        "plan", "promote", staging, production, "-s", a, "-s", b, env=env
    )
    assert code == 2, out + err
    assert f"  {a}: nothing runs there yet → 1.0.0 (template version 1)" in out
    assert "add --yes to go ahead" in err
    assert (await api.get("/plans", params={"environment": production})).json() == []
    code, out, err = await fabu_cli(
        "plan",
        "promote",
        staging,
        production,
        "-s",
        a,
        "-s",
        b,
        "--after",
        f"{a}:{b}",
        "--yes",
        "--watch",
        env=env,
    )
    assert code == 0, out + err
    assert f"  wave 2 {a} 1.0.0: succeeded release " in out
    assert await _versions(kube, other_namespace, [a, b]) == ["1.0.0", "1.0.0"]

    # A second plan in staging, rolled back after its preview, in reverse wave order.
    code, out, err = await fabu_cli(
        "plan", "create", "-e", staging, "-i", f"{a}=2.0.0", "-i", f"{b}=2.0.0@2", "-w", env=env
    )
    assert code == 0, out + err
    second = out.split()[0]
    assert await _versions(kube, namespace, [a, b]) == ["2.0.0", "2.0.0"]
    code, out, err = await fabu_cli("plan", "rollback", second, env=env)
    assert code == 2, out + err
    assert "add --yes to go ahead" in err
    preview = out.splitlines()
    assert preview[0] == "rolling back would restore, in this order:"
    assert preview[1] == f"  wave 1: {b}: 2.0.0 → 1.0.0"
    assert any(line.startswith(f"    Deployment/{b}: update (+") for line in preview)
    assert f"  wave 2: {a}: 2.0.0 → 1.0.0" in preview
    code, out, err = await fabu_cli("plan", "rollback", second, "--yes", "--watch", env=env)
    assert code == 0, out + err
    # The preview again, then the rollback plan made.
    assert out.splitlines()[0] == "rolling back would restore, in this order:"
    [back] = [line.split()[0] for line in out.splitlines() if line.endswith(" running")]
    assert out.rstrip().splitlines()[-1] == f"plan {back} succeeded"
    assert await _versions(kube, namespace, [a, b]) == ["1.0.0", "1.0.0"]
    code, out, err = await fabu_cli("-o", "json", "plan", "show", second, env=env)
    assert code == 0, err
    assert json.loads(out)["rolled_back_by"] == back
    code, out, err = await fabu_cli("plan", "rollback", second, "--yes", env=env)
    assert code == 2
    assert err.strip() == f"fabu: plan {second} was rolled back already, by plan {back} (409)"


async def test_a_scheduled_release_is_a_plan_a_failed_plan_exits_1_and_errors_name_their_cause(
    api: httpx.AsyncClient,
    fabu: FabuSystem,
    admin_token: str,
    stack_env: StackEnv,
    namespace: str,
    tmp_path: Path,
) -> None:
    env = {"FABU_URL": fabu.api_url, "FABU_TOKEN": admin_token, "XDG_CONFIG_HOME": str(tmp_path)}
    staging = await environment(api, stack_env, namespace)
    [a] = await services(
        api, stack_env, [staging], 1, ("1.0.0", "2.0.0-never-ready"), rollout_timeout_s=4
    )

    code, out, err = await fabu_cli(
        "release", "create", a, staging, "1.0.0", "--at", "+2h", "-d", "tonight", env=env
    )
    assert code == 0, err
    assert out.startswith("plan ")
    plan_id, state = out.split()[1:3]
    assert state == "scheduled"
    assert "(starts at " in out
    shown = (await api.get(f"/plans/{plan_id}")).json()
    assert [(i["service"], i["version"]) for i in shown["items"]] == [(a, "1.0.0")]
    assert shown["scheduled_at"] is not None
    code, out, err = await fabu_cli("plan", "show", plan_id, env=env)
    assert code == 0, err
    assert f"  cancel: fabu plan cancel {plan_id}" in out
    code, out, err = await fabu_cli("plan", "cancel", plan_id, env=env)
    assert code == 0, err
    assert out.splitlines()[0].endswith(": cancelled")
    assert (await api.get("/releases", params={"service": a})).json()["items"] == []

    code, _, err = await fabu_cli(
        "plan", "create", "-e", staging, "-i", f"{a}=9.9.9", "-i", "no-such-svc=1.0", env=env
    )
    assert code == 2
    [line] = err.strip().splitlines()
    assert line.startswith("fabu: items: ")
    assert "no-such-svc: service 'no-such-svc' not found" in line
    assert line.endswith("(422)")
    assert (await api.get("/plans", params={"environment": staging})).json()[0]["id"] == plan_id
    code, _, err = await fabu_cli(
        "plan", "promote", "no-such-env", staging, "--team", "core", env=env
    )
    assert (code, err.strip()) == (2, "fabu: source: environment 'no-such-env' not found (404)")
    code, _, err = await fabu_cli(
        "release", "create", a, staging, "1.0.0", "--at", "2020-01-01T00:00:00Z", env=env
    )
    assert code == 2
    assert err.strip().startswith("fabu: scheduled_at: 2020-01-01T00:00:00+00:00 has passed")

    # A plan that fails: its watch says why and the way back, and exits 1.
    code, out, err = await fabu_cli(
        "plan", "create", "-e", staging, "-i", f"{a}=2.0.0-never-ready", "--watch", env=env
    )
    assert code == 1, out + err
    failed = out.split()[0]
    *_, said, way_back = out.rstrip().splitlines()
    assert said.startswith(f"plan {failed} failed: {a} 2.0.0-never-ready: failed: ")
    assert way_back == f"roll back what it changed: fabu plan rollback {failed}"


async def test_a_plan_is_approved_once_after_its_review_by_someone_else(
    api: httpx.AsyncClient,
    fabu: FabuSystem,
    admin_token: str,
    stack_env: StackEnv,
    namespace: str,
    tmp_path: Path,
) -> None:
    env = {"FABU_URL": fabu.api_url, "FABU_TOKEN": admin_token, "XDG_CONFIG_HOME": str(tmp_path)}
    gated = await environment(api, stack_env, namespace, approval_required=True)
    a, b = await services(api, stack_env, [gated], 2)
    approver = await make_user(api, [{"role": "releaser", "environment": gated}])
    as_approver = {**env, "FABU_TOKEN": (await token_for(api, approver))["token"]}

    code, out, err = await fabu_cli(
        "plan", "create", "-e", gated, "-i", f"{a}=1.0.0", "-i", f"{b}=1.0.0@2", env=env
    )
    assert code == 0, err
    plan_id, state = out.split()
    assert state == "awaiting_approval"
    code, out, err = await fabu_cli("plan", "show", plan_id, env=env)
    assert code == 0, err
    assert f"  wave 2: {b}: nothing runs there yet → 1.0.0 (template " in out
    assert f"  review and approve: fabu plan approve {plan_id}" in out
    code, out, err = await fabu_cli("plan", "approve", plan_id, env=env)
    assert code == 2
    assert err.strip().startswith(f"fabu: admin asked for plan {plan_id} and cannot approve it")

    code, out, err = await fabu_cli(
        "plan", "approve", plan_id, "-c", "looks right", "--watch", env=as_approver
    )
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0] == "review:"
    assert lines[1].startswith(f"  wave 1: {a}: nothing runs there yet → 1.0.0 (template ")
    assert any(line.startswith(f"    Deployment/{a}: create (+") for line in lines)
    assert f"{plan_id} running" in lines
    assert lines[-1] == f"plan {plan_id} succeeded"
    shown = (await api.get(f"/plans/{plan_id}")).json()
    assert shown["decision"]["by"] == approver
    assert shown["decision"]["comment"] == "looks right"
