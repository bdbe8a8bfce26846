"""The release state machine, whole: its states, who may move a release, the fields each
move sets, how a release starts, and every transition, one row each.

The engine that takes a transition (claim, write, publish) is ``shared.release.lifecycle``;
what a person may do in each state is ``shared.release.actions``. The README's table of
the transitions is :func:`table` (``python -m shared.release.machine``).
"""

from collections.abc import Set
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from shared.messaging.messages import RELEASE_MESSAGES
from shared.messaging.subjects import Subjects
from shared.models.release_parts import (
    Decision,
    Diagnosis,
    FreezeOverride,
    Owned,
    PodTimeline,
    ReplicaSetCount,
    Workload,
)


class ReleaseState(StrEnum):
    # Waiting for someone other than the operator to approve (or reject) it.
    AWAITING_APPROVAL = "awaiting_approval"
    # Handed to the renderer (approved, or needing no approval).
    REQUESTED = "requested"
    # Its manifest (or a canary step's) is rendered; the deployer applies it next.
    RENDERED = "rendered"
    # Applied to the cluster; the tracker follows the rollout.
    APPLIED = "applied"
    # The rollout finished healthy.
    SUCCEEDED = "succeeded"
    # A stage could not go on (the reason says why).
    FAILED = "failed"
    # A canary step is healthy; waiting to be promoted (by someone, or after its pause).
    PAUSED = "paused"
    # Ended by someone before it finished; what was applied stays as it is.
    CANCELLED = "cancelled"
    # Its approval was refused: nothing reached the cluster.
    REJECTED = "rejected"
    # A canary stopped by someone: its objects removed, the main Deployment untouched.
    ABORTED = "aborted"

    @property
    def final(self) -> bool:
        return self in FINAL


# Short names for the rows below.
S = ReleaseState
# A release in a final state moves no more, and its service's release lock is free.
FINAL = frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED, S.REJECTED, S.ABORTED})
# Not final: the release holds its service's lock.
OPEN = frozenset(S) - FINAL
# Handed to the stages and not ended: every open state but the wait for approval.
MOVING = OPEN - {S.AWAITING_APPROVAL}


class Taker(StrEnum):
    """Who may take a transition (or start a release)."""

    RENDERER = "renderer"
    DEPLOYER = "deployer"
    TRACKER = "tracker"
    # A person who may release the service to the environment (checked by the API).
    RELEASER = "releaser"
    # Fabu itself: automatic rollbacks, and undoing what it could not hand on.
    SYSTEM = "system"


T = Taker
# The three stages: each fails a release it cannot take on.
STAGES = frozenset({T.RENDERER, T.DEPLOYER, T.TRACKER})


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


def _publishable(subject: str | None) -> None:
    if subject is not None and subject not in RELEASE_MESSAGES:
        raise ValueError(f"no release message is published on {subject!r}")


@dataclass(frozen=True)
class Start:
    """How a release begins: created in a state, by someone, announced on a subject."""

    name: str
    to: ReleaseState
    by: Set[Taker]
    # A ``Subjects`` attribute: its message carries the release id.
    sends: str
    # Whether its creation is a state change of its own (a requested release's
    # creation is its request; a wait for approval is recorded, by its requester).
    recorded: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "by", frozenset(self.by))
        _publishable(self.sends)


@dataclass(frozen=True)
class Transition(Generic[F]):
    """One row: the states it leaves, the state it goes to, who may take it, the fields it
    sets on the release, and the message sent after it (none: nobody waits for one)."""

    name: str
    leaves: Set[ReleaseState]
    to: ReleaseState
    by: Set[Taker]
    sets: type[F]
    # A ``Subjects`` attribute, published after it: its message carries the release id
    # and the canary step.
    sends: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "leaves", frozenset(self.leaves))
        object.__setattr__(self, "by", frozenset(self.by))
        _publishable(self.sends)

    @property
    def ends(self) -> bool:
        """Whether the release ends with it (its service's lock is let go)."""
        return self.to.final


# One row each, aligned to be read as a table (so written past the usual line length).
# fmt: off
# A release starts requested, or awaiting approval where its environment asks for one.
REQUEST = Start("request", to=S.REQUESTED, by={T.RELEASER, T.SYSTEM}, sends="requested", recorded=False)
REQUEST_APPROVAL = Start("request approval", to=S.AWAITING_APPROVAL, by={T.RELEASER}, sends="awaiting", recorded=True)
STARTS = (REQUEST, REQUEST_APPROVAL)

RENDER    = Transition("render",    leaves={S.REQUESTED},         to=S.RENDERED,          by={T.RENDERER},           sets=Rendered,  sends="rendered")
APPLY     = Transition("apply",     leaves={S.RENDERED},          to=S.APPLIED,           by={T.DEPLOYER},           sets=Applied,   sends="applied")
PAUSE     = Transition("pause",     leaves={S.APPLIED},           to=S.PAUSED,            by={T.TRACKER},            sets=Observed,  sends="paused")
# By a person, or by the tracker once the step's pause has run out.
PROMOTE   = Transition("promote",   leaves={S.PAUSED},            to=S.RENDERED,          by={T.RELEASER, T.TRACKER}, sets=Promoted, sends="promoted")
SUCCEED   = Transition("succeed",   leaves={S.APPLIED},           to=S.SUCCEEDED,         by={T.TRACKER},            sets=Succeeded, sends="completed")
FAIL      = Transition("fail",      leaves=MOVING,                to=S.FAILED,            by=STAGES,                 sets=Failed,    sends="failed")
APPROVE   = Transition("approve",   leaves={S.AWAITING_APPROVAL}, to=S.REQUESTED,         by={T.RELEASER},           sets=Approved,  sends="requested")
REJECT    = Transition("reject",    leaves={S.AWAITING_APPROVAL}, to=S.REJECTED,          by={T.RELEASER},           sets=Rejected)
# An approval whose message could not be sent: the release waits for approval again.
UNAPPROVE = Transition("unapprove", leaves={S.REQUESTED},         to=S.AWAITING_APPROVAL, by={T.SYSTEM},             sets=Undecided)
CANCEL    = Transition("cancel",    leaves=OPEN,                  to=S.CANCELLED,         by={T.RELEASER},           sets=Nothing,   sends="cancelled")
# A canary stopped before its full rollout (its objects are removed by the taker).
ABORT     = Transition("abort",     leaves=MOVING,                to=S.ABORTED,           by={T.RELEASER},           sets=Nothing,   sends="cancelled")
# fmt: on

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


def table() -> str:
    """The starts and the transitions as a Markdown table (final states in bold)."""
    subjects = Subjects()

    def states(of: Set[ReleaseState]) -> str:
        named = [f"**{s}**" if s.final else s.value for s in ReleaseState if s in of]
        return ", ".join(named) or "(new)"

    def row(
        name: str,
        leaves: Set[ReleaseState],
        to: ReleaseState,
        by: Set[Taker],
        sets: type[Fields],
        sends: str | None,
    ) -> str:
        said = f"`{getattr(subjects, sends)}`" if sends else ""
        takers = ", ".join(t.value for t in Taker if t in by)
        fields = ", ".join(sets.model_fields)
        return f"| `{name}` | {states(leaves)} | {states({to})} | {takers} | {fields} | {said} |"

    lines = ["| transition | from | to | taken by | sets | then publishes |", "|---" * 6 + "|"]
    lines += [row(s.name, set(), s.to, s.by, Nothing, s.sends) for s in STARTS]
    lines += [row(t.name, t.leaves, t.to, t.by, t.sets, t.sends) for t in TRANSITIONS]
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
