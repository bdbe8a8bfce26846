"""The stack's Prometheus and the Gateway API in its cluster: what canary analysis and
routed canaries stand on."""

import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from devstack.build import HELM
from shared.outside.prometheus import Prometheus
from tests.support.prometheus import Exporter, LocalPrometheus, Series, reachable, wait_scraped
from tests.support.stack import StackEnv

GROUP, VERSION = "gateway.networking.k8s.io", "v1"
CHART = Path(__file__).parents[2] / "deploy" / "helm" / "fabu"


def _one(value: float) -> Callable[[list[Series]], bool]:
    """One series, of this value."""
    return lambda series: len(series) == 1 and series[0].value == value


async def test_prometheus_scrapes_the_counters_a_test_sets(
    stack_env: StackEnv, exporter: Exporter
) -> None:
    canary = {"service": "web", "version": "2.0.0", "track": "canary"}
    exporter.count(n=97, code="200", **canary)
    exporter.count(n=3, code="500", **canary)
    url = stack_env.prometheus_url

    [total] = await wait_scraped(url, f"sum({exporter.selector(**canary)})", _one(100))
    assert total.labels == {}
    [series] = await wait_scraped(url, exporter.selector(code="500"))
    assert series.labels == {
        "__name__": "http_requests_total",
        "job": "fabu-test-exporters",
        "instance": exporter.url.removeprefix("http://").removesuffix("/metrics"),
        "exporter": exporter.name,
        "code": "500",
        **canary,
    }
    # What an analysis template's query reads, through Fabu's own client.
    errors = f"sum({exporter.selector(code='500')}) / sum({exporter.selector()})"
    fabu = Prometheus(url, timeout_s=5)
    try:
        assert await fabu.value(errors) == (0.03, "")
    finally:
        await fabu.close()


async def test_a_rate_set_by_the_test_is_what_rate_reads(
    stack_env: StackEnv, exporter: Exporter
) -> None:
    exporter.set_rate(20, service="web", code="200")
    promql = f"rate({exporter.selector(service='web')}[3s])"

    def near_twenty(series: list[Series]) -> bool:
        return len(series) == 1 and 18 <= series[0].value <= 22

    await wait_scraped(stack_env.prometheus_url, promql, near_twenty)
    exporter.set_rate(0, service="web", code="200")
    await wait_scraped(stack_env.prometheus_url, promql, _one(0))


async def test_a_closed_exporter_is_no_longer_a_target(
    stack_env: StackEnv, exporter: Exporter
) -> None:
    up = f'up{{exporter="{exporter.name}"}}'
    await wait_scraped(stack_env.prometheus_url, up, _one(1))
    exporter.close()
    await wait_scraped(stack_env.prometheus_url, up, lambda series: series == [])


async def test_a_stopped_prometheus_is_unreachable_until_started_again(
    prometheus: LocalPrometheus,
) -> None:
    fabu = Prometheus(prometheus.url, timeout_s=2)
    try:
        assert await reachable(prometheus.url)
        await prometheus.stop()
        assert not prometheus.running()
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as http:
                await http.get(f"{prometheus.url}/-/ready")
        value, detail = await fabu.value("vector(1)")
        assert value is None
        assert "could not be reached" in detail

        await prometheus.start()
        assert prometheus.running()
        assert await fabu.value("vector(1)") == (1.0, "")
    finally:
        await fabu.close()


@pytest.mark.parametrize(
    ("kind", "plural"),
    [
        ("HTTPRoute", "httproutes"),
        ("Gateway", "gateways"),
        ("GatewayClass", "gatewayclasses"),
        ("ReferenceGrant", "referencegrants"),
    ],
)
async def test_the_gateway_api_crds_are_established(
    kube: client.ApiClient, kind: str, plural: str
) -> None:
    crd = await client.ApiextensionsV1Api(kube).read_custom_resource_definition(f"{plural}.{GROUP}")
    assert crd.spec.names.kind == kind
    conditions = {c.type: c.status for c in crd.status.conditions}
    assert conditions["Established"] == "True"
    assert crd.metadata.annotations[f"{GROUP}/channel"] == "standard"
    assert crd.metadata.annotations[f"{GROUP}/bundle-version"] == "v1.6.3"
    assert any(v.name == VERSION and v.served for v in crd.spec.versions)


async def test_an_httproute_splits_by_weight_and_reads_back(
    kube: client.ApiClient, namespace: str
) -> None:
    routes = client.CustomObjectsApi(kube)

    def route(name: str, weights: tuple[int, int]) -> dict[str, object]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "HTTPRoute",
            "metadata": {"name": name},
            "spec": {
                "parentRefs": [{"name": "public"}],
                "rules": [
                    {
                        "backendRefs": [
                            {"name": "web", "port": 80, "weight": weights[0]},
                            {"name": "web-canary", "port": 80, "weight": weights[1]},
                        ]
                    }
                ],
            },
        }

    await routes.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "httproutes", route("web", (90, 10))
    )
    read = await routes.get_namespaced_custom_object(GROUP, VERSION, namespace, "httproutes", "web")
    backends = read["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [("web", 90), ("web-canary", 10)]

    # The CRD's schema is enforced: weights are never negative.
    with pytest.raises(ApiException) as refused:
        await routes.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "httproutes", route("bad", (90, -1))
        )
    assert refused.value.status == 422


def _template(*values: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HELM.binary("helm")), "template", "fabu", str(CHART), *values],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_chart_gives_every_stage_the_prometheus_url() -> None:
    key = ["--set", "secrets.FABU_SECRET_KEY=a-fernet-key-for-tests"]
    url = "http://prometheus-operated.monitoring:9090"
    done = _template(*key, "--set", f"prometheus.url={url}")
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    [config] = [d for d in docs if d["kind"] == "ConfigMap"]
    assert config["data"]["FABU_PROMETHEUS_URL"] == url
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert len(deployments) == 5
    for deployment in deployments:
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert {"configMapRef": {"name": config["metadata"]["name"]}} in container["envFrom"]

    default = _template(*key)
    assert default.returncode == 0, default.stderr
    assert "FABU_PROMETHEUS_URL" not in default.stdout
    refused = _template(*key, "--set", "prometheus.url=prometheus:9090")
    assert refused.returncode != 0
    assert "prometheus.url: give an http:// or https:// address" in refused.stderr
