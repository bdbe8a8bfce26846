"""What runs, on the real stack: a service's live state (health, drift), the cause of a
failure in one sentence, and the way back to the last good release (by hand or by Fabu)."""

import re
from typing import Any

import httpx
from kubernetes_asyncio import client

from tests.support.releases import DEMO, emailed, finished, prepare, release
from tests.support.smtp import Inbox
from tests.support.stack import StackEnv
from tests.support.wait import eventually

# The demo service, scaled by a HorizontalPodAutoscaler to at least three pods.
SCALED = (
    DEMO
    + """
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ service }}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: {{ service }}}
  minReplicas: 3
  maxReplicas: 5
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}
"""
)


async def state(api: httpx.AsyncClient, service: str, environment: str) -> dict[str, Any]:
    answer = await api.get(f"/services/{service}/state", params={"environment": environment})
    assert answer.status_code == 200, answer.text
    [found] = answer.json()["environments"]
    assert found["environment"] == environment
    return dict(found)


async def state_where(
    api: httpx.AsyncClient, service: str, environment: str, what: str, test: Any
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        found = await state(api, service, environment)
        return found if test(found) else None

    return await eventually(probe, what, within=60)


async def test_after_a_failed_release_the_state_names_the_failing_image_and_degraded(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace, replicas=2)
    good = await finished(api, await release(api, service, environment, "1.0.0"))
    assert good["state"] == "succeeded", good["reason"]
    healthy = await state_where(
        api, service, environment, "a healthy state", lambda s: s["health"] == "Healthy"
    )
    assert (healthy["sync"], healthy["release"]["id"]) == ("Synced", good["id"])
    assert [i["image"].rsplit(":", 1)[1] for i in healthy["images"]] == ["1.0.0"]
    config = {"template_id": good["template_id"], "params": {"replicas": 2, "rollout_timeout_s": 6}}
    await api.put(f"/services/{service}/config/{environment}", json=config)

    failed = await finished(api, await release(api, service, environment, "1.1.0-crash-loop"))

    assert failed["state"] == "failed"
    assert failed["diagnosis"]["summary"].startswith("CrashLoopBackOff: container app exited 1, ")
    now = await state_where(
        api, service, environment, "a degraded state", lambda s: s["health"] == "Degraded"
    )
    # What the cluster runs, not Fabu's last success: the failing release, beside the old pods.
    assert (now["release"]["id"], now["release"]["version"]) == (failed["id"], "1.1.0-crash-loop")
    assert now["sync"] == "Synced"
    running = {i["image"].rsplit(":", 1)[1] for i in now["images"]}
    assert running == {"1.0.0", "1.1.0-crash-loop"}
    [web] = [w for w in now["workloads"] if w["name"] == service]
    assert web["health"] == "Degraded"
    assert web["message"].startswith("CrashLoopBackOff: container app exited 1")
    assert (web["desired"], web["ready"]) == (2, 2)
    assert (now["last_good"]["id"], now["last_good"]["version"]) == (good["id"], "1.0.0")
    # The way back is the last good release, not the broken one.
    refused = await api.post(f"/releases/{failed['id']}/rollback", json={})
    assert refused.status_code == 409
    assert "succeeded" in refused.json()["detail"]
    actions = (await api.get(f"/releases/{failed['id']}/actions")).json()["actions"]
    assert "rollback" not in actions
    ui = await _ui(api, f"/releases/{failed['id']}")
    assert f'href="/releases/{good["id"]}/rollback" id="action-rollback-last-good"' in ui
    assert "Roll back to 1.0.0" in re.sub(r"\s+", " ", ui)
    assert 'id="action-rollback"' not in ui
    assert "CrashLoopBackOff: container app exited 1" in ui


async def _ui(api: httpx.AsyncClient, path: str) -> str:
    """A UI page as the test's admin sees it (the UI lives beside the API's /api/v1)."""
    base = str(api.base_url).removesuffix("/api/v1/").removesuffix("/api/v1")
    answer = await api.get(f"{base}{path}")
    assert answer.status_code == 200, answer.text
    return answer.text


async def test_a_scale_or_a_new_image_behind_fabus_back_is_out_of_sync_with_the_field(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    service, environment = await prepare(api, stack_env, namespace, replicas=1)
    good = await finished(api, await release(api, service, environment, "1.0.0"))
    assert good["state"] == "succeeded", good["reason"]
    await state_where(api, service, environment, "in sync", lambda s: s["sync"] == "Synced")
    apps = client.AppsV1Api(kube)

    # kubectl scale deployment/<service> --replicas=3
    await apps.patch_namespaced_deployment_scale(
        service, namespace, {"spec": {"replicas": 3}}, field_manager="kubectl"
    )
    scaled = await state_where(
        api, service, environment, "out of sync", lambda s: s["sync"] == "OutOfSync"
    )
    assert [(d["object"], d["field"], d["live"], d["release"]) for d in scaled["drift"]] == [
        (f"Deployment/{service}", "spec.replicas", 3, 1)
    ]

    # kubectl set image deployment/<service> app=<repository>:9.9.9
    repository = good["image"].rsplit(":", 1)[0]
    patch = {
        "spec": {
            "template": {"spec": {"containers": [{"name": "app", "image": f"{repository}:9.9.9"}]}}
        }
    }
    await apps.patch_namespaced_deployment(service, namespace, patch, field_manager="kubectl-set")
    changed = await state_where(
        api,
        service,
        environment,
        "the image drift",
        lambda s: any(d["field"].endswith("containers[app].image") for d in s["drift"]),
    )
    [image] = [d for d in changed["drift"] if d["field"].endswith("image")]
    assert image["field"] == "spec.template.spec.containers[app].image"
    assert (image["live"], image["release"]) == (f"{repository}:9.9.9", good["image"])
    ui = await _ui(api, f"/services/{service}")
    assert "spec.template.spec.containers[app].image" in ui
    assert "OutOfSync" in ui


async def test_what_a_horizontal_pod_autoscaler_scales_is_not_drift(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    service, environment = await prepare(api, stack_env, namespace, template=SCALED, replicas=1)
    good = await finished(api, await release(api, service, environment, "1.0.0"))
    assert good["state"] == "succeeded", good["reason"]
    apps = client.AppsV1Api(kube)

    async def scaled_up() -> bool:
        live = await apps.read_namespaced_deployment(service, namespace)
        return live.spec.replicas == 3

    await eventually(scaled_up, "the autoscaler to scale to its minimum", within=60)
    now = await state_where(
        api, service, environment, "a settled state", lambda s: s["health"] == "Healthy"
    )
    assert (now["sync"], now["drift"]) == ("Synced", [])
    [web] = [w for w in now["workloads"] if w["name"] == service]
    assert web["desired"] == 3


async def test_an_automatic_rollback_restores_the_last_good_release_and_notifies_once(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, inbox: Inbox
) -> None:
    email = "team@example.com"
    service, environment = await prepare(
        api, stack_env, namespace, notify_emails=[email], replicas=1
    )
    good = await finished(api, await release(api, service, environment, "1.0.0"))
    assert good["state"] == "succeeded", good["reason"]
    params = {"replicas": 1, "rollout_timeout_s": 5, "auto_rollback": True}
    saved = await api.put(
        f"/services/{service}/config/{environment}",
        json={"template_id": good["template_id"], "params": params},
    )
    assert saved.status_code == 200, saved.text

    failed = await finished(api, await release(api, service, environment, "2.0.0-crash-loop"))

    assert failed["state"] == "failed"

    async def linked() -> dict[str, Any] | None:
        body: dict[str, Any] = (await api.get(f"/releases/{failed['id']}")).json()
        return body if body.get("rolled_back_by") else None

    rollback_id = (await eventually(linked, "the automatic rollback"))["rolled_back_by"]
    rollback = await finished(api, rollback_id)
    assert rollback["state"] == "succeeded", rollback["reason"]
    assert (rollback["kind"], rollback["version"], rollback["operator"]) == (
        "rollback",
        "1.0.0",
        "fabu",
    )
    assert (rollback["rollback_of"], rollback["source_release_id"]) == (failed["id"], good["id"])
    assert "automatic rollback to 1.0.0" in rollback["description"]
    back = await state_where(
        api, service, environment, "the last good release back", lambda s: s["health"] == "Healthy"
    )
    assert (back["release"]["id"], back["sync"]) == (rollback_id, "Synced")
    assert {i["image"].rsplit(":", 1)[1] for i in back["images"]} == {"1.0.0"}

    # Notified once each: the failure (saying Fabu rolls back) and the rollback's result.
    await emailed(api, failed["id"], "failed")
    await emailed(api, rollback_id, "succeeded")
    [failure] = inbox.about(failed["id"])
    payload = failure.get_payload(decode=True)
    assert isinstance(payload, bytes)
    text = payload.decode()
    assert "Fabu is rolling back to 1.0.0 automatically" in text
    assert f"/releases/{failed['id']}" in text
    assert "/api/v1/" not in text
    [result] = inbox.about(rollback_id)
    assert "(Automatic rollback)" in result["Subject"]
    # Never more than one in a row, and no second rollback of the same failure.
    listed = (await api.get("/releases", params={"service": service})).json()["items"]
    assert [r["id"] for r in listed] == [rollback_id, failed["id"], good["id"]]


async def _stated(api: httpx.AsyncClient, release_id: str, pattern: str) -> dict[str, Any]:
    """The release while still under way, once its transcript states a cause."""

    async def probe() -> dict[str, Any] | None:
        body: dict[str, Any] = (await api.get(f"/releases/{release_id}")).json()
        assert body["state"] in ("requested", "rendered", "applied"), body["reason"]
        lines = [line["text"] for line in body["transcript"]]
        return body if any(re.match(pattern, line) for line in lines) else None

    return await eventually(probe, f"the cause {pattern!r}", within=60)


async def test_the_cause_is_stated_before_the_timeout_and_leads_the_diagnosis(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    crash_svc, crash_env = await prepare(api, stack_env, namespace, rollout_timeout_s=120)
    pull_svc, pull_env = await prepare(api, stack_env, namespace, rollout_timeout_s=120)
    ready_svc, ready_env = await prepare(api, stack_env, namespace, rollout_timeout_s=4)
    crashing = await release(api, crash_svc, crash_env, "1.0-crash-loop")
    pulling = await release(api, pull_svc, pull_env, "1.0-pull-fail")
    waiting = await release(api, ready_svc, ready_env, "1.0-never-ready")

    # Stated while the rollout runs, long before its two-minute timeout.
    crash = await _stated(
        api, crashing, r"cause: CrashLoopBackOff: container app exited 1, 1 restart \(pod "
    )
    assert crash["state"] == "applied"
    pull = await _stated(
        api,
        pulling,
        r'cause: (ErrImagePull|ImagePullBackOff): failed to pull and unpack image ".*:1.0-pull-fail"'
        r": not found \(pod ",
    )
    assert pull["state"] == "applied"
    # The live pods say it too, each with its restarts.
    [pod] = [p for p in crash["pods"] if p["new"]] or [None]
    assert pod is not None
    assert pod["cause"].startswith("CrashLoopBackOff")
    assert pod["restarts"] >= 1
    for release_id in (crashing, pulling):
        assert (await api.post(f"/releases/{release_id}/cancel")).status_code == 200

    never = await finished(api, waiting)
    assert never["state"] == "failed"
    summary = never["diagnosis"]["summary"]
    assert re.fullmatch(
        r"1 of 1 new pods not Ready for \d+ s \(readiness probe: HTTP GET /healthz on port 8080\)",
        summary,
    ), summary
    [pod] = never["diagnosis"]["pods"]
    assert pod["ready"].startswith("Ready=False"), pod


async def test_a_cluster_that_cannot_be_reached_leaves_the_state_unknown_with_the_cause(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    good = await finished(api, await release(api, service, environment, "1.0.0"))
    assert good["state"] == "succeeded", good["reason"]
    dead = stack_env.kubeconfig.parent / f"dead-live-{namespace}.yaml"
    config = stack_env.kubeconfig.read_text()
    port = re.search(r"server: https://127\.0\.0\.1:(\d+)", config)
    assert port is not None
    dead.write_text(config)  # good while the environment is saved (a save checks the cluster)
    try:
        env = (await api.get(f"/environments/{environment}")).json()
        moved = await api.put(f"/environments/{environment}", json={**env, "kubeconfig": dead.name})
        assert moved.status_code == 200, moved.text
        dead.write_text(config.replace(port.group(1), "1"))  # nothing listens on port 1

        found = await state(api, service, environment)

        assert (found["health"], found["sync"]) == ("Unknown", "Unknown")
        assert found["error"].startswith(f"cannot list namespace '{namespace}': ")
        assert "unreachable" in found["error"]
        assert found["last_good"]["id"] == good["id"]
        assert service in await _ui(api, "/services")
    finally:
        dead.unlink()
