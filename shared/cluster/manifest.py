"""Rendered manifests as objects: the order they are applied in, and a canary's objects.

A canary runs the new version beside the main Deployment, which it never
touches: a ``<name>-canary`` Deployment labelled ``fabu.io/track: canary``.

Without a route to the service its pods carry the main pods' labels, so the main
Service sends them their share of traffic: the *pod share*. Where an NGINX Ingress
or a Gateway API HTTPRoute routes to a Service of the manifest, the step's weight
is the *traffic share*, whatever the pod counts: the canary's pods leave out the
labels the routed Services select on (so those Services reach the main pods
only), a ``<service>-canary`` Service selects the canary's pods alone, and the
route sends it the weight: a ``<ingress>-canary`` Ingress with NGINX's canary
annotations, or the HTTPRoute itself with each routed backend split in two
(``<service>`` at 100 - weight, ``<service>-canary`` at weight).
"""

import copy
import math
from typing import Any, cast

import yaml

from shared.cluster.objects import KubeObject

Obj = KubeObject
FIRST = ("Namespace", "ServiceAccount", "ConfigMap", "Secret", "PersistentVolumeClaim", "Service")
# What a release waits for, each judged by kubectl's rules for its kind.
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
# Marks the one Deployment a canary acts on, where a manifest holds several.
CANARY_ANNOTATION = "fabu.io/canary"
# Every object a release applies carries its service and environment, so what a
# later release no longer has can be found and deleted (pruned) ...
SERVICE_LABEL = "fabu.io/service"
ENVIRONMENT_LABEL = "fabu.io/environment"
# ... unless it is annotated so.
PRUNE_ANNOTATION = "fabu.io/prune"
# A Job run before the rollout (a migration) or after it (a check).
HOOK_ANNOTATION = "fabu.io/hook"
PRE_ROLLOUT = "pre-rollout"
POST_ROLLOUT = "post-rollout"
# When a hook's Job is deleted, as in Helm and Argo CD: a comma-separated list of
# policies, ``before-hook-creation,hook-failed`` when the annotation is absent.
HOOK_DELETE_POLICY_ANNOTATION = "fabu.io/hook-delete-policy"
# An earlier Job of that name is deleted before the hook's is created.
BEFORE_HOOK_CREATION = "before-hook-creation"
# The Job is deleted once it completed / once it failed (its diagnosis kept first).
HOOK_SUCCEEDED = "hook-succeeded"
HOOK_FAILED = "hook-failed"
DELETE_POLICIES = (BEFORE_HOOK_CREATION, HOOK_SUCCEEDED, HOOK_FAILED)
DEFAULT_DELETE_POLICY = frozenset({BEFORE_HOOK_CREATION, HOOK_FAILED})


def _annotations(obj: Obj) -> dict[str, Any]:
    annotations = (obj.get("metadata") or {}).get("annotations")
    return annotations if isinstance(annotations, dict) else {}


def hook_of(obj: Obj) -> str:
    """The hook an object is ("" for none)."""
    return str(_annotations(obj).get(HOOK_ANNOTATION, ""))


def _policies(value: object) -> list[str]:
    return [p.strip() for p in str(value).split(",") if p.strip()]


def delete_policy(obj: Obj) -> frozenset[str]:
    """When the hook Job ``obj`` is deleted (``DELETE_POLICIES``; the default without
    the annotation)."""
    value = _annotations(obj).get(HOOK_DELETE_POLICY_ANNOTATION)
    return DEFAULT_DELETE_POLICY if value is None else frozenset(_policies(value))


def hook_problem(obj: Obj) -> str | None:
    """What is wrong with an object's hook annotations, naming it; None when nothing."""
    annotations = _annotations(obj)
    label = f"{obj.get('kind')} {(obj.get('metadata') or {}).get('name')!r}"
    hook = annotations.get(HOOK_ANNOTATION)
    if hook is not None and (obj.get("kind") != "Job" or hook not in (PRE_ROLLOUT, POST_ROLLOUT)):
        return f"{label}: {HOOK_ANNOTATION} is for Jobs, {PRE_ROLLOUT!r} or {POST_ROLLOUT!r}"
    value = annotations.get(HOOK_DELETE_POLICY_ANNOTATION)
    if value is None:
        return None
    if hook is None:
        return f"{label}: {HOOK_DELETE_POLICY_ANNOTATION} is for Jobs annotated {HOOK_ANNOTATION}"
    unknown = [p for p in _policies(value) if p not in DELETE_POLICIES]
    if unknown or not _policies(value):
        return (
            f"{label}: {HOOK_DELETE_POLICY_ANNOTATION} {str(value)!r}: "
            + (f"unknown policy {unknown[0]!r}; " if unknown else "")
            + f"a comma-separated list of {', '.join(DELETE_POLICIES)}"
        )
    return None


def hooks(docs: list[Obj], when: str) -> list[Obj]:
    """The manifest's hook Jobs run ``when`` (``pre-rollout``, ``post-rollout``)."""
    return [d for d in docs if hook_of(d) == when]


def rollout_objects(docs: list[Obj]) -> list[Obj]:
    """What the rollout applies: every object but the hook Jobs, in order."""
    return [d for d in docs if not hook_of(d)]


TRACK_LABEL = "fabu.io/track"
CANARY = "canary"
SUFFIX = "-canary"
NGINX = "nginx.ingress.kubernetes.io"
# The canary's pods of one Deployment, where they leave out the routed Services' labels.
CANARY_OF_LABEL = "fabu.io/canary-of"
# A blue-green release's preview: its Deployment and Services, and its pods' mark.
PREVIEW = "preview"
PREVIEW_SUFFIX = "-preview"
PREVIEW_OF_LABEL = "fabu.io/preview-of"
GATEWAY_API = "gateway.networking.k8s.io/"


def objects(manifest: str) -> list[Obj]:
    """The manifest's objects, dependencies first, the workloads after them."""
    loaded = yaml.load_all(manifest, Loader=yaml.CSafeLoader)
    docs = [cast(Obj, d) for d in loaded if isinstance(d, dict)]

    def rank(obj: Obj) -> int:
        kind = obj.get("kind", "")
        if kind in FIRST:
            return FIRST.index(kind)
        return len(FIRST) + (1 if kind in WORKLOADS else 0)

    return sorted(docs, key=rank)


def revision(deployment: Obj) -> str:
    annotations = deployment.get("metadata", {}).get("annotations") or {}
    return str(annotations.get("deployment.kubernetes.io/revision", ""))


def canary_replicas(main: int, weight: int) -> int:
    """Canary pods that make ``weight`` percent of all pods beside ``main`` untouched ones."""
    return max(1, math.ceil(main * weight / (100 - weight)))


def _renamed(obj: Obj, suffix: str = SUFFIX, track: str = CANARY) -> Obj:
    canary = copy.deepcopy(obj)
    metadata = canary["metadata"]
    metadata["name"] = metadata["name"] + suffix
    metadata["labels"] = {**(metadata.get("labels") or {}), TRACK_LABEL: track}
    metadata.pop("resourceVersion", None)
    metadata.pop("uid", None)
    metadata.pop("creationTimestamp", None)
    return canary


def _beside(
    deployment: Obj, replicas: int, left_out: set[str], marks: dict[str, str], suffix: str
) -> Obj:
    """A Deployment of the new version beside the main one: its pods without the
    ``left_out`` label keys (those Services select on), and marked with ``marks``."""
    canary = _renamed(deployment, suffix, marks[TRACK_LABEL])
    spec = canary.setdefault("spec", {})
    spec["replicas"] = replicas
    selector = spec.setdefault("selector", {})
    kept = {k: v for k, v in (selector.get("matchLabels") or {}).items() if k not in left_out}
    selector["matchLabels"] = {**kept, **marks}
    if selector.get("matchExpressions"):
        selector["matchExpressions"] = [
            e for e in selector["matchExpressions"] if e.get("key") not in left_out
        ]
    template = spec.setdefault("template", {}).setdefault("metadata", {})
    labels = {k: v for k, v in (template.get("labels") or {}).items() if k not in left_out}
    template["labels"] = {**labels, **marks}
    return canary


def _deployment(deployment: Obj, weight: int, left_out: set[str]) -> Obj:
    """The canary Deployment (routed: its pods out of the routed Services' reach)."""
    marks = {TRACK_LABEL: CANARY}
    if left_out:
        marks[CANARY_OF_LABEL] = deployment["metadata"]["name"]
    replicas = canary_replicas(int((deployment.get("spec") or {}).get("replicas", 1)), weight)
    return _beside(deployment, replicas, left_out, marks, SUFFIX)


def _service(
    service: Obj, selector: dict[str, str], suffix: str = SUFFIX, track: str = CANARY
) -> Obj:
    """A copy of a Service selecting the new version's pods alone."""
    canary = _renamed(service, suffix, track)
    spec = canary.setdefault("spec", {})
    for key in ("clusterIP", "clusterIPs", "externalIPs", "loadBalancerIP", "healthCheckNodePort"):
        spec.pop(key, None)
    spec["type"] = "ClusterIP"
    for port in spec.get("ports") or []:
        port.pop("nodePort", None)
    spec["selector"] = selector
    return canary


def _backends(ingress: Obj) -> list[dict[str, Any]]:
    """The ``service`` parts of every backend of a networking.k8s.io/v1 Ingress."""
    spec = ingress.get("spec") or {}
    backends = [spec.get("defaultBackend") or {}]
    for rule in spec.get("rules") or []:
        backends += [p.get("backend") or {} for p in (rule.get("http") or {}).get("paths") or []]
    return [b["service"] for b in backends if isinstance(b.get("service"), dict)]


def _ingress(ingress: Obj, services: set[str], weight: int) -> Obj:
    canary = _renamed(ingress)
    annotations = canary["metadata"].setdefault("annotations", {})
    annotations[f"{NGINX}/canary"] = "true"
    annotations[f"{NGINX}/canary-weight"] = str(weight)
    for backend in _backends(canary):
        if backend.get("name") in services:
            backend["name"] = backend["name"] + SUFFIX
    return canary


def is_route(obj: Obj) -> bool:
    """A Gateway API HTTPRoute (the canary changes it in place, never copies it)."""
    return obj.get("kind") == "HTTPRoute" and str(obj.get("apiVersion", "")).startswith(GATEWAY_API)


def _service_refs(rule: dict[str, Any]) -> list[dict[str, Any]]:
    """The backendRefs of an HTTPRoute rule that name a Service of the route's namespace."""
    return [
        ref
        for ref in rule.get("backendRefs") or []
        if isinstance(ref, dict)
        and ref.get("group", "") == ""
        and ref.get("kind", "Service") == "Service"
        and not ref.get("namespace")
    ]


def _route_services(route: Obj) -> set[str]:
    rules = (route.get("spec") or {}).get("rules") or []
    return {str(ref.get("name")) for rule in rules for ref in _service_refs(rule)}


def _route(route: Obj, services: set[str], weight: int) -> Obj:
    """The HTTPRoute with each backend to a routed Service split: ``weight`` of its share
    to the Service's canary, the rest to the Service."""
    split = copy.deepcopy(route)
    for rule in (split.get("spec") or {}).get("rules") or []:
        refs: list[dict[str, Any]] = []
        for ref in rule.get("backendRefs") or []:
            if ref in _service_refs(rule) and ref.get("name") in services:
                share = int(ref.get("weight", 1))
                canary = {**copy.deepcopy(ref), "name": ref["name"] + SUFFIX}
                refs += [
                    {**ref, "weight": share * (100 - weight)},
                    {**canary, "weight": share * weight},
                ]
            else:
                refs.append(ref)
        rule["backendRefs"] = refs
    return split


def canary_target(docs: list[Obj]) -> Obj | None:
    """The Deployment a canary acts on: the one annotated ``fabu.io/canary: "true"``,
    else the only one (None when that does not name one)."""
    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    marked = [
        d
        for d in deployments
        if (d.get("metadata", {}).get("annotations") or {}).get(CANARY_ANNOTATION) == "true"
    ]
    if len(marked) == 1:
        return marked[0]
    return deployments[0] if len(deployments) == 1 and not marked else None


def routed_services(docs: list[Obj]) -> list[str]:
    """The manifest's Services an Ingress or an HTTPRoute of it sends traffic to."""
    services = {
        d["metadata"]["name"]
        for d in docs
        if d.get("kind") == "Service" and d.get("apiVersion") == "v1"
    }
    named = {b.get("name") for i in _ingresses(docs) for b in _backends(i)}
    named |= {n for r in docs if is_route(r) for n in _route_services(r)}
    return sorted(services & {n for n in named if isinstance(n, str)})


def _ingresses(docs: list[Obj]) -> list[Obj]:
    return [
        d
        for d in docs
        if d.get("kind") == "Ingress" and d.get("apiVersion") == "networking.k8s.io/v1"
    ]


def canary_objects(manifest: str, weight: int) -> list[Obj]:
    """The objects of a canary step at ``weight`` percent, in the order to apply them."""
    docs = objects(manifest)
    deployment = canary_target(docs)
    if deployment is None:
        raise ValueError("the manifest names no Deployment for the canary")
    services = {
        d["metadata"]["name"]: d
        for d in docs
        if d.get("kind") == "Service" and d.get("apiVersion") == "v1"
    }
    pod_labels = ((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}
    labels = pod_labels.get("labels") or {}
    # The routed Services that reach this Deployment's pods.
    routed = [
        s
        for s in routed_services(docs)
        if (selector := (services[s].get("spec") or {}).get("selector") or {})
        and selector.items() <= labels.items()
    ]
    left_out = {
        key for name in routed for key in ((services[name].get("spec") or {}).get("selector") or {})
    }
    name = deployment["metadata"]["name"]
    return [
        *(_service(services[s], {TRACK_LABEL: CANARY, CANARY_OF_LABEL: name}) for s in routed),
        _deployment(deployment, weight, left_out),
        *(
            _ingress(i, set(routed), weight)
            for i in _ingresses(docs)
            if any(b.get("name") in routed for b in _backends(i))
        ),
        *(
            _route(r, set(routed), weight)
            for r in docs
            if is_route(r) and _route_services(r) & set(routed)
        ),
    ]


def traffic(objects_: list[Obj]) -> str:
    """What sends a canary step its share, in words, from its objects."""
    routes = [f"HTTPRoute {o['metadata']['name']}" for o in objects_ if is_route(o)]
    ingresses = [f"Ingress {o['metadata']['name']}" for o in objects_ if o.get("kind") == "Ingress"]
    if routes or ingresses:
        return "traffic share by " + ", ".join(routes + ingresses)
    return "pod share (no Ingress or HTTPRoute routes to the service)"


def _pod_labels(deployment: Obj) -> dict[str, str]:
    template = ((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}
    return dict(template.get("labels") or {})


def active_services(docs: list[Obj], deployment: Obj) -> list[Obj]:
    """The manifest's Services that reach the Deployment's pods (a blue-green switch
    moves them to the preview's)."""
    labels = _pod_labels(deployment)
    return [
        d
        for d in docs
        if d.get("kind") == "Service"
        and d.get("apiVersion") == "v1"
        and (selector := (d.get("spec") or {}).get("selector") or {})
        and selector.items() <= labels.items()
    ]


def preview_selector(deployment: Obj) -> dict[str, str]:
    return {TRACK_LABEL: PREVIEW, PREVIEW_OF_LABEL: deployment["metadata"]["name"]}


def preview_objects(manifest: str) -> list[Obj]:
    """A blue-green release's preview: a ``<service>-preview`` Service for each active
    Service and a ``<name>-preview`` Deployment at the main one's size, whose pods the
    active Services do not reach until the switch."""
    docs = objects(manifest)
    deployment = canary_target(docs)
    if deployment is None:
        raise ValueError("the manifest names no Deployment for the preview")
    active = active_services(docs, deployment)
    left_out = {k for s in active for k in (s.get("spec") or {}).get("selector") or {}}
    marks = preview_selector(deployment)
    replicas = int((deployment.get("spec") or {}).get("replicas", 1))
    return [
        *(_service(s, marks, PREVIEW_SUFFIX, PREVIEW) for s in active),
        _beside(deployment, replicas, left_out, marks, PREVIEW_SUFFIX),
    ]


def new_pods(manifest: str, blue_green: bool) -> tuple[str, dict[str, str]]:
    """The Deployment of the new version beside the main one, and its pods' labels."""
    made = preview_objects(manifest) if blue_green else canary_objects(manifest, 50)
    deployment = next(o for o in made if o["kind"] == "Deployment")
    return deployment["metadata"]["name"], _pod_labels(deployment)
