"""The command line's words: one-sentence errors, tables, a failure's pods, what a watch
waits for and its exit codes."""

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cli.api import Failed, said
from cli.diagnosis import _pods
from cli.terminal import table
from cli.watch import (
    EXIT_CODES,
    FINAL,
    GAVE_UP,
    REFUSED,
    GaveUp,
    _until,
    approval_text,
    canary_text,
    exit_code,
    gave_up_text,
)


def test_a_validation_error_list_becomes_one_sentence_naming_each_field() -> None:
    answer = httpx.Response(
        422,
        json={
            "detail": [
                {"loc": ["body", "version"], "msg": "String should match pattern 'x'"},
                {"loc": ["query", "limit"], "msg": "Value error, too big"},
            ]
        },
    )
    assert said(answer) == "version: String should match pattern 'x'; limit: too big (422)"
    assert said(httpx.Response(404, json={"detail": "service 'a' not found"})) == (
        "service 'a' not found (404)"
    )
    assert said(httpx.Response(502, text="")) == "Bad Gateway (502)"


def test_a_table_fits_its_longest_values_under_the_header() -> None:
    text = table(["ID", "VERSION", "NOTE"], [["1", "1.0", "a"], ["22", "1.0.0-long-name", "b"]])
    header, first, second = text.splitlines()
    assert header.index("NOTE") == first.index("a") == second.index("b")
    assert header == "ID  VERSION          NOTE"


def test_a_failing_pods_containers_show_their_state_and_last_log_lines() -> None:
    log = "\n".join(f"line {n}" for n in range(20))
    diagnosis = {
        "pods": [
            {
                "name": "web-1",
                "phase": "Running",
                "ready": "Ready=False ContainersNotReady",
                "containers": [
                    {
                        "name": "app",
                        "ready": False,
                        "restart_count": 3,
                        "state": "waiting: CrashLoopBackOff",
                        "last_state": "terminated Error (exit code 1)",
                        "log": "",
                        "previous_log": log,
                    },
                    {"name": "sidecar", "ready": True, "restart_count": 0, "state": "running"},
                ],
            }
        ],
        "pods_not_shown": 2,
    }
    lines = _pods(diagnosis)
    assert lines[:3] == [
        "pod web-1: Running (Ready=False ContainersNotReady)",
        "  container app: waiting: CrashLoopBackOff; last: terminated Error (exit code 1) "
        "(restarts 3)",
        "  last lines of previous container's log:",
    ]
    assert lines[3:-1] == [f"    | line {n}" for n in range(12, 20)]
    assert lines[-1] == "(2 more pods not shown)"
    assert not any("sidecar" in line for line in lines)


def test_a_release_awaiting_approval_names_who_may_approve_and_the_commands() -> None:
    assert approval_text("r1", ["alice", "bob"]) == [
        "release r1 awaits approval; may approve it: alice, bob",
        "  approve: fabu release approve r1",
        "  reject:  fabu release reject r1",
    ]
    assert approval_text("r1", [])[0].endswith("may approve it: nobody (ask an admin)")


def test_a_paused_canary_says_its_step_the_weight_asked_and_how_to_decide_it() -> None:
    steps: list[dict[str, Any]] = [{"weight": 10, "pause_s": None}, {"weight": 50, "pause_s": 600}]
    assert canary_text("r2", 0, steps) == [
        "release r2 paused at canary step 1 of 2, 10 % asked",
        "  promote: fabu release promote r2",
        "  abort:   fabu release abort r2",
    ]
    assert canary_text("r2", 1, steps)[0] == (
        "release r2 paused at canary step 2 of 2, 50 % asked; "
        "promoted by itself after its 600 s pause"
    )


def test_a_watch_given_up_says_the_release_goes_on_and_how_to_follow_it() -> None:
    assert gave_up_text("r3", "awaiting_approval", 5.0) == (
        "gave up after 5 s: release r3 is still awaiting_approval (nothing was cancelled); "
        "follow it with: fabu release watch r3"
    )
    assert gave_up_text("r3", "paused", 2.5).startswith("gave up after 2.5 s: ")


def test_each_ending_has_its_exit_code_and_the_help_lists_them_all() -> None:
    codes = {state: exit_code(state) for state in FINAL}
    assert codes == {"succeeded": 0, "failed": 1, "cancelled": 3, "aborted": 3, "rejected": 3}
    listed = {int(line.split()[0]) for line in EXIT_CODES.splitlines()[1:]}
    assert listed == {*codes.values(), REFUSED, GAVE_UP}
    assert len(listed) == 5


def test_following_a_silent_stream_gives_up_at_the_deadline_with_what_came_before() -> None:
    silence = threading.Event()

    def stream() -> Iterator[str]:
        yield "first"
        silence.wait(30)  # a release awaiting approval sends nothing
        yield "late"

    started = time.monotonic()
    followed = _until(stream(), started + 0.3)
    assert next(followed) == "first"
    with pytest.raises(GaveUp):
        next(followed)
    assert 0.3 <= time.monotonic() - started < 5
    silence.set()
    assert list(_until(iter(["a", "b"]), time.monotonic() + 5)) == ["a", "b"]
    with pytest.raises(Failed, match="lost"):
        list(_until(_broken(), time.monotonic() + 5))


def _broken() -> Iterator[str]:
    yield "a"
    raise Failed("lost Fabu")
