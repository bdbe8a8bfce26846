"""The release machine and its engine: every state reached from a start and left as it
should be, the README's table the machine's own, takers held to their rows, and no
state written outside the lifecycle (a check shown to catch a forbidden write)."""

import ast
from pathlib import Path

import pytest

from shared.ids import ReleaseId
from shared.messaging.messages import ReleasePromoted
from shared.messaging.subjects import Subjects
from shared.models.release import Release
from shared.release import lifecycle, machine
from shared.release.lifecycle import Actor
from shared.release.machine import FINAL, OPEN, STARTS, TRANSITIONS, Nothing, ReleaseState, Taker
from tests.support.records import record

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"


def release(state: ReleaseState) -> Release:
    return record(state=state)


def test_every_state_is_reached_from_a_start() -> None:
    reached = {start.to for start in STARTS}
    frontier = set(reached)
    while frontier:
        frontier = {t.to for t in TRANSITIONS if t.leaves & frontier} - reached
        reached |= frontier
    assert reached == set(ReleaseState)


def test_a_final_state_has_no_way_out_and_a_person_can_end_any_other() -> None:
    for state in ReleaseState:
        exits = [t for t in TRANSITIONS if state in t.leaves]
        assert bool(exits) is (state in OPEN), (state, exits)
        ended_by_a_person = [t for t in exits if t.ends and Taker.RELEASER in t.by]
        assert bool(ended_by_a_person) is (state in OPEN), state
    assert set(ReleaseState) == OPEN | FINAL


def test_every_message_a_transition_sends_is_on_a_subject() -> None:
    subjects = Subjects()
    sent = {s.name: s.sends for s in STARTS} | {t.name: t.sends for t in TRANSITIONS}
    for name, sends in sent.items():
        if sends is not None:
            assert getattr(subjects, sends).startswith("release."), name
    names = [t.name for t in TRANSITIONS] + [s.name for s in STARTS]
    assert len(names) == len(set(names))


def test_each_canary_step_is_its_own_message_to_the_de_duplication() -> None:
    rid = ReleaseId("0" * 24)
    steps = {ReleasePromoted(release_id=rid, step=step).event_id for step in (1, 2)}
    assert len(steps) == 2
    assert ReleasePromoted(release_id=rid, step=1).event_id == f"{rid}:ReleasePromoted:1"


def test_the_readme_shows_the_machine_the_code_runs() -> None:
    assert machine.table() in README.read_text()


async def test_a_taker_outside_the_transitions_row_is_refused_before_anything_is_written() -> None:
    with pytest.raises(ValueError, match="may not cancel"):
        await lifecycle.take(
            None,  # type: ignore[arg-type]  # refused before the store is touched
            None,  # type: ignore[arg-type]
            release(ReleaseState.APPLIED),
            machine.CANCEL,
            lifecycle.AS_TRACKER,
            Nothing(),
        )


async def test_a_release_not_in_a_state_the_transition_leaves_is_lost_without_a_write() -> None:
    outcome = await lifecycle.take(
        None,  # type: ignore[arg-type]  # not touched: the state already says no
        None,  # type: ignore[arg-type]
        release(ReleaseState.SUCCEEDED),
        machine.CANCEL,
        Actor.person("alice"),
        Nothing(),
    )
    assert not outcome
    assert isinstance(outcome, lifecycle.Lost)
    assert outcome.state is ReleaseState.SUCCEEDED


async def test_a_release_is_started_only_by_who_its_start_allows() -> None:
    with pytest.raises(ValueError, match="may not start a release"):
        await lifecycle.start(
            None,  # type: ignore[arg-type]  # refused before the store is touched
            None,  # type: ignore[arg-type]
            release(ReleaseState.REQUESTED),
            machine.REQUEST_APPROVAL,
            lifecycle.AS_SYSTEM,
        )


# Where a release's state may be written, and by what.
LIFECYCLE = "shared/release/lifecycle.py"
STORE = "shared/store/releases.py"
TRANSITION_WRITES = {"_write"}
# The store's functions that update the release document: the transition write, and the
# tracker's progress (lines and pods, on an applied release, never its state).
UPDATERS = {"_write", "record_progress"}
UPDATES = {"update_one", "update_many", "replace_one", "bulk_write"}


def state_writes(path: str, source: str) -> list[str]:
    """Where ``source`` (the module at ``path``) writes a release's state outside the
    lifecycle: a call of the store's transition writes, a release stored but not
    through ``lifecycle.start``, the releases collection opened, or (in the store) the
    release document updated outside its transition write."""
    tree = ast.parse(source)
    # Each node's innermost function (ast.walk visits an outer function before an inner).
    within = {
        node: function.name
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(function)
    }
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        called, on = node.func.attr, ast.unparse(node.func.value)
        where = f"{path}:{node.lineno}"
        if called in TRANSITION_WRITES and path not in (LIFECYCLE, STORE):
            found.append(f"{where} calls the store's {called}")
        elif called == "create" and on.endswith("releases") and path != LIFECYCLE:
            found.append(f"{where} stores a release without lifecycle.start")
        elif called == "collection" and "releases" in ast.unparse(node) and path != STORE:
            found.append(f"{where} opens the releases collection")
        elif (
            path == STORE
            and on == "self._releases"
            and (called in UPDATES or called.startswith("find_one_and_"))
            and within.get(node) not in UPDATERS
        ):
            found.append(f"{where} updates a release outside _write")
    return sorted(set(found))


def test_no_state_is_written_outside_the_lifecycle() -> None:
    modules = [*ROOT.glob("shared/**/*.py"), *ROOT.glob("services/**/*.py")]
    offenders = [
        offence
        for module in modules
        for offence in state_writes(module.relative_to(ROOT).as_posix(), module.read_text())
    ]
    assert not offenders, offenders


@pytest.mark.parametrize(
    ("path", "source", "said"),
    [
        (
            "services/tracker/sneaky.py",
            "async def end(ctx, release, change):\n    await ctx.releases._write(release, change)\n",
            "calls the store's _write",
        ),
        (
            "services/api/sneaky.py",
            "async def begin(api, release):\n    await api.releases.create(release)\n",
            "stores a release without lifecycle.start",
        ),
        (
            "shared/cluster/sneaky.py",
            "def grab(mongo):\n    return mongo.collection('releases')\n",
            "opens the releases collection",
        ),
        (
            STORE,
            "class Releases:\n    async def note(self, rid):\n"
            "        await self._releases.update_one({'_id': rid}, {'$set': {'state': 'failed'}})\n",
            "updates a release outside _write",
        ),
    ],
)
def test_the_check_catches_a_forbidden_write(path: str, source: str, said: str) -> None:
    [offence] = state_writes(path, source)
    assert offence.endswith(said)
    assert offence.startswith(f"{path}:")
