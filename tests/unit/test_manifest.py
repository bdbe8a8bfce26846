"""A canary's objects, derived from a rendered manifest."""

import pytest
import yaml

from shared.cluster.manifest import canary_objects, canary_replicas, traffic

MANIFEST = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  clusterIP: 10.0.0.7
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: unrelated}
spec:
  selector: {app: other}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: app, image: "r/web:2.0"}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, annotations: {kubernetes.io/ingress.class: nginx}}
spec:
  rules:
  - host: web.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"""


@pytest.mark.parametrize(
    ("main", "weight", "replicas"),
    [(2, 10, 1), (2, 50, 2), (4, 25, 2), (9, 10, 1), (10, 10, 2), (0, 50, 1), (3, 90, 27)],
)
def test_canary_replicas_give_at_least_the_weight(main: int, weight: int, replicas: int) -> None:
    assert canary_replicas(main, weight) == replicas
    assert replicas / (replicas + main) * 100 >= weight


def test_canary_objects_leave_the_main_ones_alone_and_route_by_weight() -> None:
    service, deployment, ingress = canary_objects(MANIFEST, 25)
    assert [o["metadata"]["name"] for o in (service, deployment, ingress)] == ["web-canary"] * 3
    # Routed: the canary's pods leave out the routed Service's labels (so it reaches the
    # main pods only) and its own Service selects them alone.
    canary = {"fabu.io/track": "canary", "fabu.io/canary-of": "web"}
    assert service["spec"] == {
        "type": "ClusterIP",
        "selector": canary,
        "ports": [{"port": 80, "targetPort": 8080}],
    }
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"]["matchLabels"] == canary
    assert deployment["spec"]["template"]["metadata"]["labels"] == canary
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/canary"] == "true"
    assert annotations["nginx.ingress.kubernetes.io/canary-weight"] == "25"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "web-canary", "port": {"number": 80}}
    assert traffic([service, deployment, ingress]) == "traffic share by Ingress web-canary"


ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{name: gateway}]
  rules:
  - backendRefs: [{name: web, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /other}}]
    backendRefs: [{name: unrelated, port: 80, weight: 3}, {name: web, port: 80, weight: 2}]
"""


def test_an_httproute_splits_each_backend_of_the_routed_service() -> None:
    docs = [d for d in yaml.safe_load_all(MANIFEST) if d["kind"] != "Ingress"]
    manifest = yaml.safe_dump_all([*docs, yaml.safe_load(ROUTE)])
    service, deployment, route = canary_objects(manifest, 10)
    assert service["metadata"]["name"] == "web-canary"
    assert deployment["spec"]["template"]["metadata"]["labels"]["fabu.io/canary-of"] == "web"
    assert route["metadata"]["name"] == "web"  # changed in place, never copied
    first, second = route["spec"]["rules"]
    assert first["backendRefs"] == [
        {"name": "web", "port": 80, "weight": 90},
        {"name": "web-canary", "port": 80, "weight": 10},
    ]
    assert second["backendRefs"] == [
        {"name": "unrelated", "port": 80, "weight": 3},
        {"name": "web", "port": 80, "weight": 180},
        {"name": "web-canary", "port": 80, "weight": 20},
    ]
    assert traffic([service, deployment, route]) == "traffic share by HTTPRoute web"


def test_without_an_ingress_only_the_deployment_is_a_canary() -> None:
    docs = [d for d in yaml.safe_load_all(MANIFEST) if d["kind"] != "Ingress"]
    (deployment,) = canary_objects(yaml.safe_dump_all(docs), 50)
    assert deployment["kind"] == "Deployment"
    assert deployment["spec"]["replicas"] == 4
    # Unrouted: the pod share, the canary's pods behind the main Service.
    assert deployment["spec"]["template"]["metadata"]["labels"] == {
        "app": "web",
        "fabu.io/track": "canary",
    }
    assert traffic([deployment]).startswith("pod share")
