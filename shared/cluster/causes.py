"""What is wrong with a workload's pods, in one sentence.

The release page states it while the rollout runs, the diagnosis and the
notifications lead with it, and a service's live state names it:

- ``CrashLoopBackOff: container app exited 1, 3 restarts``
- ``ImagePullBackOff: failed to pull and unpack image "…": not found``
- ``Unschedulable: 0/3 nodes are available: 3 Insufficient cpu.``
- ``1 of 2 new pods not Ready for 20 s (readiness probe: HTTP GET /healthz on port 8080)``

The first three are known as soon as a pod shows them; the last only says
how long the pods have waited.
"""

from datetime import datetime

from shared.cluster.objects import Json, KubeObject, condition

Obj = KubeObject
PULL = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName")
# Waiting reasons that do not pass by themselves.
STUCK = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")
MESSAGE_CHARS = 200


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None


def _restarts(n: int) -> str:
    return f"{n} restart" if n == 1 else f"{n} restarts"


def ready(pod: Obj) -> bool:
    cond = condition(pod, "Ready")
    return bool(cond and cond.get("status") == "True")


def ready_condition(pod: Obj) -> str:
    """The pod's Ready condition as ``kubectl describe`` would read it."""
    cond = condition(pod, "Ready")
    if not cond:
        return "Ready unknown: the kubelet has not reported it"
    text = f"Ready={cond.get('status')}"
    if cond.get("reason"):
        text += f" {cond['reason']}"
    if cond.get("message"):
        text += f": {cond['message']}"
    return text


def pod_cause(pod: Obj) -> str | None:
    """Why the pod cannot become Ready, once its state shows it (None: nothing yet)."""
    scheduled = condition(pod, "PodScheduled")
    if scheduled and scheduled.get("status") == "False":
        reason = scheduled.get("reason") or "Unschedulable"
        return f"{reason}: {str(scheduled.get('message', ''))[:MESSAGE_CHARS]}".rstrip(": ")
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        name = status.get("name", "")
        waiting: Json = (status.get("state") or {}).get("waiting") or {}
        reason = str(waiting.get("reason") or "")
        message = str(waiting.get("message") or "")[:MESSAGE_CHARS]
        if reason in PULL:
            return f"{reason}: {message}" if message else reason
        last: Json = (status.get("lastState") or {}).get("terminated") or {}
        restarts = int(status.get("restartCount", 0))
        if restarts and last and last.get("exitCode", 0) != 0:
            return (
                f"CrashLoopBackOff: container {name} exited {last.get('exitCode')}, "
                f"{_restarts(restarts)}"
            )
        if reason in STUCK:
            return f"{reason}: container {name}: {message}" if message else reason
    return None


def readiness_probe(pod: Obj) -> str:
    """The readiness probe of the pod's first unready container, in words."""
    statuses = {s.get("name"): s for s in (pod.get("status") or {}).get("containerStatuses") or []}
    containers = (pod.get("spec") or {}).get("containers") or []
    unready = [c for c in containers if not (statuses.get(c.get("name")) or {}).get("ready")]
    container: Json = (unready or containers or [{}])[0]
    probe: Json = container.get("readinessProbe") or {}
    if "httpGet" in probe:
        get = probe["httpGet"]
        return f"readiness probe: HTTP GET {get.get('path', '/')} on port {get.get('port')}"
    if "tcpSocket" in probe:
        return f"readiness probe: TCP port {probe['tcpSocket'].get('port')}"
    if "grpc" in probe:
        return f"readiness probe: gRPC port {probe['grpc'].get('port')}"
    if "exec" in probe:
        return f"readiness probe: exec {' '.join(probe['exec'].get('command') or [])}"
    return "no readiness probe: the container has not started"


def summary(pods: list[Obj], wanted: int, at: datetime, what: str = "new pods") -> str:
    """The sentence for a workload's current pods that are not Ready (``pods``: those
    current pods, ``wanted`` how many it should have): the first pod's cause, else how
    many are not Ready, for how long, and the probe they wait on. "" when all are."""
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    unready = sorted(
        (p for p in live if not ready(p)), key=lambda p: str(p["metadata"].get("name"))
    )
    for pod in unready:
        cause = pod_cause(pod)
        if cause:
            return cause
    missing = max(wanted - len(live), 0)
    if not unready:
        return f"{missing} of {wanted} {what} not created yet" if missing else ""
    since = [
        _time((condition(p, "Ready") or {}).get("lastTransitionTime"))
        or _time(p["metadata"].get("creationTimestamp"))
        for p in unready
    ]
    oldest = min((s for s in since if s is not None), default=at)
    seconds = max(int((at - oldest).total_seconds()), 0)
    total = max(wanted, len(live))
    sentence = (
        f"{len(unready)} of {total} {what} not Ready for {seconds} s "
        f"({readiness_probe(unready[0])})"
    )
    return f"{sentence}; {missing} not created yet" if missing else sentence
