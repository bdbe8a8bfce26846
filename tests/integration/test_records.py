"""Release records, detail, diagnosis, rollback, redeploy, cancel and following, on the real stack."""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from kubernetes_asyncio import client

from devstack import kwok
from devstack.system import FabuSystem
from shared.models.release import Release
from shared.models.release_parts import Owned
from shared.release import lifecycle
from shared.release.lifecycle import Actor
from shared.release.machine import CANCEL, Nothing, ReleaseState
from shared.store.mongo import Mongo, encode_params, new_id
from shared.store.releases import Releases
from tests.conftest import unique
from tests.support.records import record
from tests.support.releases import finished, prepare, release
from tests.support.stack import StackEnv
from tests.support.stages import stage
from tests.support.wait import eventually


async def live_pods(kube: client.ApiClient, namespace: str, service: str) -> list[Any]:
    pods = await client.CoreV1Api(kube).list_namespaced_pod(
        namespace, label_selector=f"app={service}"
    )
    return [p for p in pods.items if p.metadata.deletion_timestamp is None]


async def test_crash_looping_release_fails_with_a_diagnosis_of_its_own_pods(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    service, environment = await prepare(api, stack_env, namespace, replicas=2)
    good = await finished(api, await release(api, service, environment, "1.0.0"))
    assert good["state"] == "succeeded", good["reason"]
    serving = {p.metadata.name for p in await live_pods(kube, namespace, service)}
    assert len(serving) == 2
    await api.put(
        f"/services/{service}/config/{environment}",
        json={
            "template_id": good["template_id"],
            "params": {"replicas": 2, "rollout_timeout_s": 6},
        },
    )

    body = await finished(api, await release(api, service, environment, "1.1.0-crash-loop"))

    assert body["state"] == "failed"
    assert body["reason"].startswith("rollout not finished within 6s")
    bundle = body["diagnosis"]
    assert bundle["condition"]
    assert bundle["pods"], bundle
    new_rs = next(rs for rs in body["replica_sets"] if rs["new"])
    old_rs = next(rs for rs in body["replica_sets"] if not rs["new"])
    assert (old_rs["desired"], old_rs["ready"]) == (2, 2)
    assert new_rs["ready"] == 0
    for pod in bundle["pods"]:
        # Only the release's failing pods: none of the old ones still serving.
        assert pod["name"] not in serving
        assert pod["name"].startswith(new_rs["name"])
        [app] = pod["containers"]
        assert app["restart_count"] >= 1
        assert "CrashLoopBackOff" in app["state"] + " ".join(pod["reasons_seen"])
        assert app["last_state"] == "terminated Error (exit code 1)"
        for line in kwok.PREVIOUS_LOG_LINES:
            assert line in app["previous_log"]
        for line in kwok.CURRENT_LOG_LINES:
            assert line in app["log"]
    objects = {event["object"] for event in bundle["events"]}
    assert f"Deployment/{service}" in objects
    # The timeline holds the serving pods (Ready) and the crashing one (never Ready).
    timeline = {pod["name"]: pod for pod in body["pods"]}
    assert serving <= timeline.keys()
    assert all(timeline[name]["ready_at"] and not timeline[name]["new"] for name in serving)
    crashing = [p for p in body["pods"] if p["new"]]
    assert crashing
    assert all(p["scheduled_at"] and p["ready_at"] is None for p in crashing)

    summary = (await api.get("/releases", params={"service": service, "state": "failed"})).json()
    [row] = summary["items"]
    assert row["id"] == body["id"]
    assert "diagnosis" not in row


async def test_rollback_restores_the_image_and_the_base_parameters_of_that_release(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    service, environment = await prepare(api, stack_env, namespace, replicas=2)
    first = await finished(api, await release(api, service, environment, "1.0.0"))
    assert first["state"] == "succeeded", first["reason"]
    changed = await api.put(
        f"/services/{service}/config/{environment}",
        json={"template_id": first["template_id"], "params": {"replicas": 3}},
    )
    assert changed.json()["version"] == first["config_version"] + 1
    second = await finished(api, await release(api, service, environment, "1.1.0"))
    assert second["state"] == "succeeded", second["reason"]

    preview = await api.get(f"/releases/{first['id']}/rollback/preview")
    assert preview.status_code == 200, preview.text
    by_kind = {o["kind"]: o for o in preview.json()["objects"]}
    assert by_kind["Service"]["action"] == "unchanged"
    diff = by_kind["Deployment"]["diff"]
    assert by_kind["Deployment"]["action"] == "update"
    assert "-  replicas: 3\n+  replicas: 2\n" in diff
    assert any(line.startswith("-") and ":1.1.0" in line for line in diff.splitlines())
    assert any(line.startswith("+") and ":1.0.0" in line for line in diff.splitlines())

    accepted = await api.post(f"/releases/{first['id']}/rollback", json={"description": "bad"})
    assert accepted.status_code == 202, accepted.text
    body = await finished(api, accepted.json()["id"])

    assert body["state"] == "succeeded", body["reason"]
    assert body["kind"] == "rollback"
    assert body["source_release_id"] == first["id"]
    assert body["description"] == "bad"
    assert body["config_version"] == first["config_version"]
    assert body["template_version"] == first["template_version"]
    live = await client.AppsV1Api(kube).read_namespaced_deployment(service, namespace)
    assert live.spec.template.spec.containers[0].image.endswith(f"/team/{service}:1.0.0")
    assert live.spec.replicas == 2
    # The service's config is not rewritten: the next deploy uses it again.
    config = (await api.get(f"/services/{service}/config/{environment}")).json()
    assert config["params"]["replicas"] == 3
    after = (await api.get(f"/releases/{body['id']}/rollback/preview")).json()
    assert {o["action"] for o in after["objects"]} == {"unchanged"}
    assert after["changed"] is False


async def test_redeploy_replaces_the_pods_with_the_current_base_parameters(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    service, environment = await prepare(api, stack_env, namespace, replicas=2)
    first = await finished(api, await release(api, service, environment, "1.0.0"))
    assert first["state"] == "succeeded", first["reason"]
    before = {p.metadata.name for p in await live_pods(kube, namespace, service)}
    await api.put(
        f"/services/{service}/config/{environment}",
        json={"template_id": first["template_id"], "params": {"replicas": 2, "env": {"MODE": "b"}}},
    )

    accepted = await api.post(f"/releases/{first['id']}/redeploy")
    assert accepted.status_code == 202, accepted.text
    body = await finished(api, accepted.json()["id"])

    assert body["state"] == "succeeded", body["reason"]
    assert (body["kind"], body["source_release_id"], body["version"]) == (
        "redeploy",
        first["id"],
        "1.0.0",
    )
    assert body["config_version"] == first["config_version"] + 1
    live = await client.AppsV1Api(kube).read_namespaced_deployment(service, namespace)
    pod_template = live.spec.template
    assert "kubectl.kubernetes.io/restartedAt" in pod_template.metadata.annotations
    assert [(e.name, e.value) for e in pod_template.spec.containers[0].env] == [("MODE", "b")]

    async def replaced() -> set[str] | None:
        now = {p.metadata.name for p in await live_pods(kube, namespace, service)}
        return now if len(now) == 2 else None

    after = await eventually(replaced, "two pods of the redeploy")
    assert not after & before
    terminated = {p["name"] for p in body["pods"] if p["terminated_at"]}
    assert before <= terminated

    older = await api.post(f"/releases/{first['id']}/redeploy")
    assert older.status_code == 409
    assert body["id"] in older.json()["detail"]


async def test_rollback_and_redeploy_of_unknown_releases_are_404(api: httpx.AsyncClient) -> None:
    for path in ("rollback", "redeploy", "cancel"):
        answer = await api.post(f"/releases/{new_id()}/{path}")
        assert answer.status_code == 404, path
        assert "not found" in answer.json()["detail"]
    for path in ("rollback/preview", "events"):
        assert (await api.get(f"/releases/{new_id()}/{path}")).status_code == 404, path


async def test_cancel_an_applied_release_stops_tracking_and_leaves_the_cluster(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    service, environment = await prepare(
        api, stack_env, namespace, labels={kwok.FAULT_LABEL: kwok.NEVER_READY}
    )
    release_id = await release(api, service, environment, "1.0.0")

    async def applied() -> bool:
        state: str = (await api.get(f"/releases/{release_id}")).json()["state"]
        return state == "applied"

    await eventually(applied, "the release to be applied")
    answer = await api.post(f"/releases/{release_id}/cancel")

    assert answer.status_code == 200, answer.text
    assert answer.json()["was"] == "applied"
    assert "stays in the cluster" in answer.json()["message"]
    body = (await api.get(f"/releases/{release_id}")).json()
    assert body["state"] == "cancelled"
    assert body["finished_at"]
    assert body["transcript"][-1]["text"].startswith("cancelled by")
    live = await client.AppsV1Api(kube).read_namespaced_deployment(service, namespace)
    assert live.spec.template.spec.containers[0].image.endswith(":1.0.0")
    again = await api.post(f"/releases/{release_id}/cancel")
    assert again.status_code == 409
    assert "already finished: cancelled" in again.json()["detail"]
    # The service is free for the next release.
    next_id = await release(api, service, environment, "1.0.1")
    assert (await api.post(f"/releases/{next_id}/cancel")).status_code == 200


async def test_cancel_before_rendering_applies_nothing(
    api: httpx.AsyncClient,
    stack_env: StackEnv,
    namespace: str,
    kube: client.ApiClient,
    fabu: FabuSystem,
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    other, other_env = await prepare(api, stack_env, namespace)
    fabu.kill("renderer")
    try:
        release_id = await release(api, service, environment, "1.0.0")
        answer = await api.post(f"/releases/{release_id}/cancel")
        assert answer.status_code == 200, answer.text
        assert answer.json()["was"] == "requested"
        assert "not changed" in answer.json()["message"]
    finally:
        fabu.start("renderer")
    # A release requested after it goes through the restarted renderer after it.
    later = await finished(api, await release(api, other, other_env, "1.0.0"))
    assert later["state"] == "succeeded", later["reason"]

    body = (await api.get(f"/releases/{release_id}")).json()
    assert body["state"] == "cancelled"
    assert body["manifest"] == ""
    deployments = await client.AppsV1Api(kube).list_namespaced_deployment(namespace)
    assert service not in {d.metadata.name for d in deployments.items}


async def read_events(api: httpx.AsyncClient, release_id: str) -> list[tuple[str, Any]]:
    """Every Server-Sent Event of a release's stream up to ``end``."""
    events: list[tuple[str, Any]] = []
    kind = ""
    async with api.stream("GET", f"/releases/{release_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                kind = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                events.append((kind, json.loads(line.removeprefix("data:").strip())))
                if kind == "end":
                    return events
    raise AssertionError(f"the stream ended without an end event: {events}")


async def test_progress_streams_live_and_replays_the_same_lines(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace, replicas=2)
    release_id = await release(api, service, environment, "1.0.0")

    live = await asyncio.wait_for(read_events(api, release_id), 60)
    replayed = await asyncio.wait_for(read_events(api, release_id), 10)

    # The same states and lines; the pods as often as they changed, then as they ended.
    def told(events: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        return [(kind, data) for kind, data in events if kind != "pods"]

    assert told(live) == told(replayed)
    pods = [data for kind, data in live if kind == "pods"]
    assert [data for kind, data in replayed if kind == "pods"] == pods[-1:]
    assert len(pods[-1]) >= 2
    assert all(p["ready"] for p in pods[-1] if p["new"] and not p["terminated_at"])
    states = [data["state"] for kind, data in live if kind == "state"]
    assert states == ["rendered", "applied", "succeeded"]
    lines = [data["text"] for kind, data in live if kind == "line"]
    assert lines[-1] == f'deployment "{service}" successfully rolled out'
    assert live[-1] == ("end", {"state": "succeeded", "reason": ""})
    body = (await api.get(f"/releases/{release_id}")).json()
    assert lines == [line["text"] for line in body["transcript"]]


async def test_pagination_under_concurrent_inserts_returns_every_record_once(
    api: httpx.AsyncClient, stack_env: StackEnv, fabu: FabuSystem
) -> None:
    mongo = Mongo(stack_env.mongo_url, fabu.env["FABU_MONGO_DB"])
    releases = Releases(mongo)
    service = unique("svc")
    try:
        existing = [record(service, f"e{i}") for i in range(30)]
        for item in existing:
            await releases.create(item)

        async def insert_more() -> None:
            for i in range(20):
                await releases.create(record(service, f"late{i}"))

        inserting = asyncio.create_task(insert_more())
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"service": service, "limit": 7}
            if cursor:
                params["cursor"] = cursor
            page = (await api.get("/releases", params=params)).json()
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        await inserting
    finally:
        await mongo.close()

    assert len(seen) == len(set(seen))
    assert {r.id for r in existing} <= set(seen)
    assert seen == sorted(seen, reverse=True)


async def test_list_filters_by_operator_state_and_time(
    api: httpx.AsyncClient, stack_env: StackEnv, fabu: FabuSystem
) -> None:
    service = unique("svc")
    day = datetime(2026, 3, 1, tzinfo=UTC)
    rows = [
        record(service, "a", operator="alice", created_at=day),
        record(service, "b", operator="bob", created_at=day + timedelta(hours=1)),
        record(service, "c", operator="alice", created_at=day + timedelta(hours=2)),
    ]
    async with stage(fabu) as ctx:
        for row in rows:
            await ctx.releases.create(row)
        cancelled = await lifecycle.take(
            ctx.releases, ctx.bus, rows[2], CANCEL, Actor.person("alice"), Nothing()
        )
        assert cancelled

    async def ids(**params: Any) -> list[str]:
        answer = await api.get("/releases", params={"service": service, **params})
        assert answer.status_code == 200, answer.text
        return [item["id"] for item in answer.json()["items"]]

    assert await ids(operator="alice") == [rows[2].id, rows[0].id]
    assert await ids(state="cancelled") == [rows[2].id]
    assert await ids(state="requested", operator="alice") == [rows[0].id]
    hour = day + timedelta(hours=1)
    assert await ids(since=hour.isoformat()) == [rows[2].id, rows[1].id]
    assert await ids(until=hour.isoformat()) == [rows[0].id]
    naive = await api.get("/releases", params={"since": "2026-03-01T00:00:00"})
    assert naive.status_code == 422
    assert "since" in naive.json()["detail"]
    assert (await api.get("/releases", params={"state": "sleeping"})).status_code == 422
    stored = (await api.get(f"/releases/{rows[2].id}")).json()
    assert stored["state"] == ReleaseState.CANCELLED


async def test_inventories_say_what_earlier_releases_applied_or_that_one_is_not_known(
    stack_env: StackEnv,
) -> None:
    mongo = Mongo(stack_env.mongo_url, unique("inv").replace("-", "_"))
    releases, stored = Releases(mongo), mongo.collection("releases")
    service = unique("svc")
    config = Owned(api_version="v1", kind="ConfigMap", name=f"{service}-settings")
    web = Owned(api_version="apps/v1", kind="Deployment", name=service)

    async def store(release: Release) -> None:
        # As each Fabu wrote it: older ones kept no inventory.
        doc = release.model_dump(exclude={"id", "duration_s"})
        doc["params"] = encode_params(doc["params"])
        await stored.insert_one({"_id": release.id, **doc})

    try:
        # A release cancelled before it rendered, and a failed one that applied part.
        await store(record(service, "prod"))
        await store(record(service, "prod", inventory=[config, web], state=ReleaseState.FAILED))
        await store(record(service, "test", inventory=[web], generation=1))
        found = await releases.inventories(service, "prod")
        assert found == [[config, web], []]
        # One that reached the cluster without an inventory: what it applied is not known.
        await store(record(service, "test", generation=3))
        assert await releases.inventories(service, "test") is None
        assert await releases.inventories(unique("none"), "prod") == []
    finally:
        await mongo.client.drop_database(mongo.db.name)
        await mongo.close()
