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
