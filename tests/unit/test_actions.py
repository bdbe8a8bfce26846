"""The action matrix: what each state of a release opens, in the words every door uses."""

from pathlib import Path

from shared.models.release_parts import CanaryEvent
from shared.release import actions
from shared.release.actions import Action, Around
from shared.release.machine import ReleaseState

README = Path(__file__).parents[2] / "README.md"


def test_the_readme_shows_the_matrix_the_code_decides() -> None:
    assert actions.matrix() in README.read_text()


def test_an_action_that_takes_a_transition_is_open_only_in_the_states_it_leaves() -> None:
    for rule in actions.RULES:
        if rule.takes is None:
            continue
        for state in ReleaseState:
            release = actions._example(state, canary=rule.action is Action.ABORT)
            refused = actions.refusal(rule.action, release, Around(latest=release, by="bob"))
            if state not in rule.takes.leaves:
                assert refused is not None, (rule.action, state)


def test_redeploy_is_open_on_the_latest_and_on_what_runs_and_nothing_else() -> None:
    older = actions._example(ReleaseState.SUCCEEDED, canary=False)
    newer = older.model_copy(update={"id": "1" * 24, "state": ReleaseState.FAILED})
    newest = older.model_copy(update={"id": "2" * 24, "state": ReleaseState.CANCELLED})
    around = Around(latest=newest, running=newer)
    assert actions.refusal(Action.REDEPLOY, newest, around) is None
    assert actions.refusal(Action.REDEPLOY, newer, around) is None
    refused = actions.refusal(Action.REDEPLOY, older, around)
    assert refused is not None
    assert refused.status == 409
    assert "2" * 24 in refused.message
    assert "1" * 24 in refused.message


def test_rolling_back_to_what_runs_is_refused_with_what_to_do_instead() -> None:
    running = actions._example(ReleaseState.SUCCEEDED, canary=False)
    refused = actions.refusal(Action.ROLLBACK, running, Around(running=running))
    assert refused is not None
    assert "redeploy it" in refused.message
    assert actions.refusal(Action.ROLLBACK, running, Around()) is None


def test_a_requester_cannot_decide_their_own_release() -> None:
    waiting = actions._example(ReleaseState.AWAITING_APPROVAL, canary=False)
    refused = actions.refusal(Action.APPROVE, waiting, Around(by="alice"))
    assert refused is not None
    assert refused.status == 403
    assert actions.refusal(Action.APPROVE, waiting, Around(by="bob")) is None


def test_a_confirmation_names_the_version_and_how_it_ended() -> None:
    aborted = actions._example(ReleaseState.ABORTED, canary=True).model_copy(
        update={"canary": [CanaryEvent(step=0, weight=10, what="aborted")]}
    )
    said = actions.confirmation(Action.REDEPLOY, aborted)
    assert said.startswith("1 was aborted at canary step 1: redeploying releases 1 again")
    failed = aborted.model_copy(update={"state": ReleaseState.FAILED, "reason": "timed out"})
    assert actions.confirmation(Action.REDEPLOY, failed).startswith("1 failed (timed out)")
    assert actions.confirmation(Action.ROLLBACK, failed) == ""
    succeeded = aborted.model_copy(update={"state": ReleaseState.SUCCEEDED})
    assert actions.confirmation(Action.REDEPLOY, succeeded) == ""


def test_nothing_starts_a_new_release_while_one_of_the_service_there_runs() -> None:
    running = actions._example(ReleaseState.SUCCEEDED, canary=False)
    paused = actions._example(ReleaseState.PAUSED, canary=True).model_copy(update={"id": "1" * 24})
    around = Around(latest=paused, running=running)
    for action in (Action.REDEPLOY, Action.RELEASE):
        refused = actions.refusal(action, running, around)
        assert refused is not None
        assert refused.message.startswith(f"release {'1' * 24} of s to e is still paused")
    older = running.model_copy(update={"id": "0" * 23 + "1"})
    assert actions.refusal(Action.ROLLBACK, older, Around(latest=paused, running=running))
