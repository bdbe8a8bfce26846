"""The cause sentence, the health words and the drift rules, on raw API objects."""

from datetime import UTC, datetime
from typing import Any

from shared.cluster.causes import pod_cause, summary
from shared.cluster.live import Health, controlled, differences, workload_state
from shared.cluster.objects import KubeObject
from shared.ids import ReleaseId, TemplateId
from shared.models.catalog import BaseParams, Environment
from shared.models.release import Release
from shared.release.machine import ReleaseState

AT = datetime(2026, 12, 1, 12, 0, 20, tzinfo=UTC)


def pod(name: str, **status: Any) -> KubeObject:
    return {
        "metadata": {"name": name, "creationTimestamp": "2026-12-01T12:00:00Z"},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "registry.local/web:2.0",
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                }
            ]
        },
        "status": status,
    }


def not_ready(since: str = "2026-12-01T12:00:00Z") -> list[dict[str, object]]:
    return [{"type": "Ready", "status": "False", "lastTransitionTime": since}]


def test_a_crash_loop_is_named_after_the_first_restart() -> None:
    crashed = pod(
        "web-1",
        conditions=not_ready(),
        containerStatuses=[
            {
                "name": "app",
                "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
            }
        ],
    )
    assert pod_cause(crashed) == "CrashLoopBackOff: container app exited 1, 3 restarts"


def test_a_pull_failure_and_an_unschedulable_pod_are_named_with_their_message() -> None:
    pulling = pod(
        "web-1",
        containerStatuses=[
            {
                "name": "app",
                "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "tag not found"}},
            }
        ],
    )
    assert pod_cause(pulling) == "ImagePullBackOff: tag not found"
    pending = pod(
        "web-2",
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient cpu.",
            }
        ],
    )
    assert pod_cause(pending) == "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."


def test_pods_that_only_wait_are_counted_with_the_probe_they_wait_on() -> None:
    running = {"name": "app", "ready": False, "restartCount": 0, "state": {"running": {}}}
    waiting = pod("web-1", conditions=not_ready(), containerStatuses=[running])
    ready = pod("web-2", conditions=[{"type": "Ready", "status": "True"}])
    assert summary([waiting, ready], 2, AT) == (
        "1 of 2 new pods not Ready for 20 s (readiness probe: HTTP GET /healthz on port 8080)"
    )
    assert summary([ready], 1, AT) == ""


def deployment(**status: Any) -> KubeObject:
    return {
        "metadata": {"name": "web", "generation": 2, "annotations": {}},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 2, **status},
    }


def test_health_words_follow_kubectls_rollout_rules() -> None:
    done = deployment(replicas=2, updatedReplicas=2, readyReplicas=2, availableReplicas=2)
    assert workload_state("Deployment", done, [], []).health is Health.HEALTHY
    rolling = deployment(replicas=3, updatedReplicas=1, readyReplicas=2, availableReplicas=2)
    assert workload_state("Deployment", rolling, [], []).health is Health.PROGRESSING
    # Given up on by its release: no longer progressing, as far as anyone waits.
    assert workload_state("Deployment", rolling, [], [], gave_up=True).health is Health.DEGRADED
    stuck = deployment(
        conditions=[
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        ]
    )
    assert workload_state("Deployment", stuck, [], []).health is Health.DEGRADED
    paused = deployment()
    paused["spec"] = {"replicas": 2, "paused": True}
    assert workload_state("Deployment", paused, [], []).health is Health.SUSPENDED


def test_only_what_differs_is_drift_and_containers_are_named() -> None:
    live = {
        "spec": {
            "replicas": 3,
            "template": {"spec": {"containers": [{"name": "app", "image": "a:2"}]}},
        }
    }
    would = {
        "spec": {
            "replicas": 1,
            "template": {"spec": {"containers": [{"name": "app", "image": "a:1"}]}},
        }
    }
    assert differences(live, would) == [
        ("spec.replicas", 3, 1),
        ("spec.template.spec.containers[app].image", "a:2", "a:1"),
    ]
    assert differences(live, live) == []


def test_fields_a_controller_manages_are_its_own() -> None:
    live: KubeObject = {
        "metadata": {
            "managedFields": [
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "subresource": "scale",
                    "fieldsV1": {"f:spec": {"f:replicas": {}}},
                },
                {
                    "manager": "kubectl-set",
                    "operation": "Update",
                    "fieldsV1": {
                        "f:spec": {
                            "f:template": {
                                "f:spec": {"f:containers": {'k:{"name":"app"}': {"f:image": {}}}}
                            }
                        }
                    },
                },
            ]
        }
    }
    assert controlled(live) == {"spec.replicas"}


def test_fabu_rolls_back_once_where_it_is_asked_to() -> None:
    env = Environment(name="prod", namespace="prod", in_cluster=True, auto_rollback=True)
    failed = Release(
        id=ReleaseId("a" * 24),
        service="web",
        environment="prod",
        version="2.0",
        image="r/web:2.0",
        template_id=TemplateId("t"),
        config_version=1,
        params=BaseParams(),
        namespace="prod",
        state=ReleaseState.FAILED,
        started_at=AT,
    )
    assert failed.rolls_back_in(env)
    # Not a failed automatic rollback, not one that never reached the cluster, and
    # not where the release config says no.
    assert not failed.model_copy(update={"rollback_of": ReleaseId("b" * 24)}).rolls_back_in(env)
    assert not failed.model_copy(update={"started_at": None}).rolls_back_in(env)
    refused = failed.model_copy(update={"params": BaseParams(auto_rollback=False)})
    assert not refused.rolls_back_in(env)
    asked = failed.model_copy(update={"params": BaseParams(auto_rollback=True)})
    assert asked.rolls_back_in(env.model_copy(update={"auto_rollback": False}))


def test_new_pods_not_created_yet_are_told_apart() -> None:
    running = {"name": "app", "ready": False, "restartCount": 0, "state": {"running": {}}}
    waiting = pod("web-1", conditions=not_ready(), containerStatuses=[running])
    assert summary([waiting], 2, AT) == (
        "1 of 2 new pods not Ready for 20 s (readiness probe: HTTP GET /healthz on port 8080); "
        "1 not created yet"
    )
