"""What the deployer applies, in which order: dependencies first, the Deployment last."""

from typing import Any

import yaml

FIRST = ("Namespace", "ServiceAccount", "ConfigMap", "Secret", "PersistentVolumeClaim", "Service")


def objects(manifest: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.load_all(manifest, Loader=yaml.CSafeLoader) if isinstance(d, dict)]

    def rank(obj: dict[str, Any]) -> int:
        kind = obj.get("kind", "")
        if kind in FIRST:
            return FIRST.index(kind)
        return len(FIRST) + (1 if kind == "Deployment" else 0)

    return sorted(docs, key=rank)


def revision(deployment: dict[str, Any]) -> str:
    annotations = deployment.get("metadata", {}).get("annotations") or {}
    return str(annotations.get("deployment.kubernetes.io/revision", ""))
