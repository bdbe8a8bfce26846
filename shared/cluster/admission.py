"""What an environment lets a release hold, checked before anything is shown or applied.

- Only objects of the environment's namespace: which kinds the cluster keeps in
  namespaces is asked of its API server (discovery), so a kind of a CRD or a
  newer Kubernetes is judged as the cluster judges it.
- Pods within the environment's Pod Security Standards level, RBAC objects only
  where the environment allows them, never a binding to a ClusterRole
  (``shared.cluster.pod_security``).

Config saves, previews and the deployer (before its first object) all ask here.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from shared.cluster.client import Cluster, Unserved
from shared.cluster.pod_security import Level, violations
from shared.errors import PermanentError
from shared.models.catalog import Environment


class Refused(PermanentError):
    """The manifest breaks the environment's policy: the message says each way."""

    status = 422


def policy_problems(env: Environment, objects: list[dict[str, Any]]) -> list[str]:
    """Every way the objects break the environment's Pod Security level and RBAC rules."""
    return violations(objects, Level(env.pod_security), allow_rbac=env.allow_rbac)


async def scope_problems(cluster: Cluster, objects: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each object the cluster keeps outside namespaces, or of a kind it does not serve
    (ClusterError/TransientError when it cannot be asked)."""
    found = []
    for obj in objects:
        api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
        name = str((obj.get("metadata") or {}).get("name", ""))
        try:
            namespaced = await cluster.is_namespaced(api_version, kind)
        except Unserved as exc:
            found.append(f"{kind} {name!r}: {exc.message}")
            continue
        if not namespaced:
            found.append(
                f"{kind} {name!r} is cluster-scoped: a release holds only objects of its "
                "environment's namespace"
            )
    return found


async def admit(cluster: Cluster, env: Environment, objects: Sequence[Mapping[str, Any]]) -> None:
    """Refused naming every problem, unless the environment lets a release hold the objects."""
    found = policy_problems(env, [dict(o) for o in objects])
    found += await scope_problems(cluster, objects)
    if found:
        raise Refused("; ".join(found))
