"""Blue-green releases on the real stack: the preview beside the old version, the switch
of the active Service, the old version kept for the delay, the full rollout behind the
switched Service, and aborts before and after the switch."""

import json
from typing import Any

import httpx
from kubernetes_asyncio import client

from tests.integration.test_canary import absent, paused_at, released
from tests.support.releases import finished, prepare
from tests.support.stack import StackEnv

TRACK, PREVIEW_OF, BEFORE = "fabu.io/track", "fabu.io/preview-of", "fabu.io/before-switch"


async def images(apps: client.AppsV1Api, name: str, namespace: str) -> str:
    live = await apps.read_namespaced_deployment(name, namespace)
    image: str = live.spec.template.spec.containers[0].image
    return image.rsplit(":", 1)[1]


async def test_the_preview_is_judged_then_the_switch_moves_the_traffic_and_the_main_follows(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    blue_green = {"scale_down_delay_s": 8}
    service, environment = await prepare(
        api, stack_env, namespace, replicas=2, blue_green=blue_green
    )
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    first = await finished(api, await released(api, service, environment, "1.0"))
    assert first["state"] == "succeeded", first["reason"]

    release_id = await released(api, service, environment, "2.0")
    await paused_at(api, release_id, 0)
    preview_pods = {TRACK: "preview", PREVIEW_OF: service}
    preview = await apps.read_namespaced_deployment(f"{service}-preview", namespace)
    assert preview.spec.replicas == 2  # the main Deployment's size
    assert preview.spec.template.metadata.labels == preview_pods
    assert await images(apps, f"{service}-preview", namespace) == "2.0"
    own = await core.read_namespaced_service(f"{service}-preview", namespace)
    assert own.spec.selector == preview_pods
    active = await core.read_namespaced_service(service, namespace)
    assert active.spec.selector == {"app": service}  # not switched before it is judged
    assert await images(apps, service, namespace) == "1.0"

    assert (await api.post(f"/releases/{release_id}/promote")).status_code == 200
    await paused_at(api, release_id, 1)
    active = await core.read_namespaced_service(service, namespace)
    assert active.spec.selector == preview_pods
    assert json.loads(active.metadata.annotations[BEFORE]) == {"app": service}
    assert await images(apps, service, namespace) == "1.0"  # the old version stays meanwhile

    body = await finished(api, release_id)  # promoted by Fabu after the delay
    assert body["state"] == "succeeded", body["reason"]
    assert await images(apps, service, namespace) == "2.0"
    active = await core.read_namespaced_service(service, namespace)
    assert active.spec.selector == {"app": service}
    assert BEFORE not in (active.metadata.annotations or {})
    assert await absent(apps.read_namespaced_deployment, f"{service}-preview", namespace)
    assert await absent(core.read_namespaced_service, f"{service}-preview", namespace)
    steps = [(e["step"], e["what"], e["by"]) for e in body["canary"]]
    assert steps[:5] == [
        (0, "applied", ""),
        (0, "healthy", ""),
        (0, "promoted", "admin"),
        (1, "applied", ""),
        (1, "healthy", ""),
    ]
    assert steps[5][:2] == (1, "promoted")
    assert steps[5][2] != "admin"  # by Fabu, after the delay
    lines = [line["text"] for line in body["transcript"]]
    switch = f"the switch: Service {service} sends its traffic to {service}-preview's pods"
    assert any(line.startswith(switch) for line in lines), lines
    assert any(line.startswith("removed the preview: ") for line in lines), lines
    assert any("back on the main pods" in line for line in lines), lines


async def snapshot(kube: client.ApiClient, service: str, namespace: str) -> dict[str, Any]:
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    deployment = await apps.read_namespaced_deployment(service, namespace)
    active = await core.read_namespaced_service(service, namespace)
    return {
        "generation": deployment.metadata.generation,
        "image": deployment.spec.template.spec.containers[0].image,
        "selector": active.spec.selector,
        "annotations": {
            k: v for k, v in (active.metadata.annotations or {}).items() if k.startswith("fabu")
        },
    }


async def test_an_abort_before_the_switch_switches_nothing_and_after_it_switches_back(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    service, environment = await prepare(
        api, stack_env, namespace, replicas=1, blue_green={"scale_down_delay_s": 600}
    )
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    await finished(api, await released(api, service, environment, "1.0"))
    before = await snapshot(kube, service, namespace)

    aborted_early = await released(api, service, environment, "2.0")
    await paused_at(api, aborted_early, 0)
    assert (await api.post(f"/releases/{aborted_early}/abort")).status_code == 200
    assert (await api.get(f"/releases/{aborted_early}")).json()["state"] == "aborted"
    assert await snapshot(kube, service, namespace) == before
    assert await absent(apps.read_namespaced_deployment, f"{service}-preview", namespace)

    aborted_late = await released(api, service, environment, "3.0")
    await paused_at(api, aborted_late, 0)
    assert (await api.post(f"/releases/{aborted_late}/promote")).status_code == 200
    await paused_at(api, aborted_late, 1)
    switched = await core.read_namespaced_service(service, namespace)
    assert switched.spec.selector == {TRACK: "preview", PREVIEW_OF: service}
    assert (await api.post(f"/releases/{aborted_late}/abort")).status_code == 200
    body = (await api.get(f"/releases/{aborted_late}")).json()
    assert body["state"] == "aborted"
    assert await snapshot(kube, service, namespace) == before  # back on the old version
    assert await absent(apps.read_namespaced_deployment, f"{service}-preview", namespace)
    assert await absent(core.read_namespaced_service, f"{service}-preview", namespace)
    lines = [line["text"] for line in body["transcript"]]
    assert any("switched back to the old version" in line for line in lines), lines
