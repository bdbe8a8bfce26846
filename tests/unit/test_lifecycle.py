"""The lifecycle as data: every state reachable and left as it should be, every state
write in the lifecycle module, and takers held to their transitions."""

import re
from pathlib import Path

import pytest

from shared.models.release import Release
from shared.release import lifecycle
from shared.release.lifecycle import TRANSITIONS, Actor, Nothing, Taker
from shared.release.machine import ReleaseState
from tests.support.records import record

ROOT = Path(__file__).parents[2]


def release(state: ReleaseState) -> Release:
    return record(state=state)


def test_every_state_is_reached_and_only_final_states_have_no_way_out() -> None:
    starts = {ReleaseState.REQUESTED, ReleaseState.AWAITING_APPROVAL}
    reached = starts | {t.target for t in TRANSITIONS}
    assert reached == set(ReleaseState)
    for state in ReleaseState:
        exits = [t.name for t in TRANSITIONS if state in t.sources]
        assert bool(exits) is not state.final, (state, exits)


def test_transitions_are_named_once_and_end_exactly_when_their_target_is_final() -> None:
    names = [t.name for t in TRANSITIONS]
    assert len(names) == len(set(names))
    assert {t.name for t in TRANSITIONS if t.ends} == {
        "succeed",
        "fail",
        "reject",
        "cancel",
        "abort",
    }


def test_each_stage_moves_a_release_on_by_its_own_transitions_only() -> None:
    by_stage = {
        taker: sorted(t.name for t in TRANSITIONS if taker in t.takers)
        for taker in (Taker.RENDERER, Taker.DEPLOYER, Taker.TRACKER, Taker.RELEASER)
    }
    assert by_stage == {
        Taker.RENDERER: ["fail", "render"],
        Taker.DEPLOYER: ["apply", "fail"],
        Taker.TRACKER: ["fail", "pause", "promote", "succeed"],
        Taker.RELEASER: ["abort", "approve", "cancel", "promote", "reject"],
    }


def test_a_canary_step_goes_on_by_its_own_transition_and_subject() -> None:
    assert lifecycle.PROMOTE.subject == "promoted"
    assert lifecycle.PROMOTE.target is ReleaseState.RENDERED
    assert lifecycle.RENDER.subject == "rendered"


async def test_a_taker_outside_the_transitions_row_is_refused_before_anything_is_written() -> None:
    with pytest.raises(ValueError, match="may not cancel"):
        await lifecycle.take(
            None,  # type: ignore[arg-type]  # refused before the store is touched
            None,  # type: ignore[arg-type]
            release(ReleaseState.APPLIED),
            lifecycle.CANCEL,
            lifecycle.TRACKER,
            Nothing(),
        )


async def test_a_release_not_in_a_source_state_is_lost_without_a_write() -> None:
    outcome = await lifecycle.take(
        None,  # type: ignore[arg-type]  # not touched: the state already says no
        None,  # type: ignore[arg-type]
        release(ReleaseState.SUCCEEDED),
        lifecycle.CANCEL,
        Actor.person("alice"),
        Nothing(),
    )
    assert not outcome
    assert isinstance(outcome, lifecycle.Lost)
    assert outcome.state is ReleaseState.SUCCEEDED


def test_no_state_is_written_outside_the_lifecycle_module() -> None:
    """The store's transition writes are called from the lifecycle alone, and the release
    document is updated nowhere but in the store's transition write."""
    offenders = []
    for path in [*ROOT.glob("shared/**/*.py"), *ROOT.glob("services/**/*.py")]:
        text = path.read_text()
        relative = path.relative_to(ROOT).as_posix()
        if relative not in ("shared/release/lifecycle.py", "shared/store/releases.py") and re.search(
            r"\._(claim|claimed|write)\(", text
        ):
            offenders.append(f"{relative} calls the store's transition writes")
        if relative != "shared/store/releases.py" and re.search(
            r"collection\(\"releases\"\)\.(update|find_one_and|replace)", text
        ):
            offenders.append(f"{relative} updates the releases collection")
    store = (ROOT / "shared/store/releases.py").read_text()
    writes = re.findall(r"self\._releases\.(update_one|update_many|find_one_and_\w+)", store)
    assert writes == ["update_one"], writes  # the one in ``_write``
    assert not offenders, offenders
