"""Canaries judged by Prometheus on the real stack: good metrics promote every step with
no person, a rising error rate aborts at step 1 with the value in the reason and the
notification, an unreachable Prometheus pauses the step for a person; and an HTTPRoute's
weights read back from the API server at each step and after the full rollout.

The metrics come from a test-owned exporter on loopback (tests/support/prometheus.py),
scraped by the stack's real Prometheus: pods on KWOK serve no traffic of their own."""

from email.message import Message
from typing import Any

import httpx
from kubernetes_asyncio import client

from tests.conftest import unique
from tests.integration.test_canary import absent, paused_at, released
from tests.support.prometheus import Exporter, LocalPrometheus, wait_scraped
from tests.support.releases import DEMO, finished, prepare
from tests.support.smtp import Inbox
from tests.support.stack import StackEnv
from tests.support.wait import eventually


def error_ratio(exporter: Exporter) -> str:
    """The 5xx share of the release's version's requests over the last 5 s."""
    own = f'exporter="{exporter.name}",service="{{{{service}}}}",version="{{{{version}}}}"'
    return (
        f'sum(rate(http_requests_total{{{own},code="500"}}[5s]))'
        f" / sum(rate(http_requests_total{{{own}}}[5s]))"
    )


async def analysis_template(api: httpx.AsyncClient, exporter: Exporter, count: int) -> str:
    name = unique("errors")
    template = {
        "name": name,
        "metrics": [
            {
                "name": "error-ratio",
                "query": error_ratio(exporter),
                "success": "result < 0.05",
                "interval_s": 1,
                "count": count,
            }
        ],
    }
    created = await api.post("/analysis-templates", json=template)
    assert created.status_code == 201, created.text
    return name


def traffic(exporter: Exporter, service: str, version: str, errors: float) -> None:
    """The version's pods answer 20 requests a second, ``errors`` of them with a 500."""
    exporter.set_rate(20 - errors, service=service, version=version, code="200")
    exporter.set_rate(errors, service=service, version=version, code="500")


async def measured(stack_env: StackEnv, exporter: Exporter, service: str, version: str) -> None:
    """Wait until Prometheus answers the ratio for the version (a step is judged at once)."""
    query = error_ratio(exporter).replace("{{service}}", service).replace("{{version}}", version)
    await wait_scraped(stack_env.prometheus_url, query, within=60)


async def test_good_metrics_promote_every_step_with_no_person(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, exporter: Exporter
) -> None:
    name = await analysis_template(api, exporter, count=2)
    canary = [{"weight": 10, "analysis": [name]}, {"weight": 50, "analysis": [name]}]
    service, environment = await prepare(api, stack_env, namespace, replicas=2, canary=canary)
    await finished(api, await released(api, service, environment, "1.0"))
    traffic(exporter, service, "2.0", errors=0)
    await measured(stack_env, exporter, service, "2.0")

    body = await finished(api, await released(api, service, environment, "2.0"), within=120)
    assert body["state"] == "succeeded", body["reason"]
    promoted = [(e["step"], e["by"]) for e in body["canary"] if e["what"] == "promoted"]
    assert promoted == [(0, "tracker"), (1, "tracker")]
    kept = [(m["step"], m["phase"], m["value"]) for m in body["measurements"]]
    assert kept == [(0, "passed", 0.0)] * 2 + [(1, "passed", 0.0)] * 2
    assert body["analyses"][0]["name"] == name
    assert f'service="{service}",version="2.0"' in body["measurements"][0]["query"]
    lines = [line["text"] for line in body["transcript"]]
    assert any("as its analysis passed (2 measurements" in line for line in lines), lines


async def test_a_rising_error_rate_aborts_at_step_one_with_the_value_in_the_reason(
    api: httpx.AsyncClient,
    stack_env: StackEnv,
    namespace: str,
    exporter: Exporter,
    kube: client.ApiClient,
    inbox: Inbox,
) -> None:
    name = await analysis_template(api, exporter, count=3)
    canary = [{"weight": 10, "analysis": [name]}, {"weight": 50}]
    service, environment = await prepare(
        api, stack_env, namespace, replicas=2, canary=canary, notify_emails=["team@example.com"]
    )
    apps = client.AppsV1Api(kube)
    await finished(api, await released(api, service, environment, "1.0"))
    before = (await apps.read_namespaced_deployment(service, namespace)).to_dict()
    traffic(exporter, service, "2.0", errors=5)
    await measured(stack_env, exporter, service, "2.0")

    release_id = await released(api, service, environment, "2.0")
    body = await finished(api, release_id, within=120)
    assert body["state"] == "failed"
    reason = body["reason"]
    assert reason.startswith(f"canary step 1 failed: analysis {name}/error-ratio failed"), reason
    assert "last value 0.25 against 'result < 0.05'" in reason
    assert f'service="{service}",version="2.0"' in reason
    assert [m["phase"] for m in body["measurements"]] == ["failed"]
    after = (await apps.read_namespaced_deployment(service, namespace)).to_dict()
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"] == before["spec"]  # the main Deployment untouched
    assert await absent(apps.read_namespaced_deployment, f"{service}-canary", namespace)

    def text(mail: Message) -> str:
        parts = mail.walk() if mail.is_multipart() else [mail]
        payloads = [p.get_payload(decode=True) for p in parts if not p.is_multipart()]
        return "".join(p.decode() for p in payloads if isinstance(p, bytes))

    async def mailed() -> list[Message]:
        return [m for m in inbox.about(release_id) if "last value 0.25" in text(m)]

    await eventually(mailed, "the failure's email with the value")


async def test_an_unreachable_prometheus_pauses_the_step_and_never_promotes(
    api: httpx.AsyncClient,
    stack_env: StackEnv,
    namespace: str,
    exporter: Exporter,
    prometheus: LocalPrometheus,
) -> None:
    name = await analysis_template(api, exporter, count=2)
    canary = [{"weight": 10, "analysis": [name]}]
    service, environment = await prepare(api, stack_env, namespace, replicas=2, canary=canary)
    await finished(api, await released(api, service, environment, "1.0"))
    await prometheus.stop()

    release_id = await released(api, service, environment, "2.0")
    await paused_at(api, release_id, 0)

    async def judged() -> dict[str, Any] | None:
        body: dict[str, Any] = (await api.get(f"/releases/{release_id}")).json()
        said = any(
            line["text"].startswith(f"canary step 1: analysis {name}/error-ratio inconclusive")
            for line in body["transcript"]
        )
        return body if said else None

    body = await eventually(judged, "the analysis to be inconclusive", within=60)
    [measurement] = body["measurements"]
    assert measurement["phase"] == "inconclusive"
    assert measurement["value"] is None
    assert "could not be reached" in measurement["detail"]
    assert (body["state"], body["canary_step"]) == ("paused", 0)
    assert [e["what"] for e in body["canary"]] == ["applied", "healthy"]  # not promoted

    await prometheus.start()
    # A person decides: promoting goes on to the full rollout.
    assert (await api.post(f"/releases/{release_id}/promote")).status_code == 200
    assert (await finished(api, release_id))["state"] == "succeeded"


WITH_ROUTE = (
    DEMO
    + """
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: {{ service }}
spec:
  parentRefs:
  - name: public
  rules:
  - backendRefs:
    - name: {{ service }}
      port: 80
"""
)
GROUP, VERSION = "gateway.networking.k8s.io", "v1"


async def test_httproute_weights_follow_the_steps_and_go_after_the_full_rollout(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    canary = [{"weight": 10}, {"weight": 50}]
    service, environment = await prepare(
        api, stack_env, namespace, template=WITH_ROUTE, replicas=2, canary=canary
    )
    custom, core = client.CustomObjectsApi(kube), client.CoreV1Api(kube)

    async def backends() -> list[tuple[str, int | None]]:
        route = await custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "httproutes", service
        )
        refs = route["spec"]["rules"][0]["backendRefs"]
        return [(r["name"], r.get("weight")) for r in refs]

    first = await finished(api, await released(api, service, environment, "1.0"))
    assert first["state"] == "succeeded", first["reason"]
    template_route = await backends()
    assert template_route in ([(service, None)], [(service, 1)])  # as applied, or defaulted

    release_id = await released(api, service, environment, "2.0")
    body = await paused_at(api, release_id, 0)
    assert await backends() == [(service, 90), (f"{service}-canary", 10)]
    assert body["canary"][0]["detail"] == f"traffic share by HTTPRoute {service}"
    canary_service = await core.read_namespaced_service(f"{service}-canary", namespace)
    assert canary_service.spec.selector == {
        "fabu.io/track": "canary",
        "fabu.io/canary-of": service,
    }
    assert (await api.post(f"/releases/{release_id}/promote")).status_code == 200
    await paused_at(api, release_id, 1)
    assert await backends() == [(service, 50), (f"{service}-canary", 50)]
    assert (await api.post(f"/releases/{release_id}/promote")).status_code == 200
    body = await finished(api, release_id)
    assert body["state"] == "succeeded", body["reason"]
    assert await backends() == template_route
    assert await absent(core.read_namespaced_service, f"{service}-canary", namespace)

    # An abort puts the route back as it was before the canary.
    aborted = await released(api, service, environment, "3.0")
    await paused_at(api, aborted, 0)
    assert await backends() == [(service, 90), (f"{service}-canary", 10)]
    assert (await api.post(f"/releases/{aborted}/abort")).status_code == 200
    assert await backends() == template_route
    route = await custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "httproutes", service
    )
    assert "fabu.io/before-canary" not in (route["metadata"].get("annotations") or {})


async def test_a_blue_green_preview_judged_by_its_analysis_switches_with_no_person(
    api: httpx.AsyncClient,
    stack_env: StackEnv,
    namespace: str,
    exporter: Exporter,
    kube: client.ApiClient,
) -> None:
    name = await analysis_template(api, exporter, count=2)
    blue_green = {"analysis": [name], "scale_down_delay_s": 1}
    service, environment = await prepare(
        api, stack_env, namespace, replicas=2, blue_green=blue_green
    )
    await finished(api, await released(api, service, environment, "1.0"))
    traffic(exporter, service, "2.0", errors=0)
    await measured(stack_env, exporter, service, "2.0")

    body = await finished(api, await released(api, service, environment, "2.0"), within=120)
    assert body["state"] == "succeeded", body["reason"]
    promoted = [(e["step"], e["by"]) for e in body["canary"] if e["what"] == "promoted"]
    assert promoted == [(0, "tracker"), (1, "tracker")]
    assert [(m["step"], m["phase"]) for m in body["measurements"]] == [(0, "passed")] * 2
    lines = [line["text"] for line in body["transcript"]]
    assert any(
        line.startswith("promoted to the switch by tracker as its analysis") for line in lines
    )
    live = await client.AppsV1Api(kube).read_namespaced_deployment(service, namespace)
    assert live.spec.template.spec.containers[0].image.endswith(":2.0")
