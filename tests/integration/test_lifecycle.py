"""The lifecycle on the local stack's MongoDB-protocol server (SecantusDB): racing
transitions, a stale read, a start."""

import asyncio
import json
from collections import Counter

import pytest
from nats.aio.msg import Msg

from devstack.system import FabuSystem
from shared.errors import Unavailable
from shared.messaging.messages import Event
from shared.models.base import now
from shared.models.release import Release, StateChange
from shared.models.release_parts import TranscriptLine
from shared.release import lifecycle
from shared.release.lifecycle import AS_TRACKER, Actor, Lost, Moved
from shared.release.machine import (
    CANCEL,
    REQUEST,
    REQUEST_APPROVAL,
    SUCCEED,
    Nothing,
    ReleaseState,
    Succeeded,
)
from shared.worker import Context
from tests.conftest import unique
from tests.support.records import record
from tests.support.stages import stage
from tests.support.wait import eventually

PAIRS = 100


def applied(service: str) -> Release:
    """A release the tracker follows: requested, rendered and applied."""
    at = now()
    states = (ReleaseState.REQUESTED, ReleaseState.RENDERED, ReleaseState.APPLIED)
    events = [StateChange(at=at, state=s, actor="test") for s in states]
    return record(service, "race", state=ReleaseState.APPLIED, events=events)


async def heard(ctx: Context, *subjects: str) -> dict[str, list[str]]:
    """Every release id published on ``subjects`` from now on, by subject."""
    published: dict[str, list[str]] = {s: [] for s in subjects}

    async def keep(msg: Msg) -> None:
        published[msg.subject].append(json.loads(msg.data)["release_id"])

    for subject in subjects:
        ctx.owned.push_async_callback(await ctx.bus.subscribe(subject, keep))
    return published


async def test_of_two_racing_transitions_exactly_one_wins_and_no_line_is_lost(
    fabu: FabuSystem,
) -> None:
    """A person's cancel against the tracker's success, 100 times: one winner each time,
    the loser told which state won, every line the tracker saw kept, one message."""
    async with stage(fabu) as ctx:
        subjects = ctx.bus.subjects
        published = await heard(ctx, subjects.cancelled, subjects.completed)
        releases = [applied(unique("race")) for _ in range(PAIRS)]
        for release in releases:
            await ctx.releases.create(release)

        async def cancel(release: Release) -> lifecycle.Outcome:
            line = TranscriptLine(at=now(), text="cancelled by alice")
            return await lifecycle.take(
                ctx.releases, ctx.bus, release, CANCEL, Actor.person("alice"), Nothing(), [line]
            )

        async def succeed(release: Release) -> lifecycle.Outcome:
            # As the tracker does: what it saw is kept whoever ends the release.
            seen = TranscriptLine(at=now(), text=f"deployment {release.service} rolled out")
            fields = Succeeded(replica_sets=[], pods=[], revision="2")
            return await lifecycle.take(
                ctx.releases, ctx.bus, release, SUCCEED, AS_TRACKER, fields, kept=[seen]
            )

        outcomes = await asyncio.gather(*(asyncio.gather(cancel(r), succeed(r)) for r in releases))
        winners: Counter[str] = Counter()
        for release, (by_person, by_tracker) in zip(releases, outcomes, strict=True):
            won = [o for o in (by_person, by_tracker) if isinstance(o, Moved)]
            lost = [o for o in (by_person, by_tracker) if isinstance(o, Lost)]
            assert len(won) == 1, (release.id, by_person, by_tracker)
            assert len(lost) == 1
            state = won[0].release.state
            winners[state] += 1
            assert lost[0].state is state  # the loser is told which state won
            stored = await ctx.releases.get(release.id)
            assert stored is not None
            assert stored.state is state
            assert [e.state for e in stored.events][-1] is state
            assert len(stored.events) == 4  # one transition was written, not two
            texts = [line.text for line in stored.transcript]
            assert f"deployment {release.service} rolled out" in texts
            assert ("cancelled by alice" in texts) is (state is ReleaseState.CANCELLED)
            # The release ended: its service's lock is free for the next one.
            await ctx.releases.create(applied(release.service).model_copy(update={"state": state}))

        ours = {r.id for r in releases}

        async def one_message_each() -> bool:
            # The session's system shares these subjects: its own releases are not ours.
            ids = published[subjects.cancelled] + published[subjects.completed]
            return sorted(i for i in ids if i in ours) == sorted(ours)

        await eventually(one_message_each, "one message per release, the winner's")
        assert sum(winners.values()) == PAIRS


async def test_a_transition_taken_from_a_stale_read_loses_to_the_one_written(
    fabu: FabuSystem,
) -> None:
    """The tracker's success written first: a cancel taken from the same earlier read of the
    release loses, told who won, and writes nothing of its own (not even its line)."""
    async with stage(fabu) as ctx:
        release = applied(unique("stale"))
        await ctx.releases.create(release)
        fields = Succeeded(replica_sets=[], pods=[], revision="2")
        done = TranscriptLine(at=now(), text="rolled out")
        won = await lifecycle.take(
            ctx.releases, ctx.bus, release, SUCCEED, AS_TRACKER, fields, [done]
        )
        assert isinstance(won, Moved)

        asked = TranscriptLine(at=now(), text="cancelled by alice")
        outcome = await lifecycle.take(
            ctx.releases, ctx.bus, release, CANCEL, Actor.person("alice"), Nothing(), [asked]
        )
        assert isinstance(outcome, Lost)
        assert (outcome.state, outcome.by) == (ReleaseState.SUCCEEDED, "tracker")
        stored = await ctx.releases.get(release.id)
        assert stored is not None
        assert (stored.state, stored.revision) == (ReleaseState.SUCCEEDED, "2")
        assert [line.text for line in stored.transcript] == ["rolled out"]
        assert [e.state for e in stored.events][-1] is ReleaseState.SUCCEEDED


async def test_a_release_whose_message_cannot_be_sent_is_not_left_started(
    fabu: FabuSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``lifecycle.start`` with NATS unreachable: 503, the release discarded and its
    service's lock free; started again, it is stored in its start's state and announced."""
    async with stage(fabu) as ctx:
        published = await heard(ctx, ctx.bus.subjects.awaiting)
        fresh = record(unique("start"), "start")

        async def unreachable(subject: str, event: Event) -> None:
            raise ConnectionError("NATS is unreachable")

        with monkeypatch.context() as patched:
            patched.setattr(ctx.bus, "publish", unreachable)
            with pytest.raises(Unavailable, match="nothing was released"):
                await lifecycle.start(ctx.releases, ctx.bus, fresh, REQUEST, Actor.person("al"))
        assert await ctx.releases.get(fresh.id) is None

        started = await lifecycle.start(
            ctx.releases, ctx.bus, fresh, REQUEST_APPROVAL, Actor.person("al")
        )
        stored = await ctx.releases.get(fresh.id)
        assert stored is not None
        assert (stored.state, stored.operator) == (ReleaseState.AWAITING_APPROVAL, "al")
        assert [(e.state, e.actor) for e in stored.events] == [(stored.state, "al")]
        assert started.state is stored.state

        async def announced() -> bool:
            return fresh.id in published[ctx.bus.subjects.awaiting]

        await eventually(announced, "release.awaiting of the started release")
