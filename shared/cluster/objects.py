"""Kubernetes objects as they cross Fabu's modules: typed at the fields Fabu reads.

``spec`` and ``status`` differ by kind and stay open mappings; everything Fabu
passes between the cluster client, the manifest, the tracker and the API is
one of these, never an untyped ``dict``.
"""

from typing import Any, TypedDict


class OwnerReference(TypedDict, total=False):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool


class Metadata(TypedDict, total=False):
    name: str
    namespace: str
    labels: dict[str, str]
    annotations: dict[str, str]
    generation: int
    resourceVersion: str
    uid: str
    creationTimestamp: str
    deletionTimestamp: str
    ownerReferences: list[OwnerReference]
    managedFields: list[Any]


class KubeObject(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: Metadata
    spec: dict[str, Any]
    status: dict[str, Any]


# A part of an object's status (a condition, a container state).
Json = dict[str, Any]
# The annotation a Deployment and its ReplicaSets carry their revision in.
REVISION = "deployment.kubernetes.io/revision"


def condition(obj: KubeObject, kind: str) -> Json | None:
    """The object's status condition of type ``kind``."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def owner(obj: KubeObject, kind: str) -> str:
    """The name of the object's owner of ``kind`` ("" for none)."""
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == kind:
            return str(ref.get("name", ""))
    return ""
