"""How a followed release ends here: failed with what was seen and its diagnosis, or
done: its post-rollout hooks run, its canary's objects removed, what it no longer has
pruned, and the release succeeded; or, at a canary step, the step paused, held for
its timed pause and promoted."""

from dataclasses import dataclass

from services.tracker import analysis
from services.tracker.canary import canary_done, hold, pause, pause_left
from services.tracker.pods import Obj
from services.tracker.pruning import prune
from services.tracker.rollout import Rollout
from services.tracker.seen import Seen
from shared.cluster.client import Cluster
from shared.cluster.watches import Subscription
from shared.models.analysis import Verdict
from shared.models.base import now
from shared.models.release import Release
from shared.models.release_parts import TranscriptLine
from shared.release import lifecycle
from shared.release.canary import promote
from shared.release.hook_jobs import POST_ROLLOUT
from shared.release.lifecycle import AS_TRACKER, Lost
from shared.release.machine import SUCCEED, Observed, ReleaseState, Succeeded
from shared.release.stages import fail_release, release_hooks
from shared.worker import Context


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
        lines, canary = await canary_done(self.cluster, release, "failed", reason)
        # What was seen and done stays in the transcript whoever ends the release.
        kept = self.rollout.pending + lines
        failed = observed.failed(reason)
        await fail_release(
            self.ctx, now_in or release, AS_TRACKER, failed, canary=canary, kept=kept
        )

    async def finish(self, last: Obj) -> None:
        """Every workload is done: the release succeeds, or its canary step is healthy."""
        release, seen, rollout = self.release, self.seen, self.rollout
        seen.catch_up(self.subscription.updates)
        ending = await seen.outcome(self.cluster, release)
        lines, rollout.pending = rollout.pending, []  # written now: not again by ``fail``
        main = seen.workloads.get(f"Deployment/{release.deployment}", last)
        if release.in_canary:
            await self._step_healthy(lines, main, ending.observed)
        else:
            await self._succeed(lines, main, ending.observed)

    async def _succeed(self, lines: list[TranscriptLine], main: Obj, observed: Observed) -> None:
        """After the post-rollout hooks (a failing one fails the release), the canary's
        objects removed and what the release no longer has pruned: it succeeded."""
        ctx, cluster, release = self.ctx, self.cluster, self.release
        hooked = await release_hooks(
            ctx, cluster, release, POST_ROLLOUT, AS_TRACKER, lines, observed.pods
        )
        if hooked is None:
            return
        done, canary = await canary_done(cluster, release, "succeeded")
        lines = hooked + done
        metadata = main.get("metadata")
        annotations = metadata.get("annotations", {}) if isinstance(metadata, dict) else {}
        revision = str(
            (annotations or {}).get("deployment.kubernetes.io/revision", release.revision)
        )
        pruned, line = await prune(ctx, cluster, release)
        if line:
            lines = [*lines, TranscriptLine(at=now(), text=line)]
        fields = Succeeded(
            replica_sets=observed.replica_sets, pods=observed.pods, revision=revision, pruned=pruned
        )
        # What was seen and done stays in the transcript whoever ends the release.
        await lifecycle.take(
            ctx.releases, ctx.bus, release, SUCCEED, AS_TRACKER, fields, canary=canary, kept=lines
        )

    async def _step_healthy(
        self, lines: list[TranscriptLine], main: Obj, observed: Observed
    ) -> None:
        """A healthy canary step: the release paused (unless it already is), then judged
        by its analysis, if it names one, and, for a step with a timed pause or an
        analysis, held for the pause and promoted, or failed meanwhile."""
        release = paused = self.release
        if release.state is ReleaseState.APPLIED:
            moved = await pause(self.ctx, release, lines, main, observed)
            if isinstance(moved, Lost):
                return
            paused = moved.release
        index = release.canary_step or 0
        step = release.params.steps[index]
        why = f" after its {step.pause_s}s pause"
        if step.analysis:
            judged = await analysis.judge(self.ctx, self.subscription, paused, index, step.analysis)
            if judged.failure is not None:
                await self.fail(judged.failure, paused)
                return
            if judged.verdict is Verdict.FAILED:
                await self.fail(judged.reason, paused)
                return
            if judged.verdict is not Verdict.PASSED:
                if judged.verdict is Verdict.INCONCLUSIVE and judged.fresh:
                    line = f"canary step {index + 1}: {judged.reason}"
                    await self.ctx.releases.note(release.id, [TranscriptLine(at=now(), text=line)])
                return
            why = f" as {judged.reason}" + (why if step.pause_s else "")
        pause_s = pause_left(paused) if step.pause_s is not None else None
        if pause_s is None and not step.analysis:
            return  # until someone promotes or aborts it
        held, failure = await hold(self.subscription, release, pause_s or 0)
        if failure is not None:
            await self.fail(failure, paused)
        elif held:
            await promote(self.ctx.releases, self.ctx.bus, paused, AS_TRACKER, why)
