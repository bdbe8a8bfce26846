"""Kubernetes' own rules for an object's apiVersion, kind, name and namespace.

A manifest is checked by these before anything of it is shown, dry-run or
applied, so that what reaches the API server is what it would accept itself;
the cluster module percent-encodes every path segment on top of this.
The rules are the API server's (``k8s.io/apimachinery/pkg/util/validation``):
most kinds take a DNS-1123 subdomain; a Namespace a DNS-1123 label; a Service
a DNS-1035 label; a CronJob a subdomain of at most 52 characters (its Jobs add
a suffix); RBAC kinds any path segment name (``system:viewer``).
"""

import re
from typing import Any

DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
KIND = re.compile(r"[A-Za-z][A-Za-z0-9]{0,62}")
# ``v1``, ``apps/v1``, ``networking.k8s.io/v1beta1``: a group (a DNS-1123 subdomain) and a version.
API_VERSION = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?v[0-9]+[a-z0-9]*"
)

LABEL_RULE = (
    "a DNS-1123 label (at most 63 lowercase letters, digits and '-', alphanumeric at both ends)"
)
SUBDOMAIN_RULE = (
    "a DNS-1123 subdomain (at most 253 lowercase letters, digits, '-' and '.', "
    "alphanumeric at both ends of each part)"
)
DNS1035_RULE = (
    "a DNS-1035 label (at most 63 lowercase letters, digits and '-', starting with a letter)"
)
SEGMENT_RULE = "a path segment name (not '.' or '..', without '/' or '%')"

RBAC_KINDS = frozenset({"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"})


def _label(name: str) -> bool:
    return len(name) <= 63 and DNS1123_LABEL.fullmatch(name) is not None


def _subdomain(name: str, most: int = 253) -> bool:
    return len(name) <= most and DNS1123_SUBDOMAIN.fullmatch(name) is not None


def _segment(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/%")


def name_problem(kind: str, name: str) -> str:
    """Why ``name`` cannot name an object of ``kind`` ("" when it can)."""
    if kind == "Namespace":
        return "" if _label(name) else f"must be {LABEL_RULE}"
    if kind == "Service":
        ok = len(name) <= 63 and DNS1035_LABEL.fullmatch(name) is not None
        return "" if ok else f"must be {DNS1035_RULE}"
    if kind == "CronJob":
        return "" if _subdomain(name, 52) else f"must be {SUBDOMAIN_RULE}, at most 52 long"
    if kind in RBAC_KINDS:
        ok = _segment(name) and len(name) <= 253 and name.isprintable() and name.isascii()
        return "" if ok else f"must be {SEGMENT_RULE}"
    return "" if _subdomain(name) else f"must be {SUBDOMAIN_RULE}"


def problems(index: int, obj: dict[str, Any]) -> list[str]:
    """What in a manifest's ``index``-th document breaks Kubernetes' naming rules, each
    naming the object and the rule: its apiVersion, kind, name and namespace."""
    found: list[str] = []
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    name = (metadata or {}).get("name")
    what = f"document {index}"
    if not isinstance(kind, str) or KIND.fullmatch(kind) is None:
        return [f"{what}: kind {kind!r} is not a Kubernetes kind (letters and digits)"]
    what = f"document {index} ({kind})"
    if not isinstance(api_version, str) or API_VERSION.fullmatch(api_version) is None:
        found.append(f"{what}: apiVersion {api_version!r} is not a group/version")
    if "generateName" in (metadata or {}):
        found.append(f"{what}: metadata.generateName is not allowed: give every object a name")
    if not isinstance(name, str) or not name:
        found.append(f"{what}: metadata.name must be a non-empty string, not {name!r}")
        return found
    what = f"{kind} {name!r}"
    if why := name_problem(kind, name):
        found.append(f"{what}: metadata.name {why}")
    namespace = (metadata or {}).get("namespace")
    if namespace not in (None, "") and not (isinstance(namespace, str) and _label(namespace)):
        found.append(f"{what}: metadata.namespace {namespace!r} must be {LABEL_RULE}")
    return found
