"""The diagnosis bundle of a failed rollout, gathered from the cluster when it fails.

Which pods: those of the failing workload that are not Ready and not
terminating: the ones that stop the rollout. For a Deployment, the pods of its
new ReplicaSet (its current revision); for a StatefulSet or a DaemonSet, the
pods it owns. Healthy pods, and old pods still serving, are left out, and so
are their logs. For each: container states, restart counts, the tail of the
current and previous container logs (bounded), and the reasons the tracker
saw; then the events of those pods, their ReplicaSet and the workload.
First of all, one sentence says what is wrong (``shared.cluster.causes``).
"""

import asyncio
from datetime import UTC, datetime

from shared.cluster.causes import ready, ready_condition, summary
from shared.cluster.client import Cluster
from shared.cluster.objects import REVISION, Json, KubeObject, condition, owner
from shared.errors import FabuError
from shared.models.release_parts import (
    ContainerDiagnosis,
    Diagnosis,
    KubeEvent,
    PodDiagnosis,
    PodTimeline,
)

Obj = KubeObject

MAX_PODS = 5
LOG_LINES = 50
LOG_BYTES = 8192
MAX_EVENTS = 50


def failing_condition(deployment: Obj | None, reason: str) -> str:
    """The Deployment condition that explains the failure, else the release's reason."""
    if deployment is not None:
        for kind in ("ReplicaFailure", "Progressing", "Available"):
            cond = condition(deployment, kind)
            if cond and cond.get("status") == "False":
                return f"{kind}=False {cond.get('reason', '')}: {cond.get('message', '')}".strip()
    return reason


def _state(state: Json | None) -> str:
    for phase, detail in (state or {}).items():
        if not detail:
            continue
        parts = [phase]
        if detail.get("reason"):
            parts.append(str(detail["reason"]))
        if "exitCode" in detail:
            parts.append(f"(exit code {detail['exitCode']})")
        text = " ".join(parts)
        return f"{text}: {detail['message']}" if detail.get("message") else text
    return ""


def _wanted(workload: Obj) -> int:
    spec, status = workload.get("spec") or {}, workload.get("status") or {}
    if "replicas" in spec:
        return int(spec.get("replicas") or 0)
    return int(status.get("desiredNumberScheduled", 0))  # a DaemonSet


async def diagnose(
    cluster: Cluster,
    namespace: str,
    workload: Obj | None,
    reason: str,
    timeline: list[PodTimeline],
    replica_sets: list[Obj],
    kind: str = "Deployment",
) -> Diagnosis:
    """``workload`` is the failing one (of ``kind``); ``replica_sets`` those
    the tracker saw; ``timeline`` what it saw of the pods."""
    errors: list[str] = []
    bundle = Diagnosis(condition=failing_condition(workload, reason), summary=reason)
    if workload is None:
        bundle.errors.append(f"the {kind} was never seen, so neither were its pods")
        return bundle
    name = workload["metadata"]["name"]
    if kind == "Deployment":
        owners, pods = await _replica_set_pods(cluster, namespace, workload, replica_sets, errors)
        subjects = [("Deployment", name), *(("ReplicaSet", rs) for rs in sorted(owners))]
    else:
        owners, pods = {name}, await _owned_pods(cluster, namespace, workload, errors)
        subjects = [(kind, name)]
    owner_kind = "ReplicaSet" if kind == "Deployment" else kind
    current = [
        pod
        for pod in pods
        if owner(pod, owner_kind) in owners and not pod["metadata"].get("deletionTimestamp")
    ]
    what = "new pods" if kind == "Deployment" else "pods"
    bundle.summary = summary(current, _wanted(workload), datetime.now(UTC), what) or reason
    failing = sorted(
        (pod for pod in current if not ready(pod)),
        key=lambda pod: str(pod["metadata"]["name"]),
    )
    bundle.pods_not_shown = max(0, len(failing) - MAX_PODS)
    seen = {pod.name: pod.reasons for pod in timeline}
    bundle.pods = list(
        await asyncio.gather(
            *(
                _pod(cluster, namespace, pod, seen.get(pod["metadata"]["name"], []))
                for pod in failing[:MAX_PODS]
            )
        )
    )
    subjects += [("Pod", pod.name) for pod in bundle.pods]
    found = await asyncio.gather(
        *(_events(cluster, namespace, kind, name) for kind, name in subjects),
        return_exceptions=True,
    )
    events: list[KubeEvent] = []
    for result in found:
        if isinstance(result, FabuError):
            errors.append(f"could not read events: {result.message}")
        elif isinstance(result, BaseException):
            raise result
        else:
            events += result
    events.sort(key=lambda e: e.last_seen or datetime.min.replace(tzinfo=UTC))
    bundle.events = events[-MAX_EVENTS:]
    bundle.errors += errors
    return bundle


async def _replica_set_pods(
    cluster: Cluster, namespace: str, deployment: Obj, replica_sets: list[Obj], errors: list[str]
) -> tuple[set[str], list[Obj]]:
    """The Deployment's new ReplicaSets (its current revision) and their pods."""
    name = deployment["metadata"]["name"]
    revision = (deployment["metadata"].get("annotations") or {}).get(REVISION)
    new_rs = [
        rs
        for rs in replica_sets
        if owner(rs, "Deployment") == name
        and (rs["metadata"].get("annotations") or {}).get(REVISION) == revision
    ]
    pods: list[Obj] = []
    for rs in new_rs:
        template_hash = (rs["metadata"].get("labels") or {}).get("pod-template-hash", "")
        selector = [("labelSelector", f"pod-template-hash={template_hash}")]
        try:
            pods += await cluster.items(namespace, "pods", query=selector)
        except FabuError as exc:
            errors.append(f"could not list the pods of {rs['metadata']['name']}: {exc.message}")
    return {rs["metadata"]["name"] for rs in new_rs}, pods


async def _owned_pods(
    cluster: Cluster, namespace: str, workload: Obj, errors: list[str]
) -> list[Obj]:
    """The pods a StatefulSet or DaemonSet selects (its own are picked by owner)."""
    labels = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    try:
        return await cluster.items(namespace, "pods", query=[("labelSelector", selector)])
    except FabuError as exc:
        errors.append(f"could not list the pods of {workload['metadata']['name']}: {exc.message}")
        return []


async def _pod(cluster: Cluster, namespace: str, pod: Obj, reasons: list[str]) -> PodDiagnosis:
    name = pod["metadata"]["name"]
    statuses = {s["name"]: s for s in (pod.get("status") or {}).get("containerStatuses") or []}
    containers = []
    for spec in (pod.get("spec") or {}).get("containers") or []:
        status = statuses.get(spec["name"], {})
        restarts = int(status.get("restartCount", 0))
        crashed = restarts > 0 or bool((status.get("lastState") or {}).get("terminated"))
        current, previous = await asyncio.gather(
            _log(cluster, namespace, name, spec["name"], previous=False),
            _log(cluster, namespace, name, spec["name"], previous=True) if crashed else _empty(),
        )
        containers.append(
            ContainerDiagnosis(
                name=spec["name"],
                ready=bool(status.get("ready")),
                restart_count=restarts,
                state=_state(status.get("state")) or "not started",
                last_state=_state(status.get("lastState")),
                log=current,
                previous_log=previous,
            )
        )
    return PodDiagnosis(
        name=name,
        phase=str((pod.get("status") or {}).get("phase", "")),
        ready=ready_condition(pod),
        node=str((pod.get("spec") or {}).get("nodeName") or ""),
        containers=containers,
        reasons_seen=reasons,
    )


async def _empty() -> str:
    return ""


async def _log(
    cluster: Cluster, namespace: str, pod: str, container: str, *, previous: bool
) -> str:
    try:
        return await cluster.pod_log(
            namespace,
            pod,
            container,
            previous=previous,
            tail_lines=LOG_LINES,
            limit_bytes=LOG_BYTES,
        )
    except FabuError as exc:
        return f"(no log: {exc.message})"


async def _events(cluster: Cluster, namespace: str, kind: str, name: str) -> list[KubeEvent]:
    selector = f"involvedObject.kind={kind},involvedObject.name={name}"
    found = await cluster.items(namespace, "events", query=[("fieldSelector", selector)])
    items: list[Json] = [dict(e) for e in found]  # an Event's fields sit at its top level
    return [
        KubeEvent(
            object=f"{kind}/{name}",
            type=str(item.get("type", "")),
            reason=str(item.get("reason", "")),
            message=str(item.get("message", ""))[:1000],
            count=int(item.get("count") or 1),
            last_seen=_seen(item),
        )
        for item in items
    ]


def _seen(event: Json) -> datetime | None:
    value = event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
