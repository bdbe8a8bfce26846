"""Canary releases with plain Deployments, on the real stack: objects and replicas at each
step, NGINX canary Ingress weights, promote, abort, a failing step, a timed pause."""

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from devstack.system import FabuSystem
from tests.support.releases import DEMO, WORKER, finished, prepare, push
from tests.support.stack import StackEnv
from tests.support.users import user_with
from tests.support.wait import eventually

# The demo template and an Ingress routing to its Service.
WITH_INGRESS = (
    DEMO
    + """
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ service }}
  annotations:
    kubernetes.io/ingress.class: nginx
spec:
  rules:
  - host: {{ service ~ ".example.com" }}
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: {{ service }}
            port:
              number: 80
"""
)
TRACK = "fabu.io/track"
WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"


async def released(api: httpx.AsyncClient, service: str, environment: str, version: str) -> str:
    await push(api, service, version)
    accepted = await api.post(
        "/releases", json={"service": service, "environment": environment, "version": version}
    )
    assert accepted.status_code == 202, accepted.text
    release_id: str = accepted.json()["id"]
    return release_id


async def state_of(api: httpx.AsyncClient, release_id: str, wanted: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        body: dict[str, Any] = (await api.get(f"/releases/{release_id}")).json()
        if body["state"] in ("failed", "aborted") and wanted not in ("failed", "aborted"):
            raise AssertionError(f"release ended {body['state']}: {body['reason']}")
        return body if body["state"] == wanted else None

    return await eventually(probe, f"release {release_id} to be {wanted}", within=60)


async def paused_at(api: httpx.AsyncClient, release_id: str, step: int) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        body: dict[str, Any] = (await api.get(f"/releases/{release_id}")).json()
        if body["state"] in ("failed", "aborted", "succeeded"):
            raise AssertionError(f"release ended {body['state']}: {body['reason']}")
        done = body["state"] == "paused" and body["canary_step"] == step
        return body if done else None

    return await eventually(probe, f"release {release_id} to pause at step {step}", within=60)


async def absent(read: Any, *args: str) -> bool:
    try:
        await read(*args)
    except ApiException as exc:
        return exc.status == 404
    return False


async def test_a_canary_steps_through_its_weights_and_promotes_to_the_main_deployment(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    canary = [{"weight": 10}, {"weight": 50}]
    service, environment = await prepare(
        api, stack_env, namespace, template=WITH_INGRESS, replicas=2, canary=canary
    )
    channels = [{"type": "email", "recipients": ["team@example.com"], "events": ["canary_paused"]}]
    answer = await api.put(f"/services/{service}/notifications/{environment}", json=channels)
    assert answer.status_code == 200, answer.text
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    networking = client.NetworkingV1Api(kube)

    first = await finished(api, await released(api, service, environment, "1.0"))
    assert first["state"] == "succeeded", first["reason"]
    assert any("released whole, without a canary" in line["text"] for line in first["transcript"])

    release_id = await released(api, service, environment, "2.0")
    body = await paused_at(api, release_id, 0)
    main = await apps.read_namespaced_deployment(service, namespace)
    live = await apps.read_namespaced_deployment(f"{service}-canary", namespace)
    assert (main.spec.replicas, main.spec.template.spec.containers[0].image.endswith(":1.0")) == (
        2,
        True,
    )
    assert live.spec.replicas == 1  # 1 of 3 pods: the nearest to 10 % beside 2 untouched
    assert live.spec.template.spec.containers[0].image.endswith(":2.0")
    # Routed by the Ingress: the step's weight is the traffic share, so the canary's pods
    # leave out the label the main Service selects on and have a Service of their own.
    canary_pods = {TRACK: "canary", "fabu.io/canary-of": service}
    assert live.spec.template.metadata.labels == canary_pods
    canary_service = await core.read_namespaced_service(f"{service}-canary", namespace)
    assert canary_service.spec.selector == canary_pods
    ingress = await networking.read_namespaced_ingress(f"{service}-canary", namespace)
    assert ingress.metadata.annotations["nginx.ingress.kubernetes.io/canary"] == "true"
    assert ingress.metadata.annotations[WEIGHT] == "10"
    backend = ingress.spec.rules[0].http.paths[0].backend.service.name
    assert backend == f"{service}-canary"
    assert [(e["step"], e["what"]) for e in body["canary"]] == [(0, "applied"), (0, "healthy")]
    await eventually(paused_mail(api, release_id, 1), "the canary_paused email of step 1")

    promoted = await api.post(f"/releases/{release_id}/promote")
    assert promoted.status_code == 200, promoted.text
    await paused_at(api, release_id, 1)
    await eventually(paused_mail(api, release_id, 2), "the canary_paused email of step 2")
    live = await apps.read_namespaced_deployment(f"{service}-canary", namespace)
    assert live.spec.replicas == 2  # half of the pods beside 2
    ingress = await networking.read_namespaced_ingress(f"{service}-canary", namespace)
    assert ingress.metadata.annotations[WEIGHT] == "50"
    main = await apps.read_namespaced_deployment(service, namespace)
    assert main.spec.template.spec.containers[0].image.endswith(":1.0")

    assert (await api.post(f"/releases/{release_id}/promote")).status_code == 200
    body = await finished(api, release_id)
    assert body["state"] == "succeeded", body["reason"]
    main = await apps.read_namespaced_deployment(service, namespace)
    assert main.spec.template.spec.containers[0].image.endswith(":2.0")
    assert await absent(apps.read_namespaced_deployment, f"{service}-canary", namespace)
    assert await absent(core.read_namespaced_service, f"{service}-canary", namespace)
    assert await absent(networking.read_namespaced_ingress, f"{service}-canary", namespace)
    assert [(e["step"], e["what"]) for e in body["canary"]] == [
        (0, "applied"),
        (0, "healthy"),
        (0, "promoted"),
        (1, "applied"),
        (1, "healthy"),
        (1, "promoted"),
        (2, "succeeded"),
    ]
    assert body["canary"][2]["by"] == "admin"
    listed = (await api.get("/releases", params={"service": service})).json()["items"]
    assert [(r["version"], r["canary_step"]) for r in listed] == [("2.0", 2), ("1.0", 2)]


def paused_mail(
    api: httpx.AsyncClient, release_id: str, step: int
) -> Callable[[], Awaitable[bool]]:
    """Whether the release's ``canary_paused`` notification of ``step`` was sent."""

    async def probe() -> bool:
        body = (await api.get(f"/releases/{release_id}")).json()
        return any(
            key.startswith(f"canary_paused-{step}/") and delivery["state"] == "sent"
            for key, delivery in body["notifications"].items()
        )

    return probe


async def test_abort_removes_the_canary_and_leaves_the_main_deployment_exactly_as_it_was(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    service, environment = await prepare(
        api, stack_env, namespace, template=WITH_INGRESS, replicas=2, canary=[{"weight": 25}]
    )
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    networking = client.NetworkingV1Api(kube)
    await finished(api, await released(api, service, environment, "1.0"))

    async def snapshot() -> dict[str, Any]:
        deployment = await apps.read_namespaced_deployment(service, namespace)
        return {
            "deployments": sorted(
                d.metadata.name for d in (await apps.list_namespaced_deployment(namespace)).items
            ),
            "services": sorted(
                s.metadata.name for s in (await core.list_namespaced_service(namespace)).items
            ),
            "ingresses": sorted(
                i.metadata.name for i in (await networking.list_namespaced_ingress(namespace)).items
            ),
            "generation": deployment.metadata.generation,
            "spec": deployment.spec.to_dict(),
        }

    before = await snapshot()
    release_id = await released(api, service, environment, "2.0")
    await paused_at(api, release_id, 0)
    assert f"{service}-canary" in (await snapshot())["deployments"]

    aborted = await api.post(f"/releases/{release_id}/abort")
    assert aborted.status_code == 200, aborted.text
    assert aborted.json()["state"] == "aborted"
    assert "the main Deployment was not touched" in aborted.json()["message"]
    assert await snapshot() == before
    body = (await api.get(f"/releases/{release_id}")).json()
    assert body["state"] == "aborted"
    assert body["canary"][-1]["what"] == "aborted"
    assert body["canary"][-1]["by"] == "admin"
    assert (await api.post(f"/releases/{release_id}/abort")).status_code == 409
    # The service is free for the next release.
    again = await released(api, service, environment, "2.1")
    await paused_at(api, again, 0)
    # One way to stop a canary: a cancel is refused with the way.
    cancelled = await api.post(f"/releases/{again}/cancel")
    assert cancelled.status_code == 409
    assert "abort it instead" in cancelled.json()["detail"]
    assert (await api.post(f"/releases/{again}/abort")).json()["state"] == "aborted"
    assert await snapshot() == before


async def test_a_canary_step_that_never_becomes_ready_aborts_by_itself(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    service, environment = await prepare(
        api, stack_env, namespace, replicas=2, canary=[{"weight": 50}], rollout_timeout_s=4
    )
    apps = client.AppsV1Api(kube)
    await finished(api, await released(api, service, environment, "1.0"))
    main_before = (await apps.read_namespaced_deployment(service, namespace)).spec.to_dict()

    body = await finished(api, await released(api, service, environment, "2.0-never-ready"))
    assert body["state"] == "failed"
    assert body["reason"].startswith("canary step 1 failed: rollout not finished within 4s")
    diagnosis = body["diagnosis"]
    assert diagnosis["pods"], diagnosis
    assert all(p["name"].startswith(f"{service}-canary-") for p in diagnosis["pods"])
    assert await absent(apps.read_namespaced_deployment, f"{service}-canary", namespace)
    assert (await apps.read_namespaced_deployment(service, namespace)).spec.to_dict() == (
        main_before
    )
    assert [e["what"] for e in body["canary"]] == ["applied", "failed"]
    assert any("removed the canary's objects" in line["text"] for line in body["transcript"]), body[
        "transcript"
    ]


async def test_a_timed_pause_promotes_by_itself(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(
        api, stack_env, namespace, replicas=1, canary=[{"weight": 50, "pause_s": 1}]
    )
    await finished(api, await released(api, service, environment, "1.0"))
    body = await finished(api, await released(api, service, environment, "2.0"))
    assert body["state"] == "succeeded", body["reason"]
    promoted = [e for e in body["canary"] if e["what"] == "promoted"]
    assert [(e["step"], e["by"]) for e in promoted] == [(0, "tracker")]
    assert any("after its 1s pause" in line["text"] for line in body["transcript"])


async def test_only_releasers_of_the_service_there_may_promote_or_abort(
    api: httpx.AsyncClient, fabu: FabuSystem, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(
        api, stack_env, namespace, replicas=1, canary=[{"weight": 50}]
    )
    await finished(api, await released(api, service, environment, "1.0"))
    release_id = await released(api, service, environment, "2.0")
    await paused_at(api, release_id, 0)
    elsewhere = [{"role": "releaser", "environment": "production"}]
    for grants in ([{"role": "viewer"}], [{"role": "config_admin"}], elsewhere):
        async with user_with(api, fabu, grants) as (_, http):
            for action in ("promote", "abort"):
                refused = await http.post(f"/releases/{release_id}/{action}")
                assert refused.status_code == 403, (grants, action, refused.text)
    body = (await api.get(f"/releases/{release_id}")).json()
    assert (body["state"], body["canary_step"]) == ("paused", 0)
    async with user_with(api, fabu, [{"role": "releaser", "environment": environment}]) as (
        name,
        http,
    ):
        assert (await http.post(f"/releases/{release_id}/promote")).status_code == 200
    body = await finished(api, release_id)
    assert body["state"] == "succeeded"
    assert [e["by"] for e in body["canary"] if e["what"] == "promoted"] == [name]


async def test_canary_steps_must_increase(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    config = (await api.get(f"/services/{service}/config/{environment}")).json()
    for canary in ([{"weight": 50}, {"weight": 10}], [{"weight": 100}], [{"weight": 0}]):
        refused = await api.put(
            f"/services/{service}/config/{environment}",
            json={"template_id": config["template_id"], "params": {"canary": canary}},
        )
        assert refused.status_code == 422, (canary, refused.text)
        assert "canary" in refused.text
    versions = (await api.get(f"/services/{service}/config/{environment}/versions")).json()
    assert len(versions) == 1


async def test_a_timed_pause_survives_its_tracker_dying(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, fabu: FabuSystem
) -> None:
    service, environment = await prepare(
        api, stack_env, namespace, replicas=1, canary=[{"weight": 50, "pause_s": 5}]
    )
    await finished(api, await released(api, service, environment, "1.0"))
    release_id = await released(api, service, environment, "2.0")
    await paused_at(api, release_id, 0)
    fabu.kill("tracker")
    fabu.start("tracker")
    body = await finished(api, release_id)
    assert body["state"] == "succeeded", body["reason"]
    assert [(e["step"], e["by"]) for e in body["canary"] if e["what"] == "promoted"] == [
        (0, "tracker")
    ]


async def test_a_canary_acts_on_the_marked_deployment_and_the_other_follows_the_full_rollout(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    marked = DEMO.replace(
        "    fabu.dev/release-id: {{ release_id }}",
        '    fabu.dev/release-id: {{ release_id }}\n    fabu.io/canary: "true"',
    )
    service, environment = await prepare(
        api,
        stack_env,
        namespace,
        template=marked + WORKER,
        replicas=1,
        canary=[{"weight": 50, "pause_s": 1}],
    )
    assert (await finished(api, await released(api, service, environment, "1.0")))["state"] == (
        "succeeded"
    )
    body = await finished(api, await released(api, service, environment, "2.0"))

    assert body["state"] == "succeeded", body["reason"]
    lines = [line["text"] for line in body["transcript"]]
    assert any(
        line.startswith(
            f"canary step 1 of 1: 50% asked → {service}-canary with 1 of 2 pods (50%); pod share"
        )
        for line in lines
    )
    assert f'deployment "{service}-worker" successfully rolled out' in lines
    apps = client.AppsV1Api(kube)
    for name in (service, f"{service}-worker"):
        live = await apps.read_namespaced_deployment(name, namespace)
        assert live.spec.template.spec.containers[0].image.endswith(":2.0"), name
    assert await absent(apps.read_namespaced_deployment, f"{service}-worker-canary", namespace)
