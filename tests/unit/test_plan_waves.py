"""A plan's waves from ``after``, and the conductor's choices on a plan read from the store."""

import pytest

from services.api.plan_service import _ending, _next
from shared.models.plan import ItemState, OnFailure, Plan, PlanItem, PlanState, waves_of


def _items(**after: list[str]) -> list[PlanItem]:
    return [
        PlanItem(service=name, version="1.0.0", wave=0, after=deps) for name, deps in after.items()
    ]


def test_after_makes_waves_one_past_the_latest_dependency() -> None:
    items = _items(db=[], api=["db"], web=["api"], worker=["db"], docs=[])

    assert waves_of(items) == {"db": 0, "docs": 0, "api": 1, "worker": 1, "web": 2}


def test_a_given_wave_and_a_dependency_take_the_later_and_gaps_close() -> None:
    items = [
        PlanItem(service="a", version="1", wave=4),
        PlanItem(service="b", version="1", wave=0, after=["a"]),
        PlanItem(service="c", version="1", wave=9),
    ]

    assert waves_of(items) == {"a": 0, "b": 1, "c": 2}


@pytest.mark.parametrize(
    ("after", "said"),
    [
        ({"a": ["b"], "b": ["a"]}, "a → b → a is a cycle"),
        ({"a": ["a"]}, "a → a is a cycle"),
        ({"a": ["nope"]}, "'nope' is not an item of the plan"),
    ],
)
def test_a_cycle_or_an_unknown_dependency_is_refused_by_name(
    after: dict[str, list[str]], said: str
) -> None:
    with pytest.raises(ValueError, match=said):
        waves_of(_items(**after))


def _plan(*states: tuple[int, str], concurrency: int = 5) -> Plan:
    items = [
        PlanItem(
            service=f"s{n}",
            version="1",
            wave=wave,
            state=state,
            release_id=None if state == ItemState.WAITING else f"r{n}",
        )
        for n, (wave, state) in enumerate(states)
    ]
    return Plan(
        id="p",
        name="p",
        environment="e",
        items=items,
        concurrency=concurrency,
        state=PlanState.RUNNING,
    )


def test_the_next_wave_starts_only_when_every_item_before_succeeded() -> None:
    running = _plan((0, "succeeded"), (0, "applied"), (1, "waiting"))
    done = _plan((0, "succeeded"), (0, "succeeded"), (1, "waiting"), (1, "waiting"))

    assert _next(running) == []
    assert [i.service for i in _next(done)] == ["s2", "s3"]


def test_a_wave_runs_at_most_concurrency_items_at_once() -> None:
    plan = _plan((0, "applied"), (0, "waiting"), (0, "waiting"), (0, "waiting"), concurrency=2)

    assert [i.service for i in _next(plan)] == ["s1"]


def test_after_a_failure_nothing_starts_and_the_plan_ends_once_nothing_runs() -> None:
    still = _plan((0, "failed"), (0, "applied"), (1, "waiting"))
    over = _plan((0, "failed"), (0, "succeeded"), (1, "waiting"))
    over.on_failure = OnFailure.ROLLBACK

    assert _next(still) == []
    assert not _ending(still)
    assert still.state is PlanState.RUNNING
    assert _ending(over)
    assert over.state is PlanState.FAILED
    assert [i.state for i in over.items] == ["failed", "succeeded", "skipped"]
    assert over.reason.startswith("s0 1: failed")
    assert "rolled back" in over.transcript[-1].text


def test_a_plan_whose_items_all_succeeded_succeeds() -> None:
    plan = _plan((0, "succeeded"), (1, "succeeded"))

    assert _ending(plan)
    assert plan.state is PlanState.SUCCEEDED
    assert plan.finished_at is not None
