"""The command line's words: one-sentence errors, tables and a failure's pods."""

import httpx

from cli.main import _pods, said, table


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
