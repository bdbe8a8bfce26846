"""kubectl's rollout decision for a Deployment, word for word.

Mirrors ``DeploymentStatusViewer.Status`` in kubectl's
``pkg/polymorphichelpers/rollout_status.go``: the same order of checks and the
same messages, so a transcript reads like ``kubectl rollout status``.
"""

from dataclasses import dataclass

from shared.objects import KubeObject

PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"


@dataclass(frozen=True)
class Status:
    message: str
    done: bool = False
    failed: bool = False


def rollout_status(deployment: KubeObject, applied_generation: int = 0) -> Status:
    """The rollout status of a Deployment as a raw API object.

    ``applied_generation`` is the generation our apply produced; an object older
    than it has not seen our change yet.
    """
    name = deployment["metadata"]["name"]
    generation = deployment["metadata"].get("generation", 0)
    status = deployment.get("status") or {}
    observed = status.get("observedGeneration", 0)
    if generation < applied_generation or generation > observed:
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
        return Status(
            f'Waiting for deployment "{name}" rollout to finish: '
            f"{updated} out of {wanted} new replicas have been updated..."
        )
    if replicas > updated:
        return Status(
            f'Waiting for deployment "{name}" rollout to finish: '
            f"{replicas - updated} old replicas are pending termination..."
        )
    if available < updated:
        return Status(
            f'Waiting for deployment "{name}" rollout to finish: '
            f"{available} of {updated} updated replicas are available..."
        )
    return Status(f'deployment "{name}" successfully rolled out', done=True)
