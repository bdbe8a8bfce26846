"""Deployer: ``release.rendered`` and ``release.promoted`` in, ``release.applied`` out.

Server-side applies every object of the stored manifest (field manager
``fabu``) into the environment's namespace, then records the Deployment's
generation and revision. At a canary step it applies the canary's objects
for the step's weight instead (``shared.cluster.manifest``), and the tracker follows
the canary Deployment; the step after the last applies the manifest itself.
Before the first apply it runs the release's pre-rollout hook Jobs
(``shared.release.stages.release_hooks``), their phase and pods kept beside the
release while they run; one that fails fails the release with nothing else
of it applied.
Idempotency key: the release's state (the ``apply`` transition) and step;
applying the same manifest twice is a no-op for the cluster.
An object the API server rejects, a forbidden request or a cluster that stays
unreachable fails the release with the API server's message.
"""

from collections.abc import Awaitable, Callable

from shared.cluster.admission import Refused, admit
from shared.cluster.client import Cluster, ClusterError
from shared.cluster.manifest import (
    PREVIEW_SUFFIX,
    SUFFIX,
    WORKLOADS,
    Obj,
    canary_objects,
    canary_target,
    is_route,
    objects,
    revision,
    rollout_objects,
    traffic,
)
from shared.errors import TransientError
from shared.messaging.bus import Msg
from shared.messaging.messages import ReleasePromoted, ReleaseRendered
from shared.models.base import now
from shared.models.release import Release
from shared.models.release_parts import CanaryEvent, TranscriptLine, Workload
from shared.release import blue_green, lifecycle
from shared.release.canary import remove_canary, route_for_step
from shared.release.hook_jobs import PRE_ROLLOUT
from shared.release.lifecycle import AS_DEPLOYER
from shared.release.machine import APPLY, Applied, Failed, ReleaseState
from shared.release.stages import environment_and_cluster, fail_release, release_hooks
from shared.secrets import SecretError, Secrets
from shared.worker import Context

# An unreachable cluster is tried again after a wait that doubles from
# ``apply_retry_s`` up to five times it, MAX_ATTEMPTS times in all, before the
# release fails: with 3 s, after 3, 6, 12, 15, 15, 15, 15 and 15 s (96 s in all,
# which rides out an API server restart) with an attempt soon after it is back.
MAX_ATTEMPTS = 9


def retry_after(first_s: float, attempt: int) -> float:
    """The wait after a failed ``attempt`` (1, 2, ...)."""
    return float(min(first_s * 2 ** (attempt - 1), first_s * 5))


async def setup(ctx: Context) -> Callable[[Msg], Awaitable[None]]:
    return _handler(ctx, ReleaseRendered)


async def setup_promotions(ctx: Context) -> Callable[[Msg], Awaitable[None]]:
    return _handler(ctx, ReleasePromoted)


def _handler(
    ctx: Context, message: type[ReleaseRendered | ReleasePromoted]
) -> Callable[[Msg], Awaitable[None]]:
    async def handle(msg: Msg) -> None:
        event = message.model_validate_json(msg.data)
        try:
            await handle_rendered(ctx, event)
        except TransientError as exc:
            attempt = msg.metadata.num_delivered
            if attempt < MAX_ATTEMPTS:
                delay = retry_after(ctx.settings.apply_retry_s, attempt)
                raise TransientError(exc.message, delay) from exc
            waited = sum(retry_after(ctx.settings.apply_retry_s, n) for n in range(1, MAX_ATTEMPTS))
            reason = f"gave up after {MAX_ATTEMPTS} attempts over {waited:.0f}s: {exc.message}"
            release = await ctx.releases.head(event.release_id)
            if release is not None:
                await fail_release(ctx, release, AS_DEPLOYER, Failed(reason=reason))

    return handle


async def _step_objects(
    cluster: Cluster, release: Release, docs: list[Obj]
) -> tuple[list[Obj], CanaryEvent | None, str]:
    """What to apply for the release's step (``docs``: its manifest's objects): the objects,
    the canary event, a transcript line. A split HTTPRoute carries the live one's routes."""
    if release.params.blue_green is not None:
        if release.in_canary:
            return await blue_green.step_objects(cluster, release)
        # The full rollout: the Services switched to the preview stay there until the
        # main Deployment has the new version (the tracker then puts them back).
        keep = await blue_green.switched(cluster, release)
        applying = [
            o
            for o in rollout_objects(docs)
            if not (o.get("kind") == "Service" and o["metadata"]["name"] in keep)
        ]
        return applying, None, ""
    if not release.in_canary:
        return rollout_objects(docs), None, ""
    step = release.canary_step or 0
    weight = release.params.steps[step].weight
    applying = [
        await route_for_step(cluster, release.namespace, o) if is_route(o) else o
        for o in canary_objects(release.manifest, weight)
    ]
    deployment = next(o for o in applying if o["kind"] == "Deployment")
    replicas = int(deployment["spec"]["replicas"])
    main = canary_target(docs)
    beside = int((main or {}).get("spec", {}).get("replicas", 1))
    share = round(100 * replicas / (replicas + beside))
    by = traffic(applying)
    line = (
        f"canary step {step + 1} of {len(release.params.steps)}: {weight}% asked → "
        f"{deployment['metadata']['name']} with {replicas} of {replicas + beside} pods "
        f"({share}%); {by}" + (f" at {weight}%" if by.startswith("traffic") else "")
    )
    event = CanaryEvent(step=step, weight=weight, what="applied", replicas=replicas, detail=by)
    return applying, event, line


async def _whole_if_first(
    cluster: Cluster, release: Release, docs: list[Obj]
) -> tuple[Release, str]:
    """A canary with no main Deployment running yet has nothing to be compared with:
    the release goes out whole (its step moved past the canary), and a line says so."""
    if not (release.in_canary and release.canary_step == 0):
        return release, ""
    target = canary_target(docs)
    name = target["metadata"]["name"] if target else release.deployment
    if await cluster.deployment(release.namespace, name) is not None:
        return release, ""
    whole = release.model_copy(update={"canary_step": len(release.params.steps)})
    return whole, f"no {name} Deployment runs yet: released whole, without a canary"


async def _pre_rollout(ctx: Context, cluster: Cluster, release: Release) -> bool:
    """Run the release's pre-rollout hook Jobs before its first apply; False when the
    release failed (or was cancelled) meanwhile and nothing more may be applied."""
    if any(e.state is ReleaseState.APPLIED for e in release.events):
        return True
    return await release_hooks(ctx, cluster, release, PRE_ROLLOUT, AS_DEPLOYER) is not None


async def _opened(ctx: Context, release: Release) -> Release | None:
    """The release with the manifest the cluster gets, its secrets opened (in memory
    only); None when they cannot be opened, and the release failed with why."""
    try:
        manifest = Secrets(ctx.settings.secret_key).manifest(release)
    except SecretError as exc:
        await fail_release(ctx, release, AS_DEPLOYER, Failed(reason=exc.message))
        return None
    return release.model_copy(update={"manifest": manifest})


async def handle_rendered(ctx: Context, event: ReleaseRendered | ReleasePromoted) -> None:
    release = await lifecycle.pending(
        ctx.releases, ctx.bus, event.release_id, AS_DEPLOYER, ReleaseState.RENDERED
    )
    if release is None or event.step != (release.canary_step or 0):
        return  # done already, or a step the release has left
    found = await environment_and_cluster(ctx, release, AS_DEPLOYER)
    ready = await _opened(ctx, release) if found is not None else None
    if found is None or ready is None:
        return
    env, cluster = found
    release = ready
    started_at = release.started_at or now()
    # The manifest is read once; what is applied are copies (``Cluster.apply``).
    docs = objects(release.manifest)
    try:
        release, line = await _whole_if_first(cluster, release, docs)
        applying, canary, step_line = await _step_objects(cluster, release, docs)
        await admit(cluster, env, docs)
        line = line or step_line
        if not await _pre_rollout(ctx, cluster, release):
            return
        # The Deployment a canary acts on (at a step, its canary copy) is the one whose
        # generation and revision the release records.
        target = canary_target(docs)
        deployment = ""
        if target is not None:
            suffix = PREVIEW_SUFFIX if release.params.blue_green else SUFFIX
            deployment = target["metadata"]["name"] + (suffix if release.in_canary else "")
        generation, rev = 0, ""
        workloads: list[Workload] = []
        for obj in applying:
            applied = await cluster.apply(release.namespace, obj)
            kind, name = obj.get("kind", ""), obj["metadata"]["name"]
            if kind not in WORKLOADS:
                continue
            applied_generation = int(applied.get("metadata", {}).get("generation", 0))
            workloads.append(Workload(kind=kind, name=name, generation=applied_generation))
            if kind == "Deployment" and name == deployment:
                generation, rev = applied_generation, revision(applied)
    except (ClusterError, Refused) as exc:
        await fail_release(ctx, release, AS_DEPLOYER, Failed(reason=exc.message))
        if release.in_canary:
            await remove_canary(cluster, release)
        return
    fields = Applied(
        generation=generation,
        revision=rev,
        started_at=started_at,
        deployment=deployment,
        canary_step=release.canary_step,
        workloads=workloads,
    )
    lines = [TranscriptLine(at=now(), text=line)] if line else []
    outcome = await lifecycle.take(
        ctx.releases, ctx.bus, release, APPLY, AS_DEPLOYER, fields, lines, canary
    )
    if outcome:
        return
    current = await ctx.releases.head(release.id)
    if current is not None and current.state is ReleaseState.ABORTED:
        # Aborted while the canary's objects were being sent: take them away again.
        removed = await remove_canary(cluster, release)
        line = f"removed the canary objects applied as it was aborted: {', '.join(removed)}"
        await ctx.releases.note(release.id, [TranscriptLine(at=now(), text=line)])
    elif current is not None and current.state is ReleaseState.CANCELLED:
        # Cancelled while its objects were being sent: say that they were.
        line = "the objects had already been applied when the release was cancelled"
        await ctx.releases.note(release.id, [TranscriptLine(at=now(), text=line)])
