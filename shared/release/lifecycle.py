"""The release lifecycle's engine: start a release, and take a transition of the machine.

The machine itself (the states, the starts and every transition as data) is
``shared.release.machine``. :func:`start` is the one door a release is created
by: stored in its first state, then announced. :func:`take` performs one
transition:

1. **write** it, in one conditional update of the release (its state, fields,
   event, transcript lines and canary history) that matches only while the
   release still has the number of state changes its taker read. Two transitions
   from the same state race for the same update, and the server applies exactly
   one (the store conformance test checks the server does), so nothing is half
   taken and a taker that dies leaves either the whole transition or none;
2. **publish** what comes next.

A stage that finds its release already moved on by its own transition publishes
that transition's message again (:func:`pending`): it may have died between its
write and its publish, and JetStream's de-duplication drops a second copy.
"""

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from shared.errors import Unavailable
from shared.ids import ReleaseId
from shared.messaging.bus import Bus
from shared.messaging.messages import RELEASE_MESSAGES
from shared.models.base import now
from shared.models.release import Release, StateChange
from shared.models.release_parts import CanaryEvent, TranscriptLine
from shared.release.machine import (
    STARTS,
    TRANSITIONS,
    F,
    ReleaseState,
    Start,
    Taker,
    Transition,
)
from shared.store.releases import Releases

log = structlog.get_logger()


@dataclass(frozen=True)
class Actor:
    """Who takes a transition: a taker, and the name its state change records."""

    taker: Taker
    # The stage's name, or the person's.
    name: str

    @classmethod
    def stage(cls, taker: Taker) -> "Actor":
        return cls(taker, taker.value)

    @classmethod
    def person(cls, name: str) -> "Actor":
        return cls(Taker.RELEASER, name)


AS_RENDERER = Actor.stage(Taker.RENDERER)
AS_DEPLOYER = Actor.stage(Taker.DEPLOYER)
AS_TRACKER = Actor.stage(Taker.TRACKER)
AS_SYSTEM = Actor(Taker.SYSTEM, "fabu")


async def start(
    releases: Releases, bus: Bus, release: Release, how: Start, actor: Actor
) -> Release:
    """Store ``release`` as ``how`` starts it, ``actor`` its operator, taking its service's
    lock (409 when another release holds it), and hand it on; the release as stored.

    When its message cannot be sent the release is discarded (503): nothing is left
    half-started.
    """
    if actor.taker not in how.by:
        raise ValueError(f"{actor.name} may not start a release ({how.name})")
    first = [StateChange(at=now(), state=how.to, actor=actor.name)] if how.recorded else []
    started = release.model_copy(update={"state": how.to, "operator": actor.name, "events": first})
    await releases.create(started)
    try:
        await announce(bus, started)
    except Exception as exc:
        await releases.discard(started)
        log.exception("could not hand the release on", release_id=started.id)
        raise Unavailable("the message bus is unavailable; nothing was released") from exc
    return started


async def announce(bus: Bus, release: Release) -> None:
    """Publish the message that hands a release just started on: again, too, for a starter
    that died between storing it and announcing it (a second copy is de-duplicated)."""
    how = next(s for s in STARTS if s.to is release.state)
    await _send(bus, how.sends, release)


async def _send(bus: Bus, sends: str, release: Release) -> None:
    message = RELEASE_MESSAGES[sends](release_id=release.id, step=release.canary_step or 0)
    await bus.publish(getattr(bus.subjects, sends), message)


@dataclass(frozen=True)
class Moved:
    """The transition was taken: the release as it is now."""

    release: Release


@dataclass(frozen=True)
class Lost:
    """Another transition was taken first (or the release was not in a state it leaves)."""

    state: ReleaseState
    by: str = ""

    def __bool__(self) -> bool:
        return False


Outcome = Moved | Lost


def _change(
    release: Release,
    transition: Transition[F],
    actor: Actor,
    fields: F,
    lines: Iterable[TranscriptLine],
    canary: CanaryEvent | None,
) -> dict[str, object]:
    return {
        "n": len(release.events),
        "state": transition.to.value,
        "actor": actor.name,
        "at": now(),
        "fields": fields.model_dump(exclude_unset=True),
        "lines": [line.model_dump() for line in lines],
        "canary": canary.model_dump() if canary else None,
    }


def _after(release: Release, change: dict[str, object]) -> Release:
    """The release as the change leaves it (what the write stored)."""
    state = ReleaseState(str(change["state"]))
    at = change["at"]
    assert isinstance(at, datetime)  # noqa: S101 - narrows the stored change's type
    fields = change["fields"]
    assert isinstance(fields, dict)  # noqa: S101 - the same
    canary = change["canary"]
    lines = change["lines"]
    assert isinstance(lines, list)  # noqa: S101 - the same
    typed = Release.model_validate({**release.model_dump(exclude={"duration_s"}), **fields})
    update = {
        **{k: getattr(typed, k) for k in fields},
        "state": state,
        "events": [*release.events, StateChange(at=at, state=state, actor=str(change["actor"]))],
        "transcript": [*release.transcript, *(TranscriptLine(**line) for line in lines)],
    }
    if canary:
        update["canary"] = [*release.canary, CanaryEvent.model_validate(canary)]
    if state.final:
        update["finished_at"] = at
    return release.model_copy(update=update)


async def _publish(bus: Bus, transition: Transition[Any], release: Release) -> None:
    if transition.sends is not None:
        await _send(bus, transition.sends, release)


async def take(
    releases: Releases,
    bus: Bus,
    release: Release,
    transition: Transition[F],
    actor: Actor,
    fields: F,
    lines: Iterable[TranscriptLine] = (),
    canary: CanaryEvent | None = None,
    kept: list[TranscriptLine] | None = None,
) -> Outcome:
    """Take ``transition`` from the state ``release`` was read in: write, then publish.

    ``lines`` join the transcript and ``canary`` the canary's history only if it
    is taken; ``kept`` lines (what the taker saw) join it whoever wins.
    :class:`Lost` says which state the release is in instead.
    """
    if actor.taker not in transition.by:
        raise ValueError(f"{actor.name} may not {transition.name} a release")
    if release.state not in transition.leaves:
        if kept:
            await releases.note(release.id, kept)
        return Lost(release.state)
    # What the taker saw goes in with the transition (never after its state, for a reader);
    # if it loses, beside the release.
    change = _change(release, transition, actor, fields, [*(kept or []), *lines], canary)
    if not await releases._write(release, change):
        current, _ = await asyncio.gather(
            releases.head(release.id), releases.note(release.id, kept or [])
        )
        if current is None or not current.events:
            return Lost(release.state)
        return Lost(current.state, current.events[-1].actor)
    after = _after(release, change)
    log.info(
        "release moved",
        release_id=release.id,
        transition=transition.name,
        state=transition.to,
        actor=actor.name,
    )
    await _publish(bus, transition, after)
    return Moved(after)


async def pending(
    releases: Releases,
    bus: Bus,
    release_id: ReleaseId,
    actor: Actor,
    *waiting: ReleaseState,
    with_transcript: bool = False,
) -> Release | None:
    """The release if it is in one of the ``waiting`` states, else None; its transcript
    and pod timeline so far only when asked for (two more reads).

    A release this stage moved on last gets that transition's message published
    again: the stage may have died between its write and its publish (a second
    copy is de-duplicated by the event id).
    """
    release = await (releases.get if with_transcript else releases.head)(release_id)
    if release is None or release.state in waiting:
        return release
    if release.events and release.events[-1].actor == actor.name:
        moved = (t for t in TRANSITIONS if t.to is release.state and actor.taker in t.by)
        transition = next(moved, None)
        if transition is not None:
            await _publish(bus, transition, release)
    return None
