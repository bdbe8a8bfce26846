"""Hook Jobs: a release's Jobs annotated ``fabu.io/hook``, run before or after its rollout.

``pre-rollout`` Jobs (migrations) are applied first, by the deployer, and must
complete before anything else of the release is applied; ``post-rollout``
Jobs run, by the tracker, once every workload is done. A Job of the same name
left by an earlier release is deleted first, so each release runs its own
(a name may also carry the version). A hook that fails, or does not complete
within the release's rollout timeout, fails the release with its pods'
diagnosis; a cancel stops the wait.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shared.cluster import Cluster, ClusterError
from shared.diagnosis import diagnose
from shared.manifest import HOOK_ANNOTATION, POST_ROLLOUT, PRE_ROLLOUT, Obj, hooks
from shared.models import Diagnosis
from shared.objects import condition

__all__ = [
    "HOOK_ANNOTATION",
    "POST_ROLLOUT",
    "PRE_ROLLOUT",
    "STOPPED",
    "HookFailed",
    "hooks",
    "run",
]
POLL_S = 0.5
# Written when a cancel stops the wait.
STOPPED = "stopped waiting on the hooks: the release was cancelled"
# How long a Job of an earlier release may take to go away before it is replaced.
GONE_WITHIN_S = 60.0


@dataclass(frozen=True)
class HookFailed:
    reason: str
    diagnosis: Diagnosis | None = None


async def run(
    cluster: Cluster,
    namespace: str,
    jobs: list[Obj],
    timeout_s: float,
    still_wanted: Callable[[], Awaitable[bool]],
) -> HookFailed | None:
    """Run ``jobs`` one after another; None when all completed (or the wait was stopped
    because ``still_wanted`` said no: the release was cancelled)."""
    clock = asyncio.get_running_loop().time
    deadline = clock() + timeout_s
    for job in jobs:
        name = job["metadata"]["name"]
        when = (job["metadata"].get("annotations") or {}).get(HOOK_ANNOTATION, "")
        await _replace(cluster, namespace, job)
        while True:
            live = await cluster.live(namespace, job)
            if live is not None and _true(live, "Complete"):
                break
            if live is not None and _true(live, "Failed"):
                failed = condition(live, "Failed") or {}
                reason = f'{when} hook Job "{name}" failed: {failed.get("reason", "")}'
                if failed.get("message"):
                    reason += f": {failed['message']}"
                return HookFailed(reason, await _diagnosis(cluster, namespace, live, reason))
            if clock() > deadline:
                reason = f'{when} hook Job "{name}" did not complete within {timeout_s:g}s'
                return HookFailed(reason, await _diagnosis(cluster, namespace, live, reason))
            if not await still_wanted():
                return None
            await asyncio.sleep(POLL_S)
    return None


def _true(job: Obj, kind: str) -> bool:
    found = condition(job, kind)
    return bool(found and found.get("status") == "True")


async def _replace(cluster: Cluster, namespace: str, job: Obj) -> None:
    """Apply the Job, deleting first one of that name an earlier release left."""
    if await cluster.live(namespace, job) is not None:
        await cluster.delete(namespace, job)
        clock = asyncio.get_running_loop().time
        gone_by = clock() + GONE_WITHIN_S
        while await cluster.live(namespace, job) is not None:
            if clock() > gone_by:
                name = job["metadata"]["name"]
                raise ClusterError(f'the Job "{name}" of an earlier release is still there')
            await asyncio.sleep(POLL_S)
    await cluster.apply(namespace, job)


async def _diagnosis(cluster: Cluster, namespace: str, job: Obj | None, reason: str) -> Diagnosis:
    return await diagnose(cluster, namespace, job, reason, [], [], kind="Job")
