"""Hook Jobs: a release's Jobs annotated ``fabu.io/hook``, run before or after its rollout.

``pre-rollout`` Jobs (migrations) are applied first, by the deployer, and must
complete before anything else of the release is applied; ``post-rollout``
Jobs run, by the tracker, once every workload is done. Each is applied after
the Job of that name an earlier release left is deleted
(``before-hook-creation``), and is watched as a workload is: each poll its
pods' timeline, the cause a pod shows first and the hook's phase (which Job,
since when, until when) are reported, to be kept on the release while it runs.

A hook fails at once, not at the timeout, on what retrying will not fix: the
Job's own ``Failed`` condition, a pod crash-looping past the Job's
``backoffLimit``, an image that still cannot be pulled after a few polls, or
a pod no node can take (``Unschedulable``). A hook that fails, or does not
complete within the release's rollout timeout, fails the release with its
pods' diagnosis, gathered before its Job is deleted (``hook-failed``, the
default, so a crash-looping Job does not go on running). A Job annotated
``fabu.io/hook-delete-policy`` with ``hook-succeeded`` is deleted once it
completed. A cancel stops the wait and leaves the Job as it is.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from shared.cluster.causes import PULL, pod_cause
from shared.cluster.client import Cluster, ClusterError
from shared.cluster.diagnosis import diagnose
from shared.cluster.manifest import (
    BEFORE_HOOK_CREATION,
    HOOK_ANNOTATION,
    HOOK_DELETE_POLICY_ANNOTATION,
    HOOK_FAILED,
    HOOK_SUCCEEDED,
    POST_ROLLOUT,
    PRE_ROLLOUT,
    Obj,
    delete_policy,
    hook_of,
    hooks,
)
from shared.cluster.objects import condition
from shared.cluster.timelines import PodTimelines
from shared.models.base import now
from shared.models.release_parts import Diagnosis, HookRun, PodTimeline, TranscriptLine

__all__ = [
    "HOOK_ANNOTATION",
    "POST_ROLLOUT",
    "PRE_ROLLOUT",
    "STOPPED",
    "HookFailed",
    "Verdict",
    "consequence",
    "hooks",
    "run",
]
POLL_S = 0.5
# Written when a cancel stops the wait.
STOPPED = "stopped waiting on the hooks: the release was cancelled"
# How long a Job of an earlier release may take to go away before it is replaced.
GONE_WITHIN_S = 60.0
# Kubernetes' default ``backoffLimit`` of a Job.
DEFAULT_BACKOFF_LIMIT = 6
# Polls in a row a pod's image must fail to be pulled before the hook fails:
# a registry that answers late gets a few seconds.
PULL_POLLS = 6
# A transcript line stating why a hook's pod cannot finish (the tracker's prefix).
CAUSE = "cause: "

# Called at each change of a hook: its phase, its pods (None: unchanged) and new lines.
Report = Callable[[HookRun, list[PodTimeline] | None, list[TranscriptLine]], Awaitable[None]]


@dataclass(frozen=True)
class HookFailed:
    reason: str
    diagnosis: Diagnosis | None = None
    # The failed hook's pods as last seen, and what was done with its Job afterwards.
    pods: list[PodTimeline] = field(default_factory=list)
    lines: list[TranscriptLine] = field(default_factory=list)


def consequence(when: str, auto_rollback: bool) -> str:
    """The sentence ending the reason of a release a ``when`` hook failed: what it did to
    the cluster's workloads, and so whether a rollback is needed (``auto_rollback``:
    whether Fabu would start one)."""
    if when == PRE_ROLLOUT:
        because = " (which is why no automatic rollback was started)" if auto_rollback else ""
        return (
            "Nothing else of the release was applied: the cluster's workloads were not "
            f"changed, so no rollback is needed{because}."
        )
    then = "they are rolled back automatically" if auto_rollback else "roll back to undo them"
    return f"The release's workloads had already rolled out; {then}."


def backoff_limit(job: Obj) -> int:
    """The retries the Job allows (Kubernetes' default when it says none)."""
    value = (job.get("spec") or {}).get("backoffLimit")
    return DEFAULT_BACKOFF_LIMIT if value is None else int(value)


def _restarts(pod: Obj) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return max((int(s.get("restartCount", 0)) for s in statuses), default=0)


class Verdict:
    """Whether a hook Job, poll after poll, shows a cause that retrying will not fix."""

    def __init__(self) -> None:
        # Polls in a row each pod's image could not be pulled.
        self._pulling: dict[str, int] = {}

    def fatal(self, job: Obj, pods: list[Obj]) -> str | None:
        """The cause to fail the hook with now (None: it may still complete)."""
        failed = condition(job, "Failed")
        if failed and failed.get("status") == "True":
            reason = str(failed.get("reason", ""))
            return f"{reason}: {failed['message']}" if failed.get("message") else reason
        limit = backoff_limit(job)
        pulling: dict[str, int] = {}
        found = None
        for pod in pods:
            cause = None if pod["metadata"].get("deletionTimestamp") else pod_cause(pod)
            word = (cause or "").partition(":")[0]
            name = str(pod["metadata"]["name"])
            if word in PULL:
                pulling[name] = self._pulling.get(name, 0) + 1
            if found is not None or cause is None:
                continue
            if word == "Unschedulable" or (word in PULL and pulling[name] >= PULL_POLLS):
                found = cause
            elif word == "CrashLoopBackOff" and _restarts(pod) > limit:
                found = f"{cause}, more than the Job's backoffLimit of {limit}"
        self._pulling = pulling
        return found


def _true(job: Obj | None, kind: str) -> bool:
    found = condition(job, kind) if job is not None else None
    return bool(found and found.get("status") == "True")


def _policy_text(job: Obj) -> str:
    return f"{HOOK_DELETE_POLICY_ANNOTATION}: {','.join(sorted(delete_policy(job)))}"


class _Hook:
    """One hook Job being run: its pods as seen poll after poll, and its phase."""

    def __init__(self, cluster: Cluster, namespace: str, job: Obj, timeout_s: float) -> None:
        self.cluster, self.namespace, self.job = cluster, namespace, job
        self.name = str(job["metadata"]["name"])
        self.when = hook_of(job)
        self.policy = delete_policy(job)
        started = now()
        self.run = HookRun(job=self.name, when=self.when, started_at=started, timeout_s=timeout_s)
        self.timelines = PodTimelines(started, [])
        self.verdict = Verdict()
        self.pods: dict[str, Obj] = {}
        self.stated: set[str] = set()

    @property
    def title(self) -> str:
        return f'{self.when} hook Job "{self.name}"'

    def timeline(self) -> list[PodTimeline]:
        return self.timelines.timeline()

    async def replace(self) -> None:
        """Apply the Job, deleting first one of that name an earlier release left."""
        cluster, namespace, job = self.cluster, self.namespace, self.job
        if await cluster.live(namespace, job) is not None:
            if BEFORE_HOOK_CREATION not in self.policy:
                raise ClusterError(
                    f"{self.title} of an earlier release is still there and the hook's "
                    f"{_policy_text(job)} has no {BEFORE_HOOK_CREATION}: delete that Job, "
                    "or name the hook's Job per version"
                )
            await cluster.delete(namespace, job)
            clock = asyncio.get_running_loop().time
            gone_by = clock() + GONE_WITHIN_S
            while await cluster.live(namespace, job) is not None:
                if clock() > gone_by:
                    raise ClusterError(
                        f'the Job "{self.name}" of an earlier release is still there'
                    )
                await asyncio.sleep(POLL_S)
        await cluster.apply(namespace, job)

    async def poll(self) -> tuple[Obj | None, list[Obj], bool, list[TranscriptLine]]:
        """The live Job and its pods; whether the pods' timeline changed, and the lines
        stating a cause a pod shows first."""
        live = await self.cluster.live(self.namespace, self.job)
        selector = ((live or {}).get("spec") or {}).get("selector") or {}
        labels = selector.get("matchLabels") or {"job-name": self.name}
        query = [("labelSelector", ",".join(f"{k}={v}" for k, v in sorted(labels.items())))]
        pods = await self.cluster.items(self.namespace, "pods", query=query)
        current = {str(p["metadata"]["name"]): p for p in pods}
        changed = False
        for name, gone in self.pods.items():
            if name not in current:
                changed = self.timelines.update("DELETED", gone) or changed
        lines = []
        for name, pod in current.items():
            changed = self.timelines.update("MODIFIED", pod) or changed
            cause = pod_cause(pod)
            if cause and cause.partition(":")[0] not in self.stated:
                self.stated.add(cause.partition(":")[0])
                text = f"{CAUSE}{cause} (pod {name} of the {self.title})"
                lines.append(TranscriptLine(at=now(), text=text))
        self.pods = current
        causes = [c for p in pods if (c := pod_cause(p))]
        self.run = self.run.model_copy(update={"cause": causes[0] if causes else ""})
        return live, pods, changed, lines

    def ended(self, state: str) -> HookRun:
        self.run = self.run.model_copy(update={"state": state, "finished_at": now()})
        return self.run

    async def delete(self, why: str) -> TranscriptLine:
        """Delete the Job and, in the background, its pods; the line saying so."""
        try:
            await self.cluster.delete(self.namespace, self.job)
            text = f"deleted the {self.title} {why} ({_policy_text(self.job)})"
        except ClusterError as exc:
            text = f"could not delete the {self.title}: {exc.message}"
        return TranscriptLine(at=now(), text=text)

    async def failed(self, reason: str, live: Obj | None) -> HookFailed:
        """The hook failed: its diagnosis first, then its Job deleted (``hook-failed``)
        or kept as the policy asks."""
        pods = self.timeline()
        diagnosis = await diagnose(self.cluster, self.namespace, live, reason, pods, [], kind="Job")
        if HOOK_FAILED in self.policy:
            line = await self.delete("as it failed, its diagnosis kept")
        else:
            text = (
                f"kept the failed {self.title} as its {_policy_text(self.job)} asks; "
                "its pods may go on restarting until it is deleted"
            )
            line = TranscriptLine(at=now(), text=text)
        return HookFailed(reason, diagnosis, pods, [line])


async def _silent(
    run: HookRun, pods: list[PodTimeline] | None, lines: list[TranscriptLine]
) -> None:
    return None


async def run(
    cluster: Cluster,
    namespace: str,
    jobs: list[Obj],
    timeout_s: float,
    still_wanted: Callable[[], Awaitable[bool]],
    report: Report = _silent,
) -> HookFailed | None:
    """Run ``jobs`` one after another, ``report``-ing each change; None when all
    completed (or the wait was stopped because ``still_wanted`` said no: the release
    was cancelled)."""
    clock = asyncio.get_running_loop().time
    deadline = clock() + timeout_s
    for job in jobs:
        hook = _Hook(cluster, namespace, job, round(max(deadline - clock(), 0.0), 1))
        await hook.replace()
        await report(hook.run, [], [])
        while True:
            live, pods, changed, lines = await hook.poll()
            if changed or lines:
                await report(hook.run, hook.timeline() if changed else None, lines)
            if _true(live, "Complete"):
                done = (
                    [await hook.delete("once it succeeded")]
                    if HOOK_SUCCEEDED in hook.policy
                    else []
                )
                await report(hook.ended("succeeded"), hook.timeline(), done)
                break
            cause = hook.verdict.fatal(live, pods) if live is not None else None
            if cause is not None:
                failed = await hook.failed(f"{hook.title} failed: {cause}", live)
                await report(hook.ended("failed"), failed.pods, [])
                return failed
            if clock() > deadline:
                reason = f"{hook.title} did not complete within {timeout_s:g}s"
                failed = await hook.failed(
                    f"{reason}: {hook.run.cause}" if hook.run.cause else reason, live
                )
                await report(hook.ended("failed"), failed.pods, [])
                return failed
            if not await still_wanted():
                await report(hook.ended("stopped"), None, [])
                return None
            await asyncio.sleep(POLL_S)
    return None
