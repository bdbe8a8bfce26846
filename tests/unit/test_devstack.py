"""Pure parts of the stack manager: the staging replace list and KWOK's stages."""

from devstack import kwok
from devstack.gomod import staging_modules, staging_replaces

UPSTREAM_GO_MOD = """module k8s.io/kubernetes

require (
\tk8s.io/api v0.0.0
\tk8s.io/client-go v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tk8s.io/cri-api => ./staging/src/k8s.io/cri-api
)
"""


def test_staging_modules_are_read_from_the_upstream_go_mod() -> None:
    assert staging_modules(UPSTREAM_GO_MOD) == ["k8s.io/api", "k8s.io/client-go", "k8s.io/cri-api"]


def test_staging_replaces_pin_the_published_v0_modules() -> None:
    replaces = staging_replaces("v1.35.4", UPSTREAM_GO_MOD)
    assert "\tk8s.io/api => k8s.io/api v0.35.4\n" in replaces
    assert "\tk8s.io/cri-api => k8s.io/cri-api v0.35.4\n" in replaces
    assert replaces.startswith("replace (\n")


def test_pod_stages_delay_readiness_and_exclude_faulted_pods() -> None:
    stages = {s["metadata"]["name"]: s["spec"] for s in kwok.pod_stages(ready_delay_ms=750)}
    ready = stages["pod-ready"]
    assert ready["delay"]["durationMilliseconds"] == 750
    exclusions = [e for e in ready["selector"]["matchExpressions"] if e["operator"] == "NotIn"]
    assert any(kwok.FAULT_LABEL in e["key"] for e in exclusions)
    assert {"pod-never-ready", "pod-crash-loop-crash", "pod-pull-fail", "pod-delete"} <= set(stages)
