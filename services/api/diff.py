"""What applying a manifest would change: each object's live version against a server-side dry run.

The dry run returns the object exactly as the API server would store it
(defaults, admission, the fields other managers own), so the diff shows only
real changes. Both sides leave out status and the bookkeeping the server
writes itself (managed fields, resource version, uid, timestamps, generation).
"""

import difflib
import hashlib
from typing import Any, Literal, cast

import yaml
from pydantic import BaseModel

from shared.cluster.client import Cluster, ClusterError
from shared.cluster.live import clean
from shared.cluster.manifest import ENVIRONMENT_LABEL, SERVICE_LABEL
from shared.cluster.objects import KubeObject
from shared.errors import TransientError
from shared.models.parameters import hide
from shared.models.release_parts import Owned
from shared.release import pruning
from shared.secrets import MASK

Obj = KubeObject


class ObjectDiff(BaseModel):
    kind: str
    name: str
    action: Literal["create", "update", "unchanged"]
    # A unified diff of the YAML, live first; empty when unchanged.
    diff: str


class ManifestDiff(BaseModel):
    namespace: str
    changed: bool
    objects: list[ObjectDiff]
    # What releasing it would delete: the service's objects there it no longer has.
    prune: list[str] = []


def _yaml(obj: dict[str, Any]) -> list[str]:
    if not obj:
        return []
    # allow_unicode: the mask shows as itself, not as "\u2022" escapes.
    text = yaml.dump(obj, Dumper=yaml.CSafeDumper, sort_keys=True, allow_unicode=True)
    return text.splitlines(keepends=True)


def _unreadable(obj: dict[str, Any]) -> dict[str, Any]:
    """A Secret with each value written as the mask and a digest of it: a change shows,
    the value does not."""
    if obj.get("kind") != "Secret":
        return obj
    shown = dict(obj)
    for field in ("data", "stringData"):
        if isinstance(obj.get(field), dict):
            shown[field] = {
                k: f"{MASK} sha256:{hashlib.sha256(str(v).encode()).hexdigest()[:12]}"
                for k, v in obj[field].items()
            }
    return shown


async def manifest_diff(
    cluster: Cluster, namespace: str, manifest: str, hidden: list[str] | None = None
) -> ManifestDiff:
    """What applying ``manifest`` would change; a Secret's values and ``hidden`` (the
    release's secrets, ``parameters.hidden_forms``) never appear in the diff, nor in the
    API server's words when it refuses an object (ClusterError, TransientError)."""
    try:
        return await _diff(cluster, namespace, manifest, hidden)
    except ClusterError as exc:
        raise ClusterError(hide(exc.message, hidden or [])) from None
    except TransientError as exc:
        raise TransientError(hide(exc.message, hidden or []), exc.delay) from None


async def _diff(
    cluster: Cluster, namespace: str, manifest: str, hidden: list[str] | None
) -> ManifestDiff:
    loaded = yaml.load_all(manifest, Loader=yaml.CSafeLoader)
    objects = [cast(Obj, d) for d in loaded if isinstance(d, dict)]
    diffs = []
    for obj in objects:
        live = _unreadable(clean(await cluster.live(namespace, obj)))
        would = _unreadable(clean(await cluster.apply(namespace, obj, dry_run=True)))
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        text = hide(
            "".join(
                difflib.unified_diff(_yaml(live), _yaml(would), f"live/{name}", f"release/{name}")
            ),
            hidden or [],
        )
        action: Literal["create", "update", "unchanged"] = (
            "create" if not live else "update" if text else "unchanged"
        )
        diffs.append(
            ObjectDiff(kind=obj["kind"], name=obj["metadata"]["name"], action=action, diff=text)
        )
    prune = await _would_prune(cluster, namespace, objects)
    changed = bool(prune) or any(d.action != "unchanged" for d in diffs)
    return ManifestDiff(namespace=namespace, changed=changed, objects=diffs, prune=prune)


async def _would_prune(cluster: Cluster, namespace: str, objects: list[Obj]) -> list[str]:
    """The owner's objects there the manifest does not have (its objects name their owner)."""
    labels = (objects[0]["metadata"].get("labels") or {}) if objects else {}
    service, environment = labels.get(SERVICE_LABEL), labels.get(ENVIRONMENT_LABEL)
    if not (service and environment):
        return []  # rendered before releases carried their owner
    inventory = [
        Owned(api_version=o["apiVersion"], kind=o["kind"], name=o["metadata"]["name"])
        for o in objects
    ]
    found = await pruning.leftovers(cluster, namespace, service, environment, inventory)
    return [pruning.key(obj) for obj in found]
