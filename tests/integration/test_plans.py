"""Release plans on the real stack: waves in order, failure policies, rolling a plan back,
promotion between environments, one approval, and schedules that survive a restart."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from kubernetes_asyncio import client

from devstack.system import FabuSystem
from tests.support.plans import create, environment, plan_done, plan_in, releases_of, services
from tests.support.releases import finished, release
from tests.support.stack import StackEnv
from tests.support.users import user_with
from tests.support.wait import eventually


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def _image(kube: client.ApiClient, namespace: str, service: str) -> str:
    live = await client.AppsV1Api(kube).read_namespaced_deployment(service, namespace)
    image: str = live.spec.template.spec.containers[0].image
    return image


async def _versions(kube: client.ApiClient, namespace: str, names: list[str]) -> list[str]:
    return [(await _image(kube, namespace, n)).rpartition(":")[2] for n in names]


async def _baseline(api: httpx.AsyncClient, env: str, names: list[str]) -> dict[str, Any]:
    """Every service released at 1.0.0, by a plan of one wave."""
    body = await create(api, env, *({"service": n, "version": "1.0.0"} for n in names))
    done = await plan_done(api, body["id"])
    assert done["state"] == "succeeded", done
    return done


async def test_the_second_wave_waits_for_every_item_of_the_first(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    env = await environment(api, stack_env, namespace)
    a, b, c = await services(api, stack_env, [env], 3, ("1.0.0", "1.1.0"))

    made = await create(
        api,
        env,
        {"service": a, "version": "1.1.0"},
        {"service": b, "version": "1.1.0"},
        {"service": c, "version": "1.1.0", "after": [a, b]},
        name="checkout feature",
        concurrency=2,
    )

    assert made["state"] == "running"
    assert [(i["service"], i["wave"]) for i in made["items"]] == [(a, 0), (b, 0), (c, 1)]
    assert made["waves"] == 2
    body = await plan_done(api, made["id"])
    assert body["state"] == "succeeded", body
    assert [i["state"] for i in body["items"]] == ["succeeded"] * 3
    releases = await releases_of(api, body)
    assert {r["plan_id"] for r in releases.values()} == {made["id"]}
    assert all(r["state"] == "succeeded" for r in releases.values())
    # The second wave's release was asked for only after both of the first had succeeded.
    first_done = max(_at(releases[s]["finished_at"]) for s in (a, b))
    assert _at(releases[c]["created_at"]) >= first_done
    assert await _versions(kube, namespace, [a, b, c]) == ["1.1.0"] * 3
    assert [e["state"] for e in body["events"]] == ["running", "succeeded"]
    assert body["finished_at"] is not None


async def test_a_failing_item_stops_the_plan_and_later_waves_never_start(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    env = await environment(api, stack_env, namespace)
    a, b, c = await services(
        api, stack_env, [env], 3, ("1.0.0", "2.0.0-never-ready"), rollout_timeout_s=4
    )

    made = await create(
        api,
        env,
        {"service": a, "version": "1.0.0"},
        {"service": b, "version": "2.0.0-never-ready"},
        {"service": c, "version": "1.0.0", "wave": 1},
    )
    body = await plan_done(api, made["id"])

    assert body["state"] == "failed"
    states = {i["service"]: i["state"] for i in body["items"]}
    assert states == {a: "succeeded", b: "failed", c: "skipped"}
    assert body["reason"].startswith(f"{b} 2.0.0-never-ready: failed: rollout not finished")
    [never] = [i for i in body["items"] if i["service"] == c]
    assert never["release_id"] is None
    listed = (await api.get("/releases", params={"service": c})).json()["items"]
    assert listed == []
    assert body["rolled_back_by"] is None


async def test_with_the_rollback_policy_a_failure_rolls_every_changed_service_back(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    env = await environment(api, stack_env, namespace)
    a, b, c = await services(
        api, stack_env, [env], 3, ("1.0.0", "1.1.0", "1.1.0-never-ready"), rollout_timeout_s=4
    )
    await _baseline(api, env, [a, b, c])

    made = await create(
        api,
        env,
        {"service": a, "version": "1.1.0"},
        {"service": b, "version": "1.1.0-never-ready", "after": [a]},
        {"service": c, "version": "1.1.0", "after": [b]},
        on_failure="rollback",
    )
    body = await plan_done(api, made["id"])

    assert body["state"] == "failed"
    assert [i["state"] for i in body["items"]] == ["succeeded", "failed", "skipped"]

    # The automatic rollback is named on the plan by a second write just after the failure.
    async def named() -> str | None:
        back: str | None = (await api.get(f"/plans/{made['id']}")).json()["rolled_back_by"]
        return back

    back_id = await eventually(named, "the plan's automatic rollback to be named", within=15)
    back = await plan_done(api, back_id)
    assert back["state"] == "succeeded", back
    assert back["kind"] == "rollback"
    assert back["rollback_of"] == made["id"]
    # b (the later wave) first, then a; c never changed, so it is not restored.
    assert [(i["service"], i["wave"], i["version"]) for i in back["items"]] == [
        (a, 1, "1.0.0"),
        (b, 0, "1.0.0"),
    ]
    restored = await releases_of(api, back)
    assert {r["kind"] for r in restored.values()} == {"rollback"}
    assert await _versions(kube, namespace, [a, b, c]) == ["1.0.0"] * 3


async def test_rolling_back_a_succeeded_plan_restores_all_three_in_reverse_order(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    env = await environment(api, stack_env, namespace)
    a, b, c = await services(api, stack_env, [env], 3, ("1.0.0", "2.0.0"))
    await _baseline(api, env, [a, b, c])
    made = await create(
        api,
        env,
        {"service": a, "version": "2.0.0"},
        {"service": b, "version": "2.0.0", "after": [a]},
        {"service": c, "version": "2.0.0", "after": [b]},
    )
    assert (await plan_done(api, made["id"]))["state"] == "succeeded"
    assert await _versions(kube, namespace, [a, b, c]) == ["2.0.0"] * 3

    preview = await api.get(f"/plans/{made['id']}/rollback/preview")
    assert preview.status_code == 200, preview.text
    shown = preview.json()
    assert [(i["service"], i["running"], i["version"]) for i in shown["items"]] == [
        (c, "2.0.0", "1.0.0"),
        (b, "2.0.0", "1.0.0"),
        (a, "2.0.0", "1.0.0"),
    ]
    assert all(i["diff"] and i["diff"]["changed"] for i in shown["items"]), shown
    rolled = await api.post(f"/plans/{made['id']}/rollback", json={"description": "bad feature"})
    assert rolled.status_code == 201, rolled.text
    back = await plan_done(api, rolled.json()["id"])

    assert back["state"] == "succeeded", back
    assert await _versions(kube, namespace, [a, b, c]) == ["1.0.0"] * 3
    restored = await releases_of(api, back)
    # Reverse wave order: each restore began only after the one before had succeeded.
    assert _at(restored[b]["created_at"]) >= _at(restored[c]["finished_at"])
    assert _at(restored[a]["created_at"]) >= _at(restored[b]["finished_at"])
    again = await api.post(f"/plans/{made['id']}/rollback")
    assert again.status_code == 409
    assert back["id"] in again.json()["detail"]
    original = (await api.get(f"/plans/{made['id']}")).json()
    assert original["rolled_back_by"] == back["id"]


async def test_promotion_copies_exactly_what_runs_and_refuses_unproven_versions(
    api: httpx.AsyncClient,
    stack_env: StackEnv,
    namespace: str,
    other_namespace: str,
    kube: client.ApiClient,
) -> None:
    staging = await environment(api, stack_env, namespace)
    production = await environment(api, stack_env, other_namespace, requires_success_in=staging)
    a, b = await services(api, stack_env, [staging, production], 2, ("1.0.0", "1.2.0", "9.9.9"))
    baseline = await releases_of(api, await _baseline(api, staging, [a, b]))
    staged = await finished(api, await release(api, a, staging, "1.2.0"))
    assert staged["state"] == "succeeded"

    # A version that never succeeded upstream is refused, alone or in a plan.
    refused = await api.post(
        "/releases", json={"service": a, "environment": production, "version": "9.9.9"}
    )
    assert refused.status_code == 422
    assert refused.json()["field"] == "version"
    assert f"has not succeeded in {staging}" in refused.json()["detail"]
    in_plan = await api.post(
        "/plans",
        json={"environment": production, "items": [{"service": a, "version": "9.9.9"}]},
    )
    assert in_plan.status_code == 422
    assert f"has not succeeded in {staging}" in in_plan.json()["detail"]
    assert (await api.get("/releases", params={"environment": production})).json()["items"] == []

    asked = {"source": staging, "environment": production, "services": [a, b]}
    preview = await api.post("/plans/promotion", json=asked)
    assert preview.status_code == 200, preview.text
    upstream = {a: staged, b: baseline[b]}
    assert [(p["service"], p["version"], p["running"]) for p in preview.json()["items"]] == [
        (a, "1.2.0", None),
        (b, "1.0.0", None),
    ]
    promoted = await api.post("/plans/promote", json=asked)
    assert promoted.status_code == 201, promoted.text
    plan = promoted.json()
    assert plan["kind"] == "promotion"
    assert plan["source_environment"] == staging
    body = await plan_done(api, plan["id"])
    assert body["state"] == "succeeded", body
    for service, shipped in (await releases_of(api, body)).items():
        ran = upstream[service]
        assert (shipped["version"], shipped["template_id"], shipped["template_version"]) == (
            ran["version"],
            ran["template_id"],
            ran["template_version"],
        )
    assert await _versions(kube, other_namespace, [a, b]) == ["1.2.0", "1.0.0"]
    # Promoting again changes nothing: refused, naming what is already the same.
    again = await api.post("/plans/promote", json=asked)
    assert again.status_code == 409
    assert a in again.json()["detail"]


async def test_one_approval_covers_every_item_of_the_plan(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, fabu: FabuSystem
) -> None:
    env = await environment(api, stack_env, namespace, approval_required=True)
    a, b = await services(api, stack_env, [env], 2)
    made = await create(
        api, env, {"service": a, "version": "1.0.0"}, {"service": b, "version": "1.0.0", "wave": 1}
    )
    assert made["state"] == "awaiting_approval"
    assert all(i["release_id"] is None for i in made["items"])

    own = await api.post(f"/plans/{made['id']}/approve")
    assert own.status_code == 403
    review = await api.get(f"/plans/{made['id']}/review")
    assert review.status_code == 200, review.text
    assert [(r["service"], r["running"], r["version"]) for r in review.json()] == [
        (a, None, "1.0.0"),
        (b, None, "1.0.0"),
    ]
    assert all(r["diff"] and r["diff"]["changed"] for r in review.json()), review.json()
    # A releaser whose grants cover one item only may not approve the plan.
    async with user_with(api, fabu, [{"role": "releaser", "environment": env, "service": a}]) as (
        _,
        as_partial,
    ):
        partial = await as_partial.post(f"/plans/{made['id']}/approve")
        assert partial.status_code == 403
        assert b in partial.json()["detail"]
    async with user_with(api, fabu, [{"role": "releaser", "environment": env}]) as (
        approver,
        as_approver,
    ):
        approved = await as_approver.post(f"/plans/{made['id']}/approve", json={"comment": "go"})
        assert approved.status_code == 200, approved.text
    body = await plan_done(api, made["id"])

    assert body["state"] == "succeeded", body
    assert body["decision"]["by"] == approver
    for shipped in (await releases_of(api, body)).values():
        # Each item went straight on: the plan's approval is its own.
        assert "awaiting_approval" not in [e["state"] for e in shipped["events"]]
        assert shipped["decision"]["by"] == approver
    audit = (await api.get("/audit", params={"target": f"plan/{made['id']}"})).json()
    assert {"plan.release", "plan.approve"} <= {e["action"] for e in audit["items"]}


async def test_a_scheduled_plan_starts_once_after_its_conductor_is_killed_and_restarted(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, fabu: FabuSystem
) -> None:
    env = await environment(api, stack_env, namespace)
    a, b = await services(api, stack_env, [env], 2)
    fabu.start("api", name="api-2")
    try:
        async with httpx.AsyncClient(base_url=fabu.url("api-2"), timeout=10) as second:

            async def healthy() -> bool:
                try:
                    return (await second.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(healthy, "the second API replica to answer", within=30)
        at = datetime.now(UTC) + timedelta(seconds=12)
        made = await create(
            api,
            env,
            {"service": a, "version": "1.0.0"},
            {"service": b, "version": "1.0.0"},
            scheduled_at=at.isoformat(),
        )
        cancelled = await create(
            api, env, {"service": b, "version": "1.0.0"}, scheduled_at=at.isoformat()
        )
        assert made["state"] == cancelled["state"] == "scheduled"
        gone = await api.post(f"/plans/{cancelled['id']}/cancel")
        assert gone.status_code == 200, gone.text

        # The process that took the schedule dies and comes back before its time.
        fabu.kill("api")
        fabu.start("api")

        async def answering() -> bool:
            try:
                return (await api.get("/plans/" + made["id"])).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(answering, "the API to answer again", within=30)
        body = await plan_done(api, made["id"])
    finally:
        fabu.stop("api-2")

    assert body["state"] == "succeeded", body
    assert _at(body["started_at"]) >= at
    assert [e["state"] for e in body["events"]] == ["scheduled", "running", "succeeded"]
    for service in (a, b):
        listed = (await api.get("/releases", params={"service": service})).json()["items"]
        # Once: one release per item, whichever replica started it.
        assert len(listed) == 1, listed
        assert (
            listed[0]["id"]
            == next(i for i in body["items"] if i["service"] == service)["release_id"]
        )
    ended = (await api.get(f"/plans/{cancelled['id']}")).json()
    assert ended["state"] == "cancelled"
    assert [i["release_id"] for i in ended["items"]] == [None]


async def test_bad_plans_are_refused_naming_the_cause_and_nothing_is_stored(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, fabu: FabuSystem
) -> None:
    soon = datetime.now(UTC) + timedelta(hours=1)
    window = {
        "name": "launch",
        "start": soon.isoformat(),
        "end": (soon + timedelta(hours=1)).isoformat(),
    }
    env = await environment(api, stack_env, namespace, freeze_windows=[window])
    a, b = await services(api, stack_env, [env], 2)
    item = {"service": a, "version": "1.0.0"}

    async def refused(body: dict[str, Any], status: int, field: str | None, said: str) -> None:
        answer = await api.post("/plans", json={"environment": env, **body})
        assert answer.status_code == status, answer.text
        if field is not None:
            assert answer.json()["field"] == field
        assert said in str(answer.json()["detail"])

    cycle = [{**item, "after": [b]}, {"service": b, "version": "1.0.0", "after": [a]}]
    await refused({"items": cycle}, 422, "items", "is a cycle")
    await refused({"items": [item, item]}, 422, "items", f"{a} named more than once")
    await refused(
        {"items": [{**item, "after": ["nobody"]}]}, 422, "items", "'nobody' is not an item"
    )
    await refused({"items": [{**item, "version": "7.7.7"}]}, 422, "items", "no tag '7.7.7'")
    await refused(
        {"items": [{"service": "ghost", "version": "1.0.0"}]}, 422, "items", "'ghost' not found"
    )
    await refused(
        {"items": [item], "scheduled_at": "2030-01-01T08:00:00"}, 422, "scheduled_at", "time zone"
    )
    await refused(
        {"items": [item], "scheduled_at": "2020-01-01T08:00:00Z"}, 422, "scheduled_at", "has passed"
    )
    await refused({"items": [item], "concurrency": 0}, 422, None, "greater than or equal to 1")
    await refused(
        {"items": [item], "scheduled_at": (soon + timedelta(minutes=5)).isoformat()},
        422,
        "scheduled_at",
        "frozen then (launch",
    )
    unknown = await api.post("/plans", json={"environment": "nowhere", "items": [item]})
    assert unknown.status_code == 404
    async with user_with(api, fabu, [{"role": "releaser", "environment": env, "service": a}]) as (
        _,
        as_partial,
    ):
        partial = await as_partial.post(
            "/plans", json={"environment": env, "items": [item, {"service": b, "version": "1.0.0"}]}
        )
        assert partial.status_code == 403
        assert b in partial.json()["detail"]
    assert (await api.get("/plans", params={"environment": env})).json() == []
    assert (await api.get("/releases", params={"environment": env})).json()["items"] == []
    assert (await api.get("/plans/no-such-plan")).status_code == 404


async def test_every_plan_action_in_every_state_is_allowed_or_refused_as_the_table_says(
    api: httpx.AsyncClient,
    stack_env: StackEnv,
    namespace: str,
    other_namespace: str,
    fabu: FabuSystem,
) -> None:
    plain = await environment(api, stack_env, namespace)
    approving = await environment(api, stack_env, other_namespace, approval_required=True)
    slow, fast = await services(
        api, stack_env, [plain, approving], 2, ("1.0.0", "1.0.0-never-ready"), rollout_timeout_s=60
    )
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    item = {"service": fast, "version": "1.0.0"}

    async def in_state(state: str) -> dict[str, Any]:
        match state:
            case "awaiting_approval":
                return await create(api, approving, item)
            case "scheduled":
                return await create(api, plain, item, scheduled_at=later)
            case "running":
                made = await create(api, plain, {"service": slow, "version": "1.0.0-never-ready"})
                return await plan_in(api, made["id"], {"running"})
            case "succeeded":
                return await plan_done(api, (await create(api, plain, item))["id"])
            case "cancelled":
                made = await create(api, plain, item, scheduled_at=later)
                cancelled: dict[str, Any] = (await api.post(f"/plans/{made['id']}/cancel")).json()
                return cancelled
            case _:
                made = await create(api, approving, item)
                async with user_with(api, fabu, [{"role": "releaser"}]) as (_, other):
                    rejected: dict[str, Any] = (
                        await other.post(f"/plans/{made['id']}/reject")
                    ).json()
                    return rejected

    allowed = {
        "awaiting_approval": {"approve", "reject", "cancel"},
        "scheduled": {"cancel"},
        "running": {"cancel"},
        # The service ran 1.0.0 before this plan (an earlier one of this test): restorable.
        "succeeded": {"rollback"},
        # Nothing was started: nothing to restore.
        "cancelled": set(),
        "rejected": set(),
    }
    async with user_with(api, fabu, [{"role": "releaser"}]) as (_, other):
        for state, opens in allowed.items():
            for action in ("approve", "reject", "cancel", "rollback"):
                plan = await in_state(state)
                assert plan["state"] == state, plan
                answer = await other.post(f"/plans/{plan['id']}/{action}")
                if action in opens:
                    assert answer.status_code in (200, 201), (state, action, answer.text)
                else:
                    assert answer.status_code == 409, (state, action, answer.text)
                after = (await api.get(f"/plans/{plan['id']}")).json()
                moved = {
                    "approve": {"running", "succeeded"},
                    "reject": {"rejected"},
                    "rollback": {state},
                }
                expected = moved.get(action, {"cancelled"}) if action in opens else {state}
                assert after["state"] in expected, (state, action, after["state"])
                if state == "running":
                    for started in (await releases_of(api, after)).values():
                        await api.post(f"/releases/{started['id']}/cancel")
    # An awaiting plan's own operator may not decide it (the one 403 of the table).
    mine = await create(api, approving, item)
    for action in ("approve", "reject"):
        assert (await api.post(f"/plans/{mine['id']}/{action}")).status_code == 403
