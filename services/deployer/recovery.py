"""Recovery: ``release.failed`` in; an automatic rollback to the last good release out
(``release.requested``) where the release config or the environment asks for one.

The rollback is a release of its own (kind ``rollback``, operator ``fabu``):
it restores the last release that succeeded whole, image, base parameters and
template version, and is linked both ways (``rollback_of`` on it,
``rolled_back_by`` on the failed one). Never more than one in a row: a failed
automatic rollback is not rolled back again (``Release.rolls_back_in``).
It starts through ``lifecycle.start`` like any release: when its message cannot be
sent it is discarded and ``release.failed`` redelivered. Idempotency key: the
rollback's id, claimed once for the failed release before the rollback is stored; a
redelivery finds it and finishes what is missing (a rollback still requested is
announced again: a second copy is de-duplicated).
"""

from collections.abc import Awaitable, Callable

import structlog

from shared.errors import Conflict
from shared.ids import ReleaseId
from shared.messaging.bus import Msg
from shared.messaging.messages import ReleaseFailed
from shared.models.base import now
from shared.models.release import Release, ReleaseKind
from shared.models.release_parts import TranscriptLine
from shared.release import lifecycle
from shared.release.lifecycle import AS_SYSTEM
from shared.release.machine import REQUEST, ReleaseState
from shared.store.mongo import new_id
from shared.worker import Context

log = structlog.get_logger()


async def setup_recoveries(ctx: Context) -> Callable[[Msg], Awaitable[None]]:
    async def handle(msg: Msg) -> None:
        await recover(ctx, ReleaseFailed.model_validate_json(msg.data).release_id)

    return handle


async def recover(ctx: Context, release_id: str) -> Release | None:
    """Start the automatic rollback of a failed release, if it asks for one; the rollback."""
    failed = await ctx.releases.get(release_id)
    if failed is None:
        return None
    env = await ctx.catalog.environment(failed.environment)
    if env is None or not failed.rolls_back_in(env):
        return None
    last_good = await ctx.releases.last_good(failed.service, failed.environment)
    if last_good is None:
        line = "no automatic rollback: no release of this service here has succeeded"
        await ctx.releases.note(failed.id, [TranscriptLine(at=now(), text=line)])
        return None
    rollback_id = await ctx.releases.claim_rollback(failed.id, ReleaseId(new_id()))
    found = await ctx.releases.get(rollback_id)
    if found is not None:
        if found.state is ReleaseState.REQUESTED:  # stored, then the process died
            await lifecycle.announce(ctx.bus, found)
        return found
    rollback = last_good.again(
        rollback_id,
        ReleaseKind.ROLLBACK,
        f"automatic rollback to {last_good.version} (release {last_good.id}) "
        f"after release {failed.id} ({failed.version}) failed",
        env.namespace,
    )
    rollback.rollback_of = failed.id
    try:
        rollback = await lifecycle.start(ctx.releases, ctx.bus, rollback, REQUEST, AS_SYSTEM)
    except Conflict as exc:
        text = f"no automatic rollback: {exc.message}"
        await ctx.releases.note(failed.id, [TranscriptLine(at=now(), text=text)])
        return None
    text = f"rolling back to {last_good.version} automatically: release {rollback.id}"
    await ctx.releases.note(failed.id, [TranscriptLine(at=now(), text=text)])
    log.info("automatic rollback", release_id=failed.id, rollback_id=rollback.id)
    return rollback
