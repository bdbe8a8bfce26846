"""The action matrix where features meet, on the real stack: a redeploy goes through the
canary and the approval like any release, asks first for a version that failed or was
aborted, and is open on the release the cluster runs however the newest record ended."""

from typing import Any

import httpx
from kubernetes_asyncio import client

from devstack.system import FabuSystem
from tests.integration.test_canary import paused_at, released
from tests.support.releases import finished, prepare
from tests.support.stack import StackEnv


async def _environment(api: httpx.AsyncClient, name: str, **changes: Any) -> None:
    env = (await api.get(f"/environments/{name}")).json()
    updated = await api.put(f"/environments/{name}", json={**env, **changes})
    assert updated.status_code == 200, updated.text


def pages(fabu: FabuSystem, api: httpx.AsyncClient) -> httpx.AsyncClient:
    """The UI's pages, as the API client's user."""
    return httpx.AsyncClient(base_url=fabu.api_url, headers=api.headers, timeout=30)


async def test_a_redeploy_of_an_aborted_canary_asks_first_and_goes_through_the_canary_again(
    api: httpx.AsyncClient,
    fabu: FabuSystem,
    stack_env: StackEnv,
    namespace: str,
    kube: client.ApiClient,
) -> None:
    service, environment = await prepare(
        api, stack_env, namespace, replicas=2, canary=[{"weight": 10}, {"weight": 50}]
    )
    first = await finished(api, await released(api, service, environment, "1.0.0"))
    assert first["state"] == "succeeded", first["reason"]
    canary = await released(api, service, environment, "1.1.0")
    await paused_at(api, canary, 0)
    assert (await api.post(f"/releases/{canary}/abort")).status_code == 200

    offered = (await api.get(f"/releases/{canary}/actions")).json()
    assert "redeploy" in offered["actions"], offered
    assert offered["confirm"]["redeploy"].startswith("1.1.0 was aborted at canary step 1"), offered
    refused = await api.post(f"/releases/{canary}/redeploy")
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "confirmed"
    assert "1.1.0 was aborted at canary step 1" in refused.json()["detail"]
    listed = (await api.get("/releases", params={"service": service})).json()["items"]
    assert len(listed) == 2  # nothing was started
    async with pages(fabu, api) as ui:
        page = await ui.get(f"/releases/{canary}/redeploy")
    assert page.status_code == 200
    assert "1.1.0 was aborted at canary step 1" in page.text
    assert 'name="confirmed"' in page.text
    assert "10% → 50% → 100%" in page.text  # the steps it will go through

    accepted = await api.post(f"/releases/{canary}/redeploy", json={"confirmed": True})
    assert accepted.status_code == 202, accepted.text
    again = await paused_at(api, accepted.json()["id"], 0)
    assert (again["kind"], again["version"]) == ("redeploy", "1.1.0")
    main = await client.AppsV1Api(kube).read_namespaced_deployment(service, namespace)
    assert main.spec.template.spec.containers[0].image.endswith(":1.0.0")  # not at 100 %
    assert (await api.post(f"/releases/{again['id']}/abort")).status_code == 200


async def test_what_runs_now_is_redeployed_through_the_approval_and_not_rolled_back_to(
    api: httpx.AsyncClient, fabu: FabuSystem, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace, replicas=1)
    first = await finished(api, await released(api, service, environment, "1.0.0"))
    assert first["state"] == "succeeded", first["reason"]
    await _environment(api, environment, approval_required=True)
    # The newest record never reached the cluster: 1.0.0 still runs.
    waiting = await released(api, service, environment, "2.0.0")
    assert (await api.post(f"/releases/{waiting}/cancel")).status_code == 200

    offered = (await api.get(f"/releases/{first['id']}/actions")).json()
    assert offered["actions"] == ["redeploy"], offered
    assert offered["confirm"] == {}
    refused = await api.post(f"/releases/{first['id']}/rollback")
    assert refused.status_code == 409, refused.text
    assert "is what runs in" in refused.json()["detail"]
    older = (await api.get(f"/releases/{waiting}/actions")).json()
    assert older["actions"] == ["redeploy"]  # the newest record, too
    async with pages(fabu, api) as ui:
        page = await ui.get(f"/services/{service}")
    assert f'href="/releases/{first["id"]}/redeploy" id="redeploy-{environment}"' in page.text

    accepted = await api.post(f"/releases/{first['id']}/redeploy")
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["state"] == "awaiting_approval"  # the same gates as any release
    assert (await api.post(f"/releases/{accepted.json()['id']}/cancel")).status_code == 200


async def test_a_failed_version_is_redeployed_only_when_confirmed(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace, replicas=1)
    await _environment(api, environment, rollout_timeout_s=3, auto_rollback=False)
    # Pods of a version tagged "-never-ready" never become Ready: it fails at its timeout.
    failed = await finished(
        api, await released(api, service, environment, "9.9.9-never-ready"), within=90
    )
    assert failed["state"] == "failed"
    refused = await api.post(f"/releases/{failed['id']}/redeploy")
    assert refused.status_code == 422
    assert refused.json()["detail"].startswith("confirmed: 9.9.9-never-ready failed (")
