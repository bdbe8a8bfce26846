"""The release lifecycle: every transition as data, and the one function that takes them.

A release is created ``requested`` (or ``awaiting_approval``) and moves only
by the transitions in :data:`TRANSITIONS`: each names the states it leaves
from, the state it goes to, who may take it, the fields it sets (a typed
model), and the message published after it. :func:`take` performs one:

1. **claim** it: insert ``<release>/<n>``, ``n`` the number of state changes
   the taker read. Two transitions from the same state share the key, so
   exactly one insert succeeds, on MongoDB and on FerretDB alike (whose
   conditional updates are not atomic against each other);
2. **write** it: the release's state, fields, event and canary history, its
   lines into the transcript, and the release lock dropped when it ends;
3. **publish** what comes next.

A taker that dies after its claim leaves a claim that is not written yet;
whoever next tries a transition from that state finds the claim, finishes it
(once it is older than :data:`FINISH_AFTER_S`, so never under the feet of a
live taker) and publishes its message. A stage that finds its release already
moved on by its own transition publishes that transition's message again
(:func:`pending`): JetStream's de-duplication drops a second copy.
"""

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

import structlog
from pydantic import BaseModel, ConfigDict

from shared.ids import ReleaseId
from shared.messaging.bus import Bus
from shared.messaging.messages import (
    Event,
    ReleaseApplied,
    ReleaseCancelled,
    ReleaseCompleted,
    ReleaseFailed,
    ReleasePaused,
    ReleasePromoted,
    ReleaseRendered,
    ReleaseRequested,
    Stage,
)
from shared.messaging.subjects import Subjects
from shared.models.base import now
from shared.models.release import Release, StateChange
from shared.models.release_parts import (
    CanaryEvent,
    Decision,
    Diagnosis,
    FreezeOverride,
    Owned,
    PodTimeline,
    ReplicaSetCount,
    TranscriptLine,
    Workload,
)
from shared.release.machine import ReleaseState
from shared.store.releases import Releases

log = structlog.get_logger()

# A claim not written this long after it was made is taken to be from a taker
# that died: whoever finds it finishes it. A live taker writes within milliseconds.
FINISH_AFTER_S = 5.0


class Taker(StrEnum):
    """Who may take a transition."""

    RENDERER = "renderer"
    DEPLOYER = "deployer"
    TRACKER = "tracker"
    # A person who may release the service to the environment (checked by the API).
    RELEASER = "releaser"
    # Fabu itself, undoing what it could not hand on.
    SYSTEM = "system"


STAGES: dict[Taker, Stage] = {
    Taker.RENDERER: "renderer",
    Taker.DEPLOYER: "deployer",
    Taker.TRACKER: "tracker",
}


@dataclass(frozen=True)
class Actor:
    taker: Taker
    # Recorded with the state change: the stage's name, or the person's.
    name: str

    @classmethod
    def stage(cls, taker: Taker) -> "Actor":
        return cls(taker, taker.value)

    @classmethod
    def person(cls, name: str) -> "Actor":
        return cls(Taker.RELEASER, name)


RENDERER = Actor.stage(Taker.RENDERER)
DEPLOYER = Actor.stage(Taker.DEPLOYER)
TRACKER = Actor.stage(Taker.TRACKER)
SYSTEM = Actor(Taker.SYSTEM, "fabu")


# The fields each transition sets on the release.


class Fields(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Nothing(Fields):
    pass


class Rendered(Fields):
    manifest: str
    sealed_manifest: str = ""
    manifest_sha256: str
    deployment: str
    workloads: list[Workload]
    inventory: list[Owned]


class Applied(Fields):
    generation: int
    revision: str
    started_at: datetime
    deployment: str
    canary_step: int | None
    # The workloads this step applied, with their generations (a canary step: its own).
    workloads: list[Workload]


class Observed(Fields):
    """What the tracker saw of the rollout when it ended (or paused)."""

    replica_sets: list[ReplicaSetCount]
    pods: list[PodTimeline]


class Succeeded(Observed):
    revision: str
    # Objects of earlier releases the new manifest no longer has, deleted ("Kind/name").
    pruned: list[str] = []


class Failed(Fields):
    reason: str
    replica_sets: list[ReplicaSetCount] | None = None
    pods: list[PodTimeline] | None = None
    diagnosis: Diagnosis | None = None


class Promoted(Fields):
    canary_step: int


class Approved(Fields):
    decision: Decision
    # Only when approved during a freeze window: an override made at the
    # request is kept otherwise.
    freeze_override: FreezeOverride | None = None


class Rejected(Fields):
    decision: Decision


class Undecided(Fields):
    decision: None = None


F = TypeVar("F", bound=Fields)
Message = Callable[[Release, ReleaseState, Actor], Event]


@dataclass(frozen=True)
class Transition(Generic[F]):
    name: str
    sources: frozenset[ReleaseState]
    target: ReleaseState
    takers: frozenset[Taker]
    fields: type[F]
    # The subject published after it (a ``Subjects`` attribute) and its message.
    subject: str | None = None
    message: Message | None = None

    @property
    def ends(self) -> bool:
        """Whether the release ends with it (its service's lock is let go)."""
        return self.target.final

    def publishes(self, subjects: Subjects) -> str | None:
        return getattr(subjects, self.subject) if self.subject else None


def _states(*states: ReleaseState) -> frozenset[ReleaseState]:
    return frozenset(states)


S = ReleaseState
UNDER_WAY = _states(S.REQUESTED, S.RENDERED, S.APPLIED, S.PAUSED)
UNFINISHED = _states(S.AWAITING_APPROVAL, *UNDER_WAY)
STAGE_TAKERS = frozenset(STAGES)


def _failed(release: Release, _: ReleaseState, actor: Actor) -> Event:
    return ReleaseFailed(release_id=release.id, stage=STAGES[actor.taker], reason=release.reason)


def _ended(release: Release, was: ReleaseState, actor: Actor) -> Event:
    return ReleaseCancelled(release_id=release.id, was=was, actor=actor.name)


RENDER = Transition(
    "render",
    _states(S.REQUESTED),
    S.RENDERED,
    frozenset({Taker.RENDERER}),
    Rendered,
    "rendered",
    lambda r, _, __: ReleaseRendered(release_id=r.id, manifest_sha256=r.manifest_sha256),
)
APPLY = Transition(
    "apply",
    _states(S.RENDERED),
    S.APPLIED,
    frozenset({Taker.DEPLOYER}),
    Applied,
    "applied",
    lambda r, _, __: ReleaseApplied(
        release_id=r.id, generation=r.generation or 0, step=r.canary_step or 0
    ),
)
PAUSE = Transition(
    "pause",
    _states(S.APPLIED),
    S.PAUSED,
    frozenset({Taker.TRACKER}),
    Observed,
    "paused",
    lambda r, _, __: ReleasePaused(release_id=r.id, step=r.canary_step or 0),
)
PROMOTE = Transition(
    "promote",
    _states(S.PAUSED),
    S.RENDERED,
    frozenset({Taker.RELEASER, Taker.TRACKER}),
    Promoted,
    "promoted",
    lambda r, _, __: ReleasePromoted(
        release_id=r.id, manifest_sha256=r.manifest_sha256, step=r.canary_step or 0
    ),
)
SUCCEED = Transition(
    "succeed",
    _states(S.APPLIED),
    S.SUCCEEDED,
    frozenset({Taker.TRACKER}),
    Succeeded,
    "completed",
    lambda r, _, __: ReleaseCompleted(release_id=r.id),
)
FAIL = Transition("fail", UNDER_WAY, S.FAILED, STAGE_TAKERS, Failed, "failed", _failed)
APPROVE = Transition(
    "approve",
    _states(S.AWAITING_APPROVAL),
    S.REQUESTED,
    frozenset({Taker.RELEASER}),
    Approved,
    "requested",
    lambda r, _, __: ReleaseRequested(release_id=r.id),
)
REJECT = Transition(
    "reject", _states(S.AWAITING_APPROVAL), S.REJECTED, frozenset({Taker.RELEASER}), Rejected
)
# An approval whose message could not be sent: the release waits for approval again.
UNAPPROVE = Transition(
    "unapprove", _states(S.REQUESTED), S.AWAITING_APPROVAL, frozenset({Taker.SYSTEM}), Undecided
)
CANCEL = Transition(
    "cancel", UNFINISHED, S.CANCELLED, frozenset({Taker.RELEASER}), Nothing, "cancelled", _ended
)
# A canary stopped before its full rollout (its objects are removed by the taker).
ABORT = Transition(
    "abort", UNDER_WAY, S.ABORTED, frozenset({Taker.RELEASER}), Nothing, "cancelled", _ended
)

TRANSITIONS: tuple[Transition[Any], ...] = (
    RENDER,
    APPLY,
    PAUSE,
    PROMOTE,
    SUCCEED,
    FAIL,
    APPROVE,
    REJECT,
    UNAPPROVE,
    CANCEL,
    ABORT,
)


@dataclass(frozen=True)
class Moved:
    """The transition was taken: the release as it is now."""

    release: Release


@dataclass(frozen=True)
class Lost:
    """Another transition was taken first (or the release was not in a source state)."""

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
    n = len(release.events)
    return {
        "_id": f"{release.id}/{n}",
        "release_id": release.id,
        "n": n,
        "transition": transition.name,
        "was": release.state.value,
        "state": transition.target.value,
        "actor": actor.name,
        "taker": actor.taker.value,
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


def _by_name(name: str) -> Transition[Any]:
    return next(t for t in TRANSITIONS if t.name == name)


async def _publish(
    bus: Bus, transition: Transition[F], release: Release, was: ReleaseState, actor: Actor
) -> None:
    subject = transition.publishes(bus.subjects)
    if subject is not None and transition.message is not None:
        await bus.publish(subject, transition.message(release, was, actor))


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
    """Take ``transition`` from the state ``release`` was read in: claim, write, publish.

    ``lines`` join the transcript and ``canary`` the canary's history only if it
    is taken; ``kept`` lines (what the taker saw) join it whoever wins.
    :class:`Lost` says which state the release is in instead.
    """
    if actor.taker not in transition.takers:
        raise ValueError(f"{actor.name} may not {transition.name} a release")
    if release.state not in transition.sources:
        if kept:
            await releases.note(release.id, kept)
        return Lost(release.state)
    change = _change(release, transition, actor, fields, lines, canary)
    claimed, _ = await asyncio.gather(
        releases._claim(change), releases.note(release.id, kept or [])
    )
    if not claimed:
        return await _lost(releases, bus, release, len(release.events))
    await releases._write(release, change)
    after = _after(release, change)
    log.info(
        "release moved",
        release_id=release.id,
        transition=transition.name,
        state=transition.target,
        actor=actor.name,
    )
    await _publish(bus, transition, after, release.state, actor)
    return Moved(after)


async def _lost(releases: Releases, bus: Bus, release: Release, n: int) -> Lost:
    """The claim of ``n`` someone else made: finished here when its taker evidently died."""
    claimed = await releases._claimed(release.id, n)
    if claimed is None:  # it was there a moment ago: only a deleted release loses it
        return Lost(release.state)
    state = ReleaseState(claimed["state"])
    current = await releases.get(release.id)
    if (
        current is not None
        and len(current.events) == n
        and (now() - claimed["at"]).total_seconds() > FINISH_AFTER_S
    ):
        transition = _by_name(claimed["transition"])
        actor = Actor(Taker(claimed["taker"]), claimed["actor"])
        await releases._write(current, claimed)
        log.warning("finished a transition its taker left", release_id=release.id, n=n)
        await _publish(bus, transition, _after(current, claimed), current.state, actor)
    return Lost(state, claimed["actor"])


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
    if len(release.events) >= 1 and release.events[-1].actor == actor.name:
        was = release.events[-2].state if len(release.events) > 1 else ReleaseState.REQUESTED
        for transition in TRANSITIONS:
            if transition.target is release.state and actor.taker in transition.takers:
                await _publish(bus, transition, release, was, actor)
                break
    return None


def allowed(release: Release) -> list[Transition[Any]]:
    """The transitions a release's state allows now."""
    return [t for t in TRANSITIONS if release.state in t.sources]
