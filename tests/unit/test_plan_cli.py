"""``fabu plan`` on the command line: items, waits, times and options as the API takes
them; plans, reviews, previews and a watch's news in words; errors naming their field."""

import argparse
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from cli.api import Failed, said
from cli.environments import updated
from cli.main import parser
from cli.plans import (
    PLAN_EXIT_CODES,
    PLAN_FINAL,
    after,
    at_time,
    changes,
    diff_summary,
    item,
    items_table,
    plan_body,
    plan_exit_code,
    plan_text,
    promote_body,
    promotion_text,
    review_text,
    rollback_text,
    waiting_text,
)
from cli.watch import GAVE_UP, REFUSED

NOW = datetime(2026, 1, 31, 8, 0, tzinfo=UTC)


def parsed(*argv: str) -> argparse.Namespace:
    return parser().parse_args(list(argv))


def test_a_time_is_iso_8601_with_its_zone_or_a_span_from_now() -> None:
    assert at_time("2026-02-01T09:30:00Z") == "2026-02-01T09:30:00+00:00"
    assert at_time("2026-02-01T09:30:00+08:00") == "2026-02-01T09:30:00+08:00"
    assert at_time("+10m", NOW) == "2026-01-31T08:10:00+00:00"
    assert at_time("+2h", NOW) == "2026-01-31T10:00:00+00:00"
    assert at_time("+1d", NOW) == "2026-02-01T08:00:00+00:00"
    assert at_time("+45s", NOW) == "2026-01-31T08:00:45+00:00"
    with pytest.raises(argparse.ArgumentTypeError, match="no time zone"):
        at_time("2026-02-01T09:30:00")
    for bad in ("tomorrow", "+10", "+10y", "-10m", "+m"):
        with pytest.raises(argparse.ArgumentTypeError, match="is not a time"):
            at_time(bad)


def test_an_item_is_service_equals_version_with_its_wave_counted_from_one() -> None:
    assert item("web=1.2.0") == {"service": "web", "version": "1.2.0"}
    assert item("web=1.2.0@1") == {"service": "web", "version": "1.2.0", "wave": 0}
    assert item("api=2.0-rc.1@3") == {"service": "api", "version": "2.0-rc.1", "wave": 2}
    for bad in ("web", "web=", "=1.0", "web=1.0@0", "web=1.0@x", "web=1.0@"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"web|SERVICE|wave"):
            item(bad)
    assert after("web:db, cache") == ("web", ["db", "cache"])
    for bad in ("web", "web:", ":db", "web:,"):
        with pytest.raises(argparse.ArgumentTypeError, match="SERVICE:DEP"):
            after(bad)


def test_plan_create_sends_the_items_their_waits_and_only_the_options_given() -> None:
    args = parsed(
        "plan",
        "create",
        "-e",
        "prod",
        "--item",
        "db=1.0",
        "--item",
        "cache=2.0@2",
        "-i",
        "web=3.0",
        "--after",
        "web:db",
        "--after",
        "web:cache,db",
        "--on-failure",
        "rollback",
        "--at",
        "2026-02-01T09:30:00Z",
        "--name",
        "checkout",
        "--watch",
    )
    assert args.watch
    assert plan_body(args) == {
        "environment": "prod",
        "items": [
            {"service": "db", "version": "1.0"},
            {"service": "cache", "version": "2.0", "wave": 1},
            {"service": "web", "version": "3.0", "after": ["db", "cache"]},
        ],
        "name": "checkout",
        "on_failure": "rollback",
        "scheduled_at": "2026-02-01T09:30:00+00:00",
    }
    plain = parsed("plan", "create", "-e", "prod", "-i", "db=1.0")
    assert plan_body(plain) == {
        "environment": "prod",
        "items": [{"service": "db", "version": "1.0"}],
    }
    stray = parsed("plan", "create", "-e", "prod", "-i", "db=1.0", "--after", "web:db")
    with pytest.raises(Failed, match="after: web is not an item of the plan"):
        plan_body(stray)


def test_bad_usage_is_refused_by_the_parser_before_any_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in (
        ["plan", "create", "-e", "prod"],  # no item
        ["plan", "create", "-e", "prod", "-i", "web"],
        ["plan", "create", "-e", "prod", "-i", "web=1", "--at", "2026-02-01T09:30:00"],
        ["plan", "create", "-e", "prod", "-i", "web=1", "--on-failure", "retry"],
        ["plan", "promote", "staging", "prod"],  # neither --team nor --service
        ["plan", "promote", "staging", "prod", "--team", "t", "--service", "web"],
        ["release", "create", "web", "prod", "1.0", "--at", "soon"],
    ):
        with pytest.raises(SystemExit) as exited:
            parsed(*argv)
        assert exited.value.code == 2
    assert "no time zone" in capsys.readouterr().err


def test_promote_names_the_services_or_the_team_and_the_order() -> None:
    args = parsed(
        "plan",
        "promote",
        "staging",
        "prod",
        "-s",
        "web",
        "-s",
        "db",
        "--after",
        "web:db",
        "--at",
        "+1h",
        "--yes",
    )
    body = promote_body(args)
    assert body.pop("scheduled_at").endswith("+00:00")
    assert body == {
        "source": "staging",
        "environment": "prod",
        "services": ["web", "db"],
        "after": {"web": ["db"]},
    }
    assert args.yes
    team = promote_body(parsed("plan", "promote", "staging", "prod", "--team", "shop"))
    assert team == {"source": "staging", "environment": "prod", "team": "shop"}


def test_a_scheduled_single_release_and_an_upstream_environment_parse() -> None:
    args = parsed("release", "create", "web", "prod", "1.0", "--at", "2026-02-01T09:30:00Z")
    assert args.at == "2026-02-01T09:30:00+00:00"
    assert parsed("release", "create", "web", "prod", "1.0").at is None
    made = parsed(
        "environment", "create", "prod", "--namespace", "p", "--requires-success-in", "staging"
    )
    assert made.requires_success_in == "staging"


def test_updating_an_environment_changes_only_what_is_given() -> None:
    current: dict[str, Any] = {
        "name": "prod",
        "namespace": "p",
        "kubeconfig": "k",
        "in_cluster": False,
        "approval_required": True,
        "requires_success_in": None,
        "pod_security": "baseline",
    }
    args = parsed("environment", "update", "prod", "--requires-success-in", "staging")
    assert updated(current, args) == {**current, "requires_success_in": "staging"}
    args = parsed("environment", "update", "prod", "--no-approval-required", "--in-cluster")
    assert updated(current, args) == {
        **current,
        "approval_required": False,
        "in_cluster": True,
        "kubeconfig": None,
    }
    staged = {**current, "requires_success_in": "staging"}
    cleared = updated(staged, parsed("environment", "update", "prod", "--requires-success-in", "-"))
    assert cleared["requires_success_in"] is None


def plan(**fields: Any) -> dict[str, Any]:
    items = [
        {"service": "web", "version": "3.0", "wave": 1, "state": "waiting", "release_id": None},
        {"service": "db", "version": "1.0", "wave": 0, "state": "deploying", "release_id": "r1"},
    ]
    return {
        "id": "p1",
        "name": "checkout",
        "environment": "prod",
        "kind": "release",
        "state": "running",
        "operator": "alice",
        "concurrency": 5,
        "on_failure": "stop",
        "created_at": "2026-01-31T08:00:00Z",
        "items": items,
        "transcript": [{"at": "2026-01-31T08:00:01Z", "text": "started by alice"}],
        **fields,
    }


def test_a_plans_waves_are_a_table_in_wave_order_counted_from_one() -> None:
    text = items_table(plan())
    header, first, second = text.splitlines()
    assert header.split() == ["WAVE", "SERVICE", "VERSION", "STATE", "RELEASE", "NOTE"]
    assert first.split() == ["1", "db", "1.0", "deploying", "r1"]
    assert second.split() == ["2", "web", "3.0", "waiting", "-"]
    assert header.index("STATE") == first.index("deploying") == second.index("waiting")
    shown = plan_text(plan(state="failed", reason="db 1.0: failed: rollout not finished"))
    assert shown.splitlines()[0] == "plan p1 checkout: failed"
    assert "reason: db 1.0: failed: rollout not finished" in shown
    assert "  08:00:01 started by alice" in shown


def test_a_watch_prints_new_lines_and_items_whose_state_changed() -> None:
    first = plan()
    assert changes(None, first) == [
        "08:00:01 started by alice",
        "  wave 1 db 1.0: deploying release r1",
        "  wave 2 web 3.0: waiting",
    ]
    assert changes(first, first) == []
    later = plan()
    later["items"][1]["state"] = "succeeded"
    later["items"][0].update(state="failed", release_id="r2", note="rollout not finished")
    later["transcript"].append({"at": "2026-01-31T08:01:00Z", "text": "wave 2 started"})
    assert changes(first, later) == [
        "08:01:00 wave 2 started",
        "  wave 1 db 1.0: succeeded release r1",
        "  wave 2 web 3.0: failed release r2: rollout not finished",
    ]


def test_a_plan_that_waits_says_for_what_and_each_ending_has_its_exit_code() -> None:
    assert waiting_text(plan(state="awaiting_approval"))[1:] == [
        "  review and approve: fabu plan approve p1",
        "  reject:             fabu plan reject p1",
    ]
    scheduled = waiting_text(plan(state="scheduled", scheduled_at="2026-02-01T09:30:00Z"))
    assert scheduled[0] == "plan p1 starts at 2026-02-01T09:30:00Z"
    assert waiting_text(plan()) == []
    codes = {state: plan_exit_code(state) for state in PLAN_FINAL}
    assert codes == {"succeeded": 0, "failed": 1, "cancelled": 3, "rejected": 3}
    listed = {int(line.split()[0]) for line in PLAN_EXIT_CODES.splitlines()[1:]}
    assert listed == {*codes.values(), REFUSED, GAVE_UP}
    helped = parser().parse_args(["plan", "show", "p1"])
    assert helped.timeout is None
    assert not helped.watch


DIFF = {
    "namespace": "p",
    "changed": True,
    "objects": [
        {
            "kind": "Deployment",
            "name": "web",
            "action": "update",
            "diff": "--- live\n+++ new\n-image: web:1\n+image: web:2\n+replicas: 3\n",
        },
        {"kind": "Service", "name": "web", "action": "unchanged", "diff": ""},
    ],
    "prune": ["ConfigMap/old"],
}


def test_a_review_says_each_items_version_change_and_a_diff_summary() -> None:
    assert diff_summary(DIFF) == [
        "Deployment/web: update (+2 -1)",
        "1 object unchanged",
        "would delete: ConfigMap/old",
    ]
    assert diff_summary(None, "no config") == ["diff: not available: no config"]
    items = [
        {"service": "web", "wave": 1, "version": "2", "running": "1", "template": "t1 version 3"},
        {"service": "db", "wave": 0, "version": "5", "running": None, "template": ""},
    ]
    items[0]["diff"] = DIFF
    items[1].update(diff=None, diff_error="db: no release config in prod")
    assert review_text(items) == [
        "review:",
        "  wave 1: db: nothing runs there yet → 5",
        "    diff: not available: db: no release config in prod",
        "  wave 2: web: 1 → 2 (template t1 version 3)",
        "    Deployment/web: update (+2 -1)",
        "    1 object unchanged",
        "    would delete: ConfigMap/old",
    ]
    back = rollback_text({"items": items[:1], "left": ["db: nothing ran there before the plan"]})
    assert back[0] == "rolling back would restore, in this order:"
    assert back[-1] == "  left as it is: db: nothing ran there before the plan"


def test_a_promotion_says_each_change_its_template_version_and_what_it_leaves() -> None:
    promotion = {
        "source": "staging",
        "environment": "prod",
        "items": [
            {"service": "web", "version": "2", "template_version": 4, "running": "1"},
            {
                "service": "db",
                "version": "5",
                "template_version": None,
                "running": None,
                "note": "prod renders template b, not a: its current version is used",
            },
        ],
        "unchanged": ["cache"],
        "skipped": {"queue": "nothing runs in staging"},
    }
    assert promotion_text(promotion) == [
        "promote staging → prod:",
        "  web: 1 → 2 (template version 4)",
        "  db: nothing runs there yet → 5 (the current template version); "
        "prod renders template b, not a: its current version is used",
        "  unchanged (the same there already): cache",
        "  skipped queue: nothing runs in staging",
    ]


def test_an_error_names_the_field_it_is_about_when_its_sentence_does_not() -> None:
    answer = httpx.Response(404, json={"detail": "environment 'x' not found", "field": "source"})
    assert said(answer) == "source: environment 'x' not found (404)"
    answer = httpx.Response(
        422,
        json={
            "detail": "scheduled_at: 2026-01-01T00:00:00+00:00 has passed",
            "field": "scheduled_at",
        },
    )
    assert said(answer) == "scheduled_at: 2026-01-01T00:00:00+00:00 has passed (422)"
    answer = httpx.Response(
        404, json={"detail": "environment 'x' not found", "field": "environment"}
    )
    assert said(answer) == "environment 'x' not found (404)"
