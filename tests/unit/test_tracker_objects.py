"""The tracker's reading of raw objects: ownership, ReplicaSet counts, pod timelines."""

from datetime import UTC, datetime
from typing import Any

from services.tracker.pods import replica_set_counts
from shared.cluster.objects import KubeObject
from shared.cluster.timelines import PodTimelines
from shared.cluster.watches import workload_of


def pod(name: str, rs: str, template_hash: str, **status: Any) -> KubeObject:
    return {
        "metadata": {
            "name": name,
            "labels": {"pod-template-hash": template_hash},
            "ownerReferences": [{"kind": "ReplicaSet", "name": rs}],
            "creationTimestamp": "2026-05-01T12:00:00Z",
        },
        "spec": {"nodeName": "node-1"},
        "status": status,
    }


def replica_set(name: str, revision: str, desired: int, ready: int) -> KubeObject:
    return {
        "metadata": {
            "name": name,
            "annotations": {"deployment.kubernetes.io/revision": revision},
            "ownerReferences": [{"kind": "Deployment", "name": "web-api"}],
        },
        "spec": {"replicas": desired},
        "status": {"replicas": desired, "readyReplicas": ready, "availableReplicas": ready},
    }


def test_objects_are_grouped_by_their_deployment() -> None:
    assert workload_of("deployments", {"metadata": {"name": "web"}}) == "Deployment/web"
    assert (
        workload_of("replicasets", replica_set("web-api-7d9f", "1", 1, 1)) == "Deployment/web-api"
    )
    # A hyphenated Deployment name survives: only the template hash is cut.
    assert (
        workload_of("pods", pod("web-api-7d9f-x1", "web-api-7d9f", "7d9f")) == "Deployment/web-api"
    )
    # A pod whose ReplicaSet is not <deployment>-<hash> (no Deployment) is nobody's.
    assert workload_of("pods", pod("job-x1", "batch", "7d9f")) is None
    assert workload_of("statefulsets", {"metadata": {"name": "db"}}) == "StatefulSet/db"
    db_pod: KubeObject = {
        "metadata": {"name": "db-0", "ownerReferences": [{"kind": "StatefulSet", "name": "db"}]}
    }
    assert workload_of("pods", db_pod) == "StatefulSet/db"
    agent_pod: KubeObject = {
        "metadata": {"name": "agent-x", "ownerReferences": [{"kind": "DaemonSet", "name": "agent"}]}
    }
    assert workload_of("pods", agent_pod) == "DaemonSet/agent"


def test_replica_set_counts_put_the_current_revision_first() -> None:
    deployment: KubeObject = {
        "metadata": {"name": "web-api", "annotations": {"deployment.kubernetes.io/revision": "3"}}
    }
    other = replica_set("other-1", "9", 1, 1)
    other["metadata"]["ownerReferences"][0]["name"] = "other"
    rss = [replica_set("web-api-a", "2", 2, 2), replica_set("web-api-b", "3", 1, 0), other]

    counts = replica_set_counts(rss, deployment)

    assert [(c.name, c.new, c.desired, c.ready) for c in counts] == [
        ("web-api-b", True, 1, 0),
        ("web-api-a", False, 2, 2),
    ]


def test_a_pod_timeline_keeps_each_moment_and_the_reasons_seen() -> None:
    timelines = PodTimelines(datetime(2026, 5, 1, 11, 59, tzinfo=UTC), [])
    scheduled = {
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-05-01T12:00:01Z"}
        ]
    }
    crashed = {
        **scheduled,
        "containerStatuses": [
            {
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"reason": "Error"}},
            }
        ],
    }
    p = pod("web-api-b-1", "web-api-b", "b", **scheduled)

    assert timelines.update("ADDED", p)
    assert not timelines.update("MODIFIED", p)
    assert timelines.update("MODIFIED", pod("web-api-b-1", "web-api-b", "b", **crashed))
    # Running again: the reasons seen are kept, so nothing changed.
    assert not timelines.update("MODIFIED", pod("web-api-b-1", "web-api-b", "b", **scheduled))
    assert timelines.update("DELETED", p)

    [entry] = timelines.timeline({"web-api-b"})
    assert entry.new
    assert entry.node == "node-1"
    assert entry.scheduled_at == datetime(2026, 5, 1, 12, 0, 1, tzinfo=UTC)
    assert entry.ready_at is None
    assert entry.terminated_at is not None
    assert entry.reasons == ["CrashLoopBackOff", "Error"]
