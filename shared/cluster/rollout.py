"""kubectl's rollout decisions for Deployments, DaemonSets and StatefulSets, word for word.

Mirrors the ``DeploymentStatusViewer``, ``DaemonSetStatusViewer`` and
``StatefulSetStatusViewer`` in kubectl's ``pkg/polymorphichelpers/rollout_status.go``:
the same order of checks and the same messages, so a transcript reads like
``kubectl rollout status``.
"""

from dataclasses import dataclass

from shared.cluster.objects import KubeObject

PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
ROLLING_UPDATE = "RollingUpdate"
# kubectl's refusal of a DaemonSet or StatefulSet whose strategy is OnDelete.
ONLY_ROLLING_UPDATE = "rollout status is only available for RollingUpdate strategy type"


@dataclass(frozen=True)
class Status:
    message: str
    done: bool = False
    failed: bool = False


def _observed(obj: KubeObject, applied_generation: int) -> bool:
    """Whether the controller has seen the object's spec, our apply's included."""
    generation = obj["metadata"].get("generation", 0)
    observed = (obj.get("status") or {}).get("observedGeneration", 0)
    return bool(applied_generation <= generation <= observed)


def _waiting(what: str, name: str, detail: str) -> Status:
    return Status(f'Waiting for {what} "{name}" rollout to finish: {detail}')


def rollout_status(deployment: KubeObject, applied_generation: int = 0) -> Status:
    """The rollout status of a Deployment as a raw API object.

    ``applied_generation`` is the generation our apply produced; an object older
    than it has not seen our change yet.
    """
    name = deployment["metadata"]["name"]
    status = deployment.get("status") or {}
    if not _observed(deployment, applied_generation):
        return Status("Waiting for deployment spec update to be observed...")
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "Progressing"
            and condition.get("reason") == PROGRESS_DEADLINE_EXCEEDED
        ):
            return Status(f'deployment "{name}" exceeded its progress deadline', failed=True)
    wanted = (deployment.get("spec") or {}).get("replicas")
    updated = status.get("updatedReplicas", 0)
    replicas = status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if wanted is not None and updated < wanted:
        return _waiting(
            "deployment", name, f"{updated} out of {wanted} new replicas have been updated..."
        )
    if replicas > updated:
        return _waiting(
            "deployment", name, f"{replicas - updated} old replicas are pending termination..."
        )
    if available < updated:
        return _waiting(
            "deployment", name, f"{available} of {updated} updated replicas are available..."
        )
    return Status(f'deployment "{name}" successfully rolled out', done=True)


def daemon_set_status(daemon: KubeObject, applied_generation: int = 0) -> Status:
    """kubectl's ``DaemonSetStatusViewer.Status``, word for word."""
    name = daemon["metadata"]["name"]
    spec, status = daemon.get("spec") or {}, daemon.get("status") or {}
    if (spec.get("updateStrategy") or {}).get("type", ROLLING_UPDATE) != ROLLING_UPDATE:
        return Status(ONLY_ROLLING_UPDATE, failed=True)
    if not _observed(daemon, applied_generation):
        return Status("Waiting for daemon set spec update to be observed...")
    desired = status.get("desiredNumberScheduled", 0)
    updated = status.get("updatedNumberScheduled", 0)
    available = status.get("numberAvailable", 0)
    if updated < desired:
        return _waiting(
            "daemon set", name, f"{updated} out of {desired} new pods have been updated..."
        )
    if available < desired:
        return _waiting(
            "daemon set", name, f"{available} of {desired} updated pods are available..."
        )
    return Status(f'daemon set "{name}" successfully rolled out', done=True)


def stateful_set_status(sts: KubeObject, applied_generation: int = 0) -> Status:
    """kubectl's ``StatefulSetStatusViewer.Status``, word for word (its lines do not name
    the StatefulSet; the tracker says which one each is about)."""
    spec, status = sts.get("spec") or {}, sts.get("status") or {}
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", ROLLING_UPDATE) != ROLLING_UPDATE:
        return Status(ONLY_ROLLING_UPDATE, failed=True)
    generation = sts["metadata"].get("generation", 0)
    observed = status.get("observedGeneration", 0)
    if observed == 0 or generation > observed or generation < applied_generation:
        return Status("Waiting for statefulset spec update to be observed...")
    replicas = spec.get("replicas")
    ready = status.get("readyReplicas", 0)
    if replicas is not None and ready < replicas:
        return Status(f"Waiting for {replicas - ready} pods to be ready...")
    updated = status.get("updatedReplicas", 0)
    rolling = strategy.get("rollingUpdate")
    if rolling is not None:
        partition = rolling.get("partition")
        if replicas is not None and partition is not None and updated < replicas - partition:
            return Status(
                "Waiting for partitioned roll out to finish: "
                f"{updated} out of {replicas - partition} new pods have been updated..."
            )
        return Status(
            f"partitioned roll out complete: {updated} new pods have been updated...", done=True
        )
    update_revision = status.get("updateRevision", "")
    current_revision = status.get("currentRevision", "")
    if update_revision != current_revision:
        return Status(
            f"waiting for statefulset rolling update to complete {updated} pods "
            f"at revision {update_revision}..."
        )
    current = status.get("currentReplicas", 0)
    return Status(
        f"statefulset rolling update complete {current} pods at revision {current_revision}...",
        done=True,
    )


# The kinds the tracker follows, each with kubectl's viewer for it.
VIEWERS = {
    "Deployment": rollout_status,
    "DaemonSet": daemon_set_status,
    "StatefulSet": stateful_set_status,
}
