"""Tracker: ``release.applied`` in, ``release.completed`` or ``release.failed`` out.

Follows the Deployment and its pods through the shared namespace watches and
decides with kubectl's rollout rules, appending each new status line to the
transcript and keeping a timeline per pod. The first time a new pod shows why it
cannot become Ready (``shared.cluster.causes``: a crash loop from its first restart, an
image that cannot be pulled, no node to run it), a ``cause:`` line says so at
once, long before the timeout. The final write carries the
ReplicaSet counts and, for a failure, the diagnosis bundle. A cancelled
release (``release.cancelled``, read by every tracker) is let go, the
cluster left as it is.
The message stays unacknowledged (kept alive) while the rollout runs, so if
this process dies JetStream hands the release to another tracker, which
resumes it. Idempotency key: the release's state (``succeed``, ``fail`` or
``pause``: whichever is claimed first, a cancel included, wins).
Failure: ``ProgressDeadlineExceeded``, the Deployment deleted, or the rollout
not done within the release's timeout (its config's, else the environment's).

A canary step is tracked the same way on the canary Deployment. Healthy, the
release pauses (``release.paused``); a step with a pause is watched for that
long and then promoted. A failing step fails the release with its diagnosis
and removes the canary's objects, the main Deployment untouched; the full
rollout at the end removes them once it is done (or has failed).
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.tracker.pods import Obj, replica_set_counts
from shared import probes
from shared.cluster.client import Cluster
from shared.cluster.diagnosis import diagnose
from shared.cluster.objects import KubeObject
from shared.cluster.rollout import VIEWERS, Status, rollout_status
from shared.cluster.timelines import PodTimelines
from shared.cluster.watches import KINDS, Subscription, Update, Watches, workload_of
from shared.errors import FabuError
from shared.messaging.bus import Msg
from shared.messaging.messages import ReleaseApplied, ReleaseCancelled
from shared.models.base import now
from shared.models.parameters import hidden_in
from shared.models.release import Release
from shared.models.release_parts import (
    CanaryEvent,
    Diagnosis,
    PodTimeline,
    TranscriptLine,
    Workload,
)
from shared.release import lifecycle, pruning
from shared.release.canary import promote, remove_canary
from shared.release.hook_jobs import POST_ROLLOUT
from shared.release.lifecycle import (
    PAUSE,
    SUCCEED,
    TRACKER,
    Failed,
    Lost,
    Observed,
    Outcome,
    Succeeded,
)
from shared.release.machine import ReleaseState
from shared.worker import (
    Context,
    environment_and_cluster,
    fail_release,
    hidden_of,
    masked,
    pending_release,
    release_hooks,
)

# How long new transcript lines and pod changes wait to be written together: the live
# view lags by at most this, and hundreds of rollouts at once write a few times a
# second each no more.
FLUSH_S = 1.0
NO_WORKLOADS = "the manifest holds no workload to wait for"
# A transcript line stating why new pods cannot become Ready, before the timeout.
CAUSE = "cause: "
STOP: Update = ("stop", "", {})


async def setup(ctx: Context) -> Callable[[Msg], Awaitable[None]]:
    watches = Watches()
    # The update queue of every release this process follows, to stop it on cancel.
    following: dict[str, asyncio.Queue[Update]] = {}

    async def on_cancelled(msg: Msg) -> None:
        event = ReleaseCancelled.model_validate_json(msg.data)
        queue = following.get(event.release_id)
        if queue is not None:
            queue.put_nowait(STOP)

    cancels = await ctx.bus.nc.subscribe(ctx.bus.subjects.cancelled, cb=on_cancelled)
    ctx.owned.push_async_callback(watches.stop)
    ctx.owned.push_async_callback(cancels.unsubscribe)

    async def handle(msg: Msg) -> None:
        event = ReleaseApplied.model_validate_json(msg.data)
        # Delivered before: another tracker (or this one) began it and may have written
        # lines and pods since; a first delivery finds none yet.
        taken_over = msg.metadata.num_delivered > 1
        await track(ctx, watches, following, event, taken_over)

    return handle


def _remaining(release: Release, timeout_s: int) -> float:
    """What is left of the rollout's timeout (all of it for a pause taken over)."""
    if release.state is not ReleaseState.APPLIED:
        return float(timeout_s)
    applied = [e.at for e in release.events if e.state is ReleaseState.APPLIED]
    since = now() - (applied[-1] if applied else release.created_at)
    return timeout_s - since.total_seconds()


async def track(
    ctx: Context,
    watches: Watches,
    following: dict[str, asyncio.Queue[Update]],
    event: ReleaseApplied,
    taken_over: bool = False,
) -> None:
    # A paused one: a tracker that died holding a canary's timed pause; take it over.
    # Taken over, with its transcript and pods so far, to go on from there.
    release = await pending_release(
        ctx,
        event.release_id,
        TRACKER,
        ReleaseState.APPLIED,
        ReleaseState.PAUSED,
        with_transcript=taken_over,
    )
    if release is None or (release.state is ReleaseState.PAUSED and _pause_of(release) is None):
        return
    if event.step != (release.canary_step or 0):
        return  # a step the release has left
    found = await environment_and_cluster(ctx, release, TRACKER)
    if found is None:
        return
    env, cluster = found
    timeout_s = release.params.rollout_timeout_s or env.rollout_timeout_s
    keys = [w.key for w in _followed(release)]
    subscription = watches.subscribe(cluster, release.namespace, keys)
    following[release.id] = subscription.updates
    probes.TRACKED.inc()
    try:
        await _follow(ctx, cluster, subscription, release, timeout_s)
    finally:
        probes.TRACKED.dec()
        if following.get(release.id) is subscription.updates:
            following.pop(release.id)
        subscription.close()


def _followed(release: Release) -> list[Workload]:
    """The workloads the release waits for (an older record: its one Deployment)."""
    if release.workloads:
        return release.workloads
    if not release.deployment:
        return []
    return [
        Workload(kind="Deployment", name=release.deployment, generation=release.generation or 0)
    ]


def _line(key: str, message: str) -> str:
    """A transcript line: kubectl's, naming the StatefulSet its own lines do not name."""
    kind, _, name = key.partition("/")
    return f'statefulset "{name}": {message}' if kind == "StatefulSet" else message


def _deleted(key: str, during: str) -> str:
    kind, _, name = key.partition("/")
    what = {"Deployment": "deployment", "StatefulSet": "statefulset", "DaemonSet": "daemon set"}
    return f'{what[kind]} "{name}" was deleted during the {during}'


class Seen:
    """What the tracker has seen of a release's workloads, ReplicaSets and pods."""

    def __init__(self, release: Release) -> None:
        # The newest object of each workload, by its key (``StatefulSet/db``).
        self.workloads: dict[str, Obj] = {}
        self.replica_sets: dict[str, Obj] = {}
        self.timelines = PodTimelines(release.started_at, release.pods)
        self.pods_changed = False
        # The causes stated so far (their first word: ``CrashLoopBackOff``), once each.
        self.stated = {
            line.text.removeprefix(CAUSE).partition(":")[0]
            for line in release.transcript
            if line.text.startswith(CAUSE)
        }

    def cause(self, obj: Obj) -> TranscriptLine | None:
        """A line stating why a new pod cannot become Ready, the first time it shows."""
        pod = self.timelines.get(obj["metadata"]["name"])
        if pod is None or not pod.new or not pod.cause:
            return None
        word = pod.cause.partition(":")[0]
        if word in self.stated:
            return None
        self.stated.add(word)
        return TranscriptLine(at=now(), text=f"{CAUSE}{pod.cause} (pod {pod.name})")

    def take(
        self, resource: str, kind: str, obj: Obj, lines: list[TranscriptLine] | None = None
    ) -> None:
        """Keep a ReplicaSet or pod change (the Deployment is judged by the caller), and
        add to ``lines`` the cause a new pod shows first."""
        if resource == "pods":
            self.pods_changed = self.timelines.update(kind, obj) or self.pods_changed
            if lines is not None and (line := self.cause(obj)) is not None:
                lines.append(line)
        elif kind == "DELETED":
            self.replica_sets.pop(obj["metadata"]["name"], None)
        else:
            self.replica_sets[obj["metadata"]["name"]] = obj

    def catch_up(self, updates: asyncio.Queue[Update]) -> None:
        """Take the ReplicaSet and pod changes already queued (the watches are separate streams)."""
        while not updates.empty():
            resource, kind, obj = updates.get_nowait()
            if resource in ("replicasets", "pods"):
                self.take(resource, kind, obj)

    async def outcome(
        self,
        cluster: Cluster,
        release: Release,
        failure: str | None = None,
        failing: str | None = None,
    ) -> "Ending":
        """Stored with the final state: the Deployments' ReplicaSet counts, the pods, and
        for a failure the diagnosis of the ``failing`` workload (a key)."""
        replica_sets = list(self.replica_sets.values())
        counts = [
            count
            for key, obj in self.workloads.items()
            if key.startswith("Deployment/")
            for count in replica_set_counts(replica_sets, obj)
        ]
        news = {c.name for c in counts if c.new}
        pods = self.timelines.timeline(news if counts else None)
        bundle = None
        if failure is not None:
            key = failing or next((w.key for w in _followed(release)), "Deployment/")
            kind = key.partition("/")[0]
            bundle = await diagnose(
                cluster,
                release.namespace,
                self.workloads.get(key),
                failure,
                pods,
                replica_sets,
                kind=kind,
            )
        return Ending(Observed(replica_sets=counts, pods=pods), bundle)


@dataclass(frozen=True)
class Ending:
    observed: Observed
    diagnosis: Diagnosis | None

    def failed(self, reason: str) -> Failed:
        observed = self.observed
        return Failed(
            reason=reason,
            replica_sets=observed.replica_sets,
            pods=observed.pods,
            diagnosis=self.diagnosis,
        )


class Rollout:
    """The workloads of a release as the tracker judges them: each one's last line, which
    are done, and the lines not written yet."""

    def __init__(self, release: Release) -> None:
        self.generations = {w.key: w.generation for w in _followed(release)}
        # A tracker taking a release over does not repeat the last line written.
        written = release.transcript[-1].text if release.transcript else ""
        self.last = dict.fromkeys(self.generations, written)
        self.done: set[str] = set()
        # Lines and pod changes wait up to FLUSH_S to be written together: fewer
        # writes under load, and the final write carries whatever is still pending.
        self.pending: list[TranscriptLine] = []

    def judge(self, key: str, resource: str, obj: Obj) -> Status:
        """kubectl's status of a workload's new state; a changed one becomes a line."""
        status = VIEWERS[KINDS[resource]](obj, self.generations[key])
        if status.message != self.last[key]:
            self.pending.append(TranscriptLine(at=now(), text=_line(key, status.message)))
        self.last[key] = status.message
        if status.done:
            self.done.add(key)
        else:
            self.done.discard(key)
        return status

    @property
    def finished(self) -> bool:
        return self.done == set(self.generations)

    def waiting(self) -> list[str]:
        return [key for key in self.generations if key not in self.done]

    def timed_out(self, timeout_s: int) -> str:
        lines = [_line(k, self.last[k]) for k in self.waiting() if self.last[k]]
        return f"rollout not finished within {timeout_s}s: {'; '.join(lines) or 'no status seen'}"


@dataclass
class Tracking:
    """One release being followed, and the two ways it ends here."""

    ctx: Context
    cluster: Cluster
    subscription: Subscription
    release: Release

    def __post_init__(self) -> None:
        self.rollout = Rollout(self.release)
        self.seen = Seen(self.release)

    async def fail(
        self, reason: str, now_in: Release | None = None, failing: str | None = None
    ) -> None:
        """Fail the release as ``now_in`` holds it (paused, once the tracker paused it)."""
        release, seen = self.release, self.seen
        seen.catch_up(self.subscription.updates)
        observed = await seen.outcome(self.cluster, release, reason, failing)
        if release.in_canary:
            reason = f"canary step {(release.canary_step or 0) + 1} failed: {reason}"
        lines, canary = await _canary_done(self.cluster, release, "failed", reason)
        # What was seen and done stays in the transcript whoever ends the release.
        kept = self.rollout.pending + lines
        failed = observed.failed(reason)
        await fail_release(self.ctx, now_in or release, TRACKER, failed, canary=canary, kept=kept)

    async def finish(self, last: Obj) -> None:
        """Every workload is done: the release succeeds, or its canary step is healthy."""
        release, seen, rollout = self.release, self.seen, self.rollout
        seen.catch_up(self.subscription.updates)
        outcome = await seen.outcome(self.cluster, release)
        lines, rollout.pending = rollout.pending, []  # written now: not again by ``fail``
        main = seen.workloads.get(f"Deployment/{release.deployment}", last)
        await _done(
            self.ctx, self.cluster, self.subscription, release, lines, main, outcome, self.fail
        )


async def _record_progress(
    ctx: Context, release: Release, rollout: Rollout, seen: Seen, hidden: list[str]
) -> bool:
    """Write the new lines and the pods if they changed, ``hidden`` masked in them; False
    when the release was cancelled or finished by another tracker."""
    pods = seen.timelines.timeline() if seen.pods_changed else None
    if hidden and pods:
        pods = [PodTimeline.model_validate(hidden_in(p.model_dump(), hidden)) for p in pods]
    return await ctx.releases.record_progress(release.id, masked(rollout.pending, hidden), pods)


async def _follow(
    ctx: Context, cluster: Cluster, subscription: Subscription, release: Release, timeout_s: int
) -> None:
    """Judge each new state of each workload until all are done, one fails or the timeout
    passes (or, for a canary's timed pause taken over, until the pause ends)."""
    clock = asyncio.get_running_loop().time
    deadline = clock() + _remaining(release, timeout_s)
    ending = Tracking(ctx, cluster, subscription, release)
    rollout, seen, fail, finish = ending.rollout, ending.seen, ending.fail, ending.finish
    # A pod's cause quotes the cluster, which may quote the release's secrets.
    hidden = hidden_of(ctx, release)

    if rollout.finished:
        rollout.pending.append(TranscriptLine(at=now(), text=NO_WORKLOADS))
        await finish(Obj())
        return
    while True:
        left = deadline - clock()
        dirty = bool(rollout.pending) or seen.pods_changed
        try:
            resource, kind, obj = await asyncio.wait_for(
                subscription.updates.get(), max(min(left, FLUSH_S) if dirty else left, 0)
            )
        except TimeoutError:
            if not (dirty and left > 0):
                unreachable = subscription.unreachable()
                reason = rollout.timed_out(timeout_s)
                failing = next(iter(rollout.waiting()), None)
                await fail(f"{reason}; {unreachable}" if unreachable else reason, failing=failing)
                return
            if not await _record_progress(ctx, release, rollout, seen, hidden):
                return  # cancelled, or finished by another tracker
            rollout.pending, seen.pods_changed = [], False
            continue
        if resource == STOP[0]:
            return
        key = workload_of(resource, obj) if resource in KINDS else None
        if key is None:
            seen.take(resource, kind, obj, rollout.pending)
        elif key not in rollout.generations:
            continue
        elif kind == "DELETED":
            await fail(_deleted(key, "rollout"), failing=key)
            return
        else:
            seen.workloads[key] = obj
            status = rollout.judge(key, resource, obj)
            if status.failed:
                await fail(_line(key, status.message), failing=key)
                return
            if rollout.finished:
                await finish(obj)
                return


async def _done(
    ctx: Context,
    cluster: Cluster,
    subscription: Subscription,
    release: Release,
    lines: list[TranscriptLine],
    obj: KubeObject,
    outcome: Ending,
    fail: Callable[[str, Release], Awaitable[None]],
) -> None:
    """The rollout is done: the release succeeded, or its canary step is healthy."""
    if not release.in_canary:
        pods = outcome.observed.pods
        hooked = await release_hooks(ctx, cluster, release, POST_ROLLOUT, TRACKER, lines, pods)
        if hooked is None:
            return
        lines = hooked
        done, canary = await _canary_done(cluster, release, "succeeded")
        await _succeed(ctx, cluster, release, lines + done, obj, outcome.observed, canary)
        return
    paused = release
    if release.state is ReleaseState.APPLIED:
        moved = await _pause(ctx, release, lines, obj, outcome.observed)
        if isinstance(moved, Lost):
            return
        paused = moved.release
    step = release.params.canary[release.canary_step or 0]
    pause_s = _pause_of(release) if release.state is ReleaseState.PAUSED else step.pause_s
    if pause_s is None:
        return  # until someone promotes or aborts it
    held, failure = await _hold(subscription, release, pause_s)
    if failure is not None:
        await fail(failure, paused)
    elif held:
        await promote(ctx.releases, ctx.bus, paused, TRACKER, f" after its {step.pause_s}s pause")


async def _prune(ctx: Context, cluster: Cluster, release: Release) -> tuple[list[str], str]:
    """Delete what earlier releases of the service there applied and this one no longer
    has: what was deleted, and the transcript's line about it ("" for nothing)."""
    if not release.inventory:
        return [], ""  # an older record: what it applied is not known
    earlier = await ctx.releases.inventories(release.service, release.environment, limit=50)
    try:
        found = await pruning.leftovers(
            cluster,
            release.namespace,
            release.service,
            release.environment,
            release.inventory,
            None if earlier is None else [o for inventory in earlier for o in inventory],
        )
        pruned = await pruning.prune(cluster, release.namespace, found)
    except FabuError as exc:
        return [], f"could not prune what this release no longer has: {exc.message}"
    return pruned, f"pruned what this release no longer has: {', '.join(pruned)}" if pruned else ""


def _pause_of(release: Release) -> float | None:
    """What is left of a paused canary step's timed pause; None if it waits for a person."""
    if release.state is not ReleaseState.PAUSED or not release.in_canary:
        return None
    pause_s = release.params.canary[release.canary_step or 0].pause_s
    healthy = [e.at for e in release.canary if e.what == "healthy"]
    if pause_s is None or not healthy:
        return None
    return max(0.0, pause_s - (now() - healthy[-1]).total_seconds())


async def _hold(
    subscription: Subscription, release: Release, pause_s: float
) -> tuple[bool, str | None]:
    """Watch a healthy canary step for ``pause_s``: whether it was held that long
    (not aborted meanwhile), and why it failed, if it did."""
    clock = asyncio.get_running_loop().time
    deadline = clock() + pause_s
    while (left := deadline - clock()) > 0:
        try:
            resource, kind, obj = await asyncio.wait_for(subscription.updates.get(), left)
        except TimeoutError:
            break
        if resource == STOP[0]:
            return False, None
        if resource != "deployments":
            continue
        if kind == "DELETED":
            return True, _deleted(f"Deployment/{release.deployment}", "pause")
        status = rollout_status(obj, release.generation or 0)
        if status.failed:
            return True, status.message
    return True, None


async def _pause(
    ctx: Context,
    release: Release,
    lines: list[TranscriptLine],
    obj: KubeObject,
    observed: Observed,
) -> Outcome:
    """A healthy canary step: wait for a promote (or the step's pause); False if it moved on."""
    step = release.canary_step or 0
    weight = release.params.canary[step].weight
    replicas = int((obj.get("spec") or {}).get("replicas", 0))
    wait = release.params.canary[step].pause_s
    then = (
        "waiting for someone to promote or abort it"
        if wait is None
        else f"Fabu promotes it after its {wait}s pause unless someone promotes or aborts it first"
    )
    line = (
        f"canary step {step + 1} of {len(release.params.canary)} ({weight}% asked, "
        f"{replicas} canary pods) healthy: {then}"
    )
    return await lifecycle.take(
        ctx.releases,
        ctx.bus,
        release,
        PAUSE,
        TRACKER,
        observed,
        [TranscriptLine(at=now(), text=line)],
        CanaryEvent(step=step, weight=weight, what="healthy", replicas=replicas),
        kept=lines,
    )


async def _canary_done(
    cluster: Cluster, release: Release, outcome: str, reason: str = ""
) -> tuple[list[TranscriptLine], CanaryEvent | None]:
    """The end of a canary release's tracking: its objects removed first, and the line
    and canary event to store with the final state."""
    if release.canary_step is None:
        return [], None
    step = release.canary_step
    weight = release.params.canary[step].weight if release.in_canary else 100
    try:
        removed = await remove_canary(cluster, release)
        line = f"removed the canary's objects: {', '.join(removed) or 'none were left'}"
    except FabuError as exc:
        line = f"could not remove the canary's objects: {exc.message}"
    if release.in_canary:
        line += "; the main Deployment was not touched"
    event = CanaryEvent(step=step, weight=weight, what=outcome, detail=reason)
    return [TranscriptLine(at=now(), text=line)], event


async def _succeed(
    ctx: Context,
    cluster: Cluster,
    release: Release,
    lines: list[TranscriptLine],
    obj: KubeObject,
    observed: Observed,
    canary: CanaryEvent | None,
) -> None:
    metadata = obj.get("metadata")
    annotations = metadata.get("annotations", {}) if isinstance(metadata, dict) else {}
    revision = str((annotations or {}).get("deployment.kubernetes.io/revision", release.revision))
    pruned, line = await _prune(ctx, cluster, release)
    if line:
        lines = [*lines, TranscriptLine(at=now(), text=line)]
    fields = Succeeded(
        replica_sets=observed.replica_sets, pods=observed.pods, revision=revision, pruned=pruned
    )
    # What was seen and done stays in the transcript whoever ends the release.
    await lifecycle.take(
        ctx.releases, ctx.bus, release, SUCCEED, TRACKER, fields, canary=canary, kept=lines
    )
