"""Pod by pod, what a release's workloads or hook Jobs did to their pods, read from
raw API objects: when each was created, scheduled, became Ready and was terminated,
and what keeps it from Ready (``shared.cluster.causes``)."""

from datetime import datetime

from shared.cluster.causes import pod_cause, ready
from shared.cluster.objects import KubeObject, condition, owner
from shared.models.base import now
from shared.models.release_parts import PodTimeline

Obj = KubeObject


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None


def _true_since(obj: Obj, kind: str) -> datetime | None:
    cond = condition(obj, kind)
    return _time(cond.get("lastTransitionTime")) if cond and cond.get("status") == "True" else None


def container_reasons(pod: Obj) -> list[str]:
    """The waiting and terminated reasons of a pod's containers (``CrashLoopBackOff``)."""
    reasons = []
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        for key in ("state", "lastState"):
            for phase in ("waiting", "terminated"):
                reason = ((status.get(key) or {}).get(phase) or {}).get("reason")
                if reason:
                    reasons.append(str(reason))
    return reasons


class PodTimelines:
    """Pod by pod: when it was created, scheduled, became Ready and was terminated."""

    def __init__(self, started_at: datetime | None, known: list[PodTimeline]) -> None:
        self._started_at = started_at
        self._pods = {pod.name: pod for pod in known}

    def update(self, kind: str, pod: Obj) -> bool:
        """Take in a pod event; True when the timeline changed."""
        metadata = pod["metadata"]
        old = self._pods.get(metadata["name"])
        created = _time(metadata.get("creationTimestamp"))
        terminated = _time(metadata.get("deletionTimestamp"))
        if kind == "DELETED" and terminated is None:
            terminated = old.terminated_at if old and old.terminated_at else now()
        reasons = list(old.reasons) if old else []
        reasons += [r for r in container_reasons(pod) if r not in reasons]
        new = PodTimeline(
            name=metadata["name"],
            replica_set=owner(pod, "ReplicaSet"),
            # Until the ReplicaSets are read at the end: created since the apply.
            new=old.new
            if old
            else bool(
                created and self._started_at and created >= self._started_at.replace(microsecond=0)
            ),
            node=(pod.get("spec") or {}).get("nodeName") or "",
            created_at=created,
            scheduled_at=_true_since(pod, "PodScheduled"),
            ready_at=_true_since(pod, "Ready") or (old.ready_at if old else None),
            terminated_at=terminated or (old.terminated_at if old else None),
            reasons=reasons,
            ready=ready(pod) and terminated is None,
            restarts=sum(
                int(s.get("restartCount", 0))
                for s in (pod.get("status") or {}).get("containerStatuses") or []
            ),
            cause=pod_cause(pod) or "",
        )
        if new == old:
            return False
        self._pods[new.name] = new
        return True

    def get(self, name: str) -> PodTimeline | None:
        return self._pods.get(name)

    def timeline(self, new_replica_sets: set[str] | None = None) -> list[PodTimeline]:
        """The pods, oldest first; given the Deployments' new ReplicaSets, a Deployment's
        pod is new when its ReplicaSet is (another workload's pod: created since the apply)."""
        pods = sorted(self._pods.values(), key=lambda p: (p.created_at or now(), p.name))
        if new_replica_sets is None:
            return pods
        return [
            p.model_copy(update={"new": p.replica_set in new_replica_sets}) if p.replica_set else p
            for p in pods
        ]
