"""What a release did to pods and ReplicaSets, read from raw API objects."""

from shared.cluster.objects import REVISION, KubeObject, owner
from shared.models.release_parts import ReplicaSetCount

Obj = KubeObject


def replica_set_counts(replica_sets: list[Obj], deployment: Obj | None) -> list[ReplicaSetCount]:
    """The Deployment's ReplicaSets: the new one (its revision) first, then the older ones."""
    if deployment is None:
        return []
    name = deployment["metadata"]["name"]
    current = (deployment["metadata"].get("annotations") or {}).get(REVISION, "")
    counts = []
    for rs in replica_sets:
        if owner(rs, "Deployment") != name:
            continue
        revision = (rs["metadata"].get("annotations") or {}).get(REVISION, "")
        status = rs.get("status") or {}
        counts.append(
            ReplicaSetCount(
                name=rs["metadata"]["name"],
                revision=revision,
                new=revision == current,
                desired=int((rs.get("spec") or {}).get("replicas", 0)),
                replicas=int(status.get("replicas", 0)),
                ready=int(status.get("readyReplicas", 0)),
                available=int(status.get("availableReplicas", 0)),
            )
        )
    return sorted(counts, key=lambda c: (not c.new, -int(c.revision or 0)))
