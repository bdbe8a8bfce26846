"""What every stage does to a release: fail it, run its hook Jobs, find its cluster.

Each function takes the stage's context (``shared.worker.Context``, seen here as
:class:`Stage`: only what these need). Every text a stage stores may quote the
outside (the API server's answer, a Job's or a pod's log): the release's secrets
are masked in it first.
"""

import json
from collections.abc import Iterable
from typing import Protocol

import structlog

from shared.cluster.client import Cluster, ClusterError, Clusters
from shared.cluster.manifest import objects
from shared.ids import ReleaseId
from shared.messaging import subjects
from shared.messaging.bus import MAX_DELIVER, Bus, GiveUp, Msg
from shared.models.base import now
from shared.models.catalog import Environment
from shared.models.parameters import hidden_in, hide
from shared.models.release import Release
from shared.models.release_parts import CanaryEvent, HookRun, PodTimeline, TranscriptLine
from shared.release import hook_jobs, lifecycle, machine
from shared.release.lifecycle import Actor, Outcome
from shared.release.machine import Failed
from shared.secrets import SecretError, Secrets
from shared.settings import Settings
from shared.store.catalog import Catalog
from shared.store.releases import Releases

log = structlog.get_logger()


class Stage(Protocol):
    """What a stage acts on a release with (a ``shared.worker.Context`` is one)."""

    settings: Settings
    catalog: Catalog
    releases: Releases
    bus: Bus
    clusters: Clusters


def hidden_of(stage: Stage, release: Release) -> list[str]:
    """What to mask wherever the outside's words about a release could quote its secrets
    (``parameters.hidden_forms`` of its config's opened secrets)."""
    try:
        return release.params.hidden(Secrets(stage.settings.secret_key).open)
    except SecretError:
        return []  # none could be opened: none reached the manifest or the cluster


def masked(lines: list[TranscriptLine], hidden: list[str]) -> list[TranscriptLine]:
    """``lines`` with ``hidden`` masked in each."""
    if not hidden:
        return lines
    return [line.model_copy(update={"text": hide(line.text, hidden)}) for line in lines]


def masked_pods(pods: list[PodTimeline], hidden: list[str]) -> list[PodTimeline]:
    """``pods`` with ``hidden`` masked in every text of their timelines."""
    if not hidden:
        return pods
    return [PodTimeline.model_validate(hidden_in(p.model_dump(), hidden)) for p in pods]


async def fail_release(
    stage: Stage,
    release: Release,
    actor: Actor,
    failed: Failed,
    lines: Iterable[TranscriptLine] = (),
    canary: CanaryEvent | None = None,
    kept: list[TranscriptLine] | None = None,
) -> Outcome:
    """Fail the release (if it still is in the state it was read in) and announce it;
    ``kept`` lines join the transcript whoever ends it. The release's secrets are
    masked in every text before it is stored, logged or sent on."""
    hidden = hidden_of(stage, release)
    if hidden:
        failed = Failed.model_validate(hidden_in(failed.model_dump(exclude_unset=True), hidden))
        lines = masked(list(lines), hidden)
        if kept is not None:
            kept = masked(kept, hidden)
    outcome = await lifecycle.take(
        stage.releases, stage.bus, release, machine.FAIL, actor, failed, lines, canary, kept
    )
    if outcome:
        log.info("release failed", release_id=release.id, stage=actor.name, reason=failed.reason)
    return outcome


async def release_hooks(
    stage: Stage,
    cluster: Cluster,
    release: Release,
    when: str,
    actor: Actor,
    kept: list[TranscriptLine] | None = None,
    seen: list[PodTimeline] | None = None,
) -> list[TranscriptLine] | None:
    """Run the release's ``when`` hook Jobs (``hook_jobs``) while it stays in the state
    it is in, saying so in the transcript at once and keeping each hook's phase and pods
    beside the release as they change (after ``seen``, the workloads' pods already
    shown): the ``kept`` lines back, to be written with what comes next; None when a
    hook failed (the release with it) or the release was cancelled meanwhile (the
    lines written then): nothing more may be done for it."""
    lines = list(kept or [])
    if hook_jobs.HOOK_ANNOTATION not in release.manifest:
        return lines  # no hooks at all: nothing to parse or open
    jobs = hook_jobs.hooks(objects(Secrets(stage.settings.secret_key).manifest(release)), when)
    if not jobs:
        return lines
    env = await stage.catalog.environment(release.environment)
    timeout_s = release.params.rollout_timeout_s or (env.rollout_timeout_s if env else 300)
    waiting = release.state
    # A pod's cause and a Job's log quote the cluster, which may quote the secrets.
    hidden = hidden_of(stage, release)
    before = list(seen or [])

    async def still_wanted() -> bool:
        current = await stage.releases.head(release.id)
        return current is not None and current.state is waiting

    async def report(
        run: HookRun, pods: list[PodTimeline] | None, new: list[TranscriptLine]
    ) -> None:
        shown = None if pods is None else [*before, *masked_pods(pods, hidden)]
        await stage.releases.record_hook(
            release.id, run.model_copy(update={"cause": hide(run.cause, hidden)}), shown
        )
        if new:
            await stage.releases.note(release.id, masked(new, hidden))

    names = ", ".join(j["metadata"]["name"] for j in jobs)
    running = TranscriptLine(at=now(), text=f"running the {when} hooks: {names}")
    await stage.releases.note(release.id, [running])
    try:
        failed = await hook_jobs.run(
            cluster, release.namespace, jobs, timeout_s, still_wanted, report
        )
    except ClusterError as exc:
        failed = hook_jobs.HookFailed(exc.message)
    if failed is not None:
        auto = release.rollback_of is None and _auto_rollback(release, env)
        reason = f"{failed.reason.rstrip('.')}. {hook_jobs.consequence(when, auto)}"
        fields = Failed(reason=reason, diagnosis=failed.diagnosis, pods=[*before, *failed.pods])
        await fail_release(stage, release, actor, fields, kept=[*lines, *failed.lines])
        return None
    if not await still_wanted():
        await stage.releases.note(
            release.id, [*lines, TranscriptLine(at=now(), text=hook_jobs.STOPPED)]
        )
        return None
    return lines


def _auto_rollback(release: Release, env: Environment | None) -> bool:
    """Whether the release's config, else its environment, asks for automatic rollbacks."""
    asked = release.params.auto_rollback
    return bool(env.auto_rollback if asked is None and env is not None else asked)


async def environment_and_cluster(
    stage: Stage, release: Release, actor: Actor
) -> tuple[Environment, Cluster] | None:
    """The release's environment and a client for its cluster; None after failing the release."""
    env = await stage.catalog.environment(release.environment)
    try:
        if env is None:
            raise ClusterError(f"environment {release.environment!r} no longer exists")  # noqa: TRY301
        return env, await stage.clusters.get(env)
    except ClusterError as exc:
        await fail_release(stage, release, actor, Failed(reason=exc.message))
        return None


# The consumers whose messages carry a release under way, and who fails it.
_RELEASE_CONSUMERS = {
    subjects.RENDERER: lifecycle.AS_RENDERER,
    subjects.DEPLOYER: lifecycle.AS_DEPLOYER,
    subjects.PROMOTIONS: lifecycle.AS_DEPLOYER,
    subjects.TRACKER: lifecycle.AS_TRACKER,
}


def giving_up(stage: Stage, consumer: str) -> GiveUp | None:
    """For a consumer that moves releases on: fail the release of a message that could
    not be handled in ``MAX_DELIVER`` deliveries, so it never stays under way holding
    its service's lock. None for the others."""
    actor = _RELEASE_CONSUMERS.get(consumer)
    if actor is None:
        return None

    async def give_up(msg: Msg, reason: str) -> None:
        try:
            release_id = ReleaseId(str(json.loads(msg.data)["release_id"]))
        except (ValueError, KeyError, TypeError):
            return
        release = await stage.releases.head(release_id)
        if release is None or release.state not in machine.MOVING:
            return
        said = f"the {consumer} could not handle it in {MAX_DELIVER} attempts: {reason}"
        await fail_release(stage, release, actor, Failed(reason=said))

    return give_up
