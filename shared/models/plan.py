"""The release plan: several services released to one environment in waves, approved
once, perhaps at a set time, and rolled back as one.

Each item becomes an ordinary release when its wave starts; the plan keeps which,
and mirrors its state. Waves run in order: a wave starts when every item of the
one before has succeeded, its items at once up to ``concurrency``. The conductor
that moves plans (``services.api.plan_conductor``) writes a plan only on the
revision it read (``Plans.save``), so two API replicas never take a step twice.
"""

from datetime import datetime
from enum import StrEnum

from pydantic import Field, computed_field

from shared.ids import ReleaseId
from shared.models.base import DnsLabel, EnvName, Model, now
from shared.models.notifications import Delivery
from shared.models.release_parts import Decision, FreezeOverride, TranscriptLine
from shared.release.machine import ReleaseState

# At most this many items in a plan, and this many of a wave's running at once.
MAX_ITEMS = 50
MAX_CONCURRENCY = 50


class PlanState(StrEnum):
    # Waiting for someone other than its operator to approve it.
    AWAITING_APPROVAL = "awaiting_approval"
    # Approved (or needing no approval), waiting for its time.
    SCHEDULED = "scheduled"
    # Its waves are being released.
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    # An item did not succeed: no later wave started (the reason names the item).
    FAILED = "failed"
    # Ended by someone: no item started after that.
    CANCELLED = "cancelled"
    REJECTED = "rejected"

    @property
    def final(self) -> bool:
        return self in (
            PlanState.SUCCEEDED,
            PlanState.FAILED,
            PlanState.CANCELLED,
            PlanState.REJECTED,
        )


class PlanKind(StrEnum):
    RELEASE = "release"
    # Built from what runs healthy in another environment.
    PROMOTION = "promotion"
    # Restores what ran before another plan, in reverse wave order.
    ROLLBACK = "rollback"


class OnFailure(StrEnum):
    # Later waves do not start; items running finish.
    STOP = "stop"
    # As ``stop``, then every service the plan changed is rolled back (a rollback plan).
    ROLLBACK = "rollback"


class ItemState(StrEnum):
    """An item's state: waiting for its wave, its release's state once started, or why it
    never started."""

    WAITING = "waiting"
    # Its release is being created.
    STARTING = "starting"
    # Its release could not be started (the note says why).
    REFUSED = "refused"
    # Not started: the plan ended first.
    SKIPPED = "skipped"


# A release's states that count as an item gone wrong.
BAD = frozenset(
    {
        ReleaseState.FAILED.value,
        ReleaseState.CANCELLED.value,
        ReleaseState.ABORTED.value,
        ReleaseState.REJECTED.value,
        ItemState.REFUSED.value,
    }
)
ENDED = BAD | {ReleaseState.SUCCEEDED.value, ItemState.SKIPPED.value}


class PlanItem(Model):
    service: DnsLabel
    version: str
    wave: int = Field(ge=0, le=MAX_ITEMS)
    # The items (services) this one waits for; they set its wave.
    after: list[str] = Field(default_factory=list)
    # The template version to render (a promotion's: what ran upstream); None: the
    # config's current one.
    template_version: int | None = None
    # A rollback plan's item: the release it restores whole.
    restore: ReleaseId | None = None
    state: str = ItemState.WAITING.value
    release_id: ReleaseId | None = None
    # When its release was asked for (a conductor that died before creating it is
    # replaced after a while, with the same release id).
    claimed_at: datetime | None = None
    # The release that ran the service before this item (what a plan rollback restores).
    before: ReleaseId | None = None
    before_version: str | None = None
    note: str = ""

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    @property
    def bad(self) -> bool:
        return self.state in BAD


class PlanEvent(Model):
    at: datetime
    state: PlanState
    actor: str


class Plan(Model):
    id: str
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=2000)
    environment: EnvName
    kind: PlanKind = PlanKind.RELEASE
    items: list[PlanItem] = Field(min_length=1, max_length=MAX_ITEMS)
    concurrency: int = Field(default=5, ge=1, le=MAX_CONCURRENCY)
    on_failure: OnFailure = OnFailure.STOP
    state: PlanState = PlanState.AWAITING_APPROVAL
    operator: str = ""
    created_at: datetime = Field(default_factory=now)
    # When to start (None: as soon as it may).
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    decision: Decision | None = None
    freeze_override: FreezeOverride | None = None
    reason: str = ""
    # A promotion: the environment its versions come from.
    source_environment: str | None = None
    # A rollback plan: the plan it undoes; on that plan, the rollback plan.
    rollback_of: str | None = None
    rolled_back_by: str | None = None
    events: list[PlanEvent] = Field(default_factory=list)
    transcript: list[TranscriptLine] = Field(default_factory=list)
    # Its start and end notifications, by ``plan_<event>/<channel>`` (kept apart, by the
    # notifier; read with the plan).
    notifications: dict[str, Delivery] = Field(default_factory=dict)
    # Every write is conditional on the revision read (``Plans.save``).
    revision: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def waves(self) -> int:
        return 1 + max(i.wave for i in self.items)

    def wave(self, n: int) -> list[PlanItem]:
        return [i for i in self.items if i.wave == n]

    def item(self, service: str) -> PlanItem | None:
        return next((i for i in self.items if i.service == service), None)

    def moved(self, state: PlanState, actor: str, *lines: str) -> None:
        """Record a move to ``state`` (and what to say of it) on this copy."""
        at = now()
        self.state = state
        self.events.append(PlanEvent(at=at, state=state, actor=actor))
        self.say(*lines)
        if state is PlanState.RUNNING and self.started_at is None:
            self.started_at = at
        if state.final:
            self.finished_at = at

    def say(self, *lines: str) -> None:
        self.transcript += [TranscriptLine(at=now(), text=line) for line in lines]


def waves_of(items: list[PlanItem]) -> dict[str, int]:
    """Each item's wave: its own, or one after the last wave of the items it names in
    ``after``, whichever is later. Raises ValueError naming an unknown or circular
    dependency."""
    by_name = {i.service: i for i in items}
    found: dict[str, int] = {}

    def wave(name: str, path: tuple[str, ...]) -> int:
        if name in found:
            return found[name]
        item = by_name[name]
        for dep in item.after:
            if dep not in by_name:
                raise ValueError(f"items.{name}.after: {dep!r} is not an item of the plan")
            if dep in path or dep == name:
                raise ValueError(f"items.{name}.after: {' → '.join((*path, dep))} is a cycle")
        level = max([item.wave, *(wave(d, (*path, d)) + 1 for d in item.after)])
        found[name] = level
        return level

    for name in by_name:
        wave(name, (name,))
    # Waves numbered from 0 with no gaps.
    used = sorted(set(found.values()))
    return {name: used.index(level) for name, level in found.items()}
