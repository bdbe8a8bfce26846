"""``fabu plan``: release several services to one environment in waves, approved once,
perhaps at a set time; list and show plans, follow one to its end, decide, cancel, roll
back, and promote what runs healthy in one environment to another.

Waves are counted from 1 here (``--item web=1.2@2``, the WAVE column); the API counts
them from 0 (``-o json`` prints the API's numbers).
"""

import argparse
import json
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from cli.api import Api, Failed
from cli.terminal import Commands, given, print_answer, table
from cli.watch import GAVE_UP, REFUSED, watching_options

PLAN_FINAL = {"succeeded", "failed", "cancelled", "rejected"}
PLAN_ENDINGS = {"succeeded": 0, "failed": 1, "cancelled": 3, "rejected": 3}
PLAN_EXIT_CODES = """exit codes (when following a plan):
  0  the plan succeeded: every item did
  1  it failed (an item did not succeed; a rollback plan it started is named)
  2  bad usage, a request Fabu refused, or Fabu out of reach
  3  it was cancelled or rejected
  4  --timeout passed first: the plan goes on, nothing is cancelled"""
# How often a watch reads the plan again.
POLL_S = 1.0
# How long a failed plan's watch waits for Fabu to start the rollback it asked for.
ROLLBACK_WAIT_S = 15.0
RELATIVE = re.compile(r"^\+(\d+)([smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
PLAN_HEADERS = ["ID", "NAME", "ENVIRONMENT", "KIND", "STATE", "ITEMS", "OPERATOR", "CREATED"]
ITEM_HEADERS = ["WAVE", "SERVICE", "VERSION", "STATE", "RELEASE", "NOTE"]


# Reading the command line


def at_time(text: str, now: datetime | None = None) -> str:
    """``--at``: an ISO 8601 time with its zone (2026-01-31T08:00:00Z, …+08:00), or
    ``+N`` with ``s``, ``m``, ``h`` or ``d`` from now; as the API takes it."""
    relative = RELATIVE.match(text.strip())
    if relative:
        amount, unit = int(relative.group(1)), UNITS[relative.group(2)]
        at = (now or datetime.now(UTC)) + timedelta(**{unit: amount})
        return at.isoformat(timespec="seconds")
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: give 2026-01-31T08:00:00Z (with its zone) or +10m, +2h"
        ) from None
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no time zone: add one, e.g. 2026-01-31T08:00:00Z or +08:00"
        )
    return at.isoformat()


def item(text: str) -> dict[str, Any]:
    """``--item SERVICE=VERSION[@WAVE]`` (waves from 1) as a plan item of the API."""
    service, equals, rest = text.partition("=")
    version, at, wave = rest.partition("@")
    if not equals or not service.strip() or not version.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: give SERVICE=VERSION or SERVICE=VERSION@WAVE")
    found: dict[str, Any] = {"service": service.strip(), "version": version.strip()}
    if at:
        if not wave.isdigit() or int(wave) < 1:
            raise argparse.ArgumentTypeError(f"{text!r}: the wave is a number from 1")
        found["wave"] = int(wave) - 1
    return found


def after(text: str) -> tuple[str, list[str]]:
    """``--after SERVICE:DEP[,DEP]``: the service and the services it waits for."""
    service, colon, deps = text.partition(":")
    names = [d.strip() for d in deps.split(",") if d.strip()]
    if not colon or not service.strip() or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: give SERVICE:DEP or SERVICE:DEP,DEP")
    return service.strip(), names


def ordering(pairs: list[tuple[str, list[str]]] | None) -> dict[str, list[str]]:
    """Every ``--after`` given, by service (one service named twice waits for both lists)."""
    found: dict[str, list[str]] = {}
    for service, deps in pairs or []:
        found.setdefault(service, [])
        found[service] += [d for d in deps if d not in found[service]]
    return found


def plan_body(args: argparse.Namespace) -> dict[str, Any]:
    """``fabu plan create``'s request: the items with their waits, and the options."""
    items = [dict(i) for i in args.item]
    waits = ordering(args.after)
    names = [i["service"] for i in items]
    unknown = sorted(set(waits) - set(names))
    if unknown:
        raise Failed(f"after: {', '.join(unknown)} is not an item of the plan (add --item)")
    for one in items:
        if one["service"] in waits:
            one["after"] = waits[one["service"]]
    return {
        "environment": args.environment,
        "items": items,
        **_options(args),
    }


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The plan options given (``PlanOptions``), by their API names."""
    found = given(args, "name", "description", "concurrency", "on_failure", "override_reason")
    if args.at:
        found["scheduled_at"] = args.at
    return found


def promote_body(args: argparse.Namespace) -> dict[str, Any]:
    """``fabu plan promote``'s request (for the preview and the plan alike)."""
    body: dict[str, Any] = {"source": args.source, "environment": args.target, **_options(args)}
    if args.team:
        body["team"] = args.team
    if args.service:
        body["services"] = args.service
    waits = ordering(args.after)
    if waits:
        body["after"] = waits
    return body


# Words


def _when(text: str | None) -> str:
    return text[:16].replace("T", " ") if text else "-"


def plans_text(plans: list[dict[str, Any]], limit: int | None = None) -> str:
    if not plans:
        return "no plans match"
    rows = [
        [
            p["id"],
            p["name"],
            p["environment"],
            p["kind"],
            p["state"],
            str(len(p["items"])),
            p["operator"],
            _when(p["created_at"]),
        ]
        for p in plans
    ]
    text = table(PLAN_HEADERS, rows)
    if limit is not None and len(plans) >= limit:
        text += f"\nmore: add --cursor {plans[-1]['id']}"
    return text


def items_table(plan: dict[str, Any]) -> str:
    """The plan's items in wave order: wave (from 1), service, version, state, release, note."""
    ordered = sorted(plan["items"], key=lambda i: i["wave"])
    rows = [
        [
            str(i["wave"] + 1),
            i["service"],
            i["version"],
            i["state"],
            i.get("release_id") or "-",
            i.get("note") or "",
        ]
        for i in ordered
    ]
    return table(ITEM_HEADERS, rows)


def plan_text(plan: dict[str, Any], transcript: bool = True) -> str:
    """One plan: what, where, its state and its items as a table, then its transcript."""
    waves = plan.get("waves") or 1 + max(i["wave"] for i in plan["items"])
    lines = [
        f"plan {plan['id']} {plan['name']}: {plan['state']}",
        f"environment: {plan['environment']}   kind: {plan['kind']}   "
        f"operator: {plan['operator']}   waves: {waves}   concurrency: {plan['concurrency']}   "
        f"on failure: {plan['on_failure']}",
        f"created: {_when(plan['created_at'])}   scheduled: {_when(plan.get('scheduled_at'))}   "
        f"started: {_when(plan.get('started_at'))}   finished: {_when(plan.get('finished_at'))}",
    ]
    if plan.get("description"):
        lines.append(f"description: {plan['description']}")
    if plan.get("source_environment"):
        lines.append(f"promoted from: {plan['source_environment']}")
    decision = plan.get("decision")
    if decision:
        verb = "approved" if decision["approved"] else "rejected"
        comment = f": {decision['comment']}" if decision.get("comment") else ""
        lines.append(f"{verb} by {decision['by']}{comment}")
    if plan.get("reason"):
        lines.append(f"reason: {plan['reason']}")
    if plan.get("rollback_of"):
        lines.append(f"rolls back plan {plan['rollback_of']}")
    if plan.get("rolled_back_by"):
        lines.append(f"rolled back by plan {plan['rolled_back_by']}")
    lines.append(items_table(plan))
    if transcript:
        lines += [f"  {line['at'][11:19]} {line['text']}" for line in plan.get("transcript", [])]
    return "\n".join(lines)


def diff_summary(diff: dict[str, Any] | None, error: str = "") -> list[str]:
    """A manifest diff in a few words: each object that changes (lines added and
    removed), how many do not, what would be deleted."""
    if diff is None:
        return [f"diff: not available: {error or '-'}"]
    lines, same = [], 0
    for o in diff.get("objects", []):
        if o["action"] == "unchanged":
            same += 1
            continue
        body = o.get("diff", "").splitlines()
        added = sum(1 for line in body if line.startswith("+") and not line.startswith("+++"))
        removed = sum(1 for line in body if line.startswith("-") and not line.startswith("---"))
        lines.append(f"{o['kind']}/{o['name']}: {o['action']} (+{added} -{removed})")
    if same:
        lines.append(f"{same} object{'s' if same > 1 else ''} unchanged")
    if diff.get("prune"):
        lines.append(f"would delete: {', '.join(diff['prune'])}")
    return lines or ["no change"]


def review_text(items: list[dict[str, Any]], title: str = "review") -> list[str]:
    """What each item would change (wave order): the version now → the one asked, the
    template it renders, a summary of the manifest diff."""
    if not items:
        return [f"{title}: every item has started; each release's page says what it did"]
    lines = [f"{title}:"]
    for i in sorted(items, key=lambda i: i["wave"]):
        was = i.get("running") or "nothing runs there yet"
        template = f" (template {i['template']})" if i.get("template") else ""
        lines.append(f"  wave {i['wave'] + 1}: {i['service']}: {was} → {i['version']}{template}")
        lines += [f"    {line}" for line in diff_summary(i.get("diff"), i.get("diff_error", ""))]
    return lines


def rollback_text(preview: dict[str, Any]) -> list[str]:
    lines = review_text(preview["items"], "rolling back would restore, in this order")
    lines += [f"  left as it is: {left}" for left in preview.get("left", [])]
    return lines


def promotion_text(promotion: dict[str, Any]) -> list[str]:
    """What a promotion would release: each service's running → promoted version and its
    template version, with notes; those already the same, those skipped and why."""
    lines = [f"promote {promotion['source']} → {promotion['environment']}:"]
    for p in promotion["items"]:
        was = p.get("running") or "nothing runs there yet"
        template = (
            f"template version {p['template_version']}"
            if p.get("template_version") is not None
            else "the current template version"
        )
        note = f"; {p['note']}" if p.get("note") else ""
        lines.append(f"  {p['service']}: {was} → {p['version']} ({template}){note}")
    if not promotion["items"]:
        lines.append("  nothing to promote")
    if promotion.get("unchanged"):
        lines.append(f"  unchanged (the same there already): {', '.join(promotion['unchanged'])}")
    for name, why in (promotion.get("skipped") or {}).items():
        lines.append(f"  skipped {name}: {why}")
    return lines


def accepted_text(plan: dict[str, Any]) -> str:
    """A plan just made: its id and state, and when it starts if it waits for its time."""
    text = f"{plan['id']} {plan['state']}"
    if plan.get("scheduled_at") and plan["state"] in ("scheduled", "awaiting_approval"):
        text += f" (starts at {plan['scheduled_at']})"
    return text


# Following a plan


def changes(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    """What a watch prints between two readings of a plan: its new transcript lines and
    each item whose state changed (every item on the first reading)."""
    old_lines = len(before.get("transcript", [])) if before else 0
    lines = [f"{line['at'][11:19]} {line['text']}" for line in after["transcript"][old_lines:]]
    was = {i["service"]: i["state"] for i in before["items"]} if before else {}
    for i in sorted(after["items"], key=lambda i: i["wave"]):
        if was.get(i["service"]) == i["state"]:
            continue
        release = f" release {i['release_id']}" if i.get("release_id") else ""
        note = f": {i['note']}" if i.get("note") and i["state"] != "waiting" else ""
        lines.append(
            f"  wave {i['wave'] + 1} {i['service']} {i['version']}: {i['state']}{release}{note}"
        )
    return lines


def waiting_text(plan: dict[str, Any]) -> list[str]:
    """What a plan that has not started waits for, and the commands that decide it."""
    if plan["state"] == "awaiting_approval":
        return [
            f"plan {plan['id']} awaits approval by someone other than {plan['operator']} "
            "whose grants cover every item",
            f"  review and approve: fabu plan approve {plan['id']}",
            f"  reject:             fabu plan reject {plan['id']}",
        ]
    if plan["state"] == "scheduled":
        return [
            f"plan {plan['id']} starts at {plan['scheduled_at']}",
            f"  cancel: fabu plan cancel {plan['id']}",
        ]
    return []


def plan_exit_code(state: str) -> int:
    return PLAN_ENDINGS.get(state, PLAN_ENDINGS["failed"])


def _emit(args: argparse.Namespace, event: str, text: list[str], **data: Any) -> None:
    """A watch's news: ``text`` printed, or with ``--output json`` one JSON line."""
    if args.output == "json":
        print(json.dumps({"event": event, **data}, ensure_ascii=False), flush=True)
    elif text:
        print("\n".join(text), flush=True)


def watch_plan(api: Api, args: argparse.Namespace, plan_id: str) -> int:
    """Follow a plan to its end, printing what changes; the exit code of its ending, or
    GAVE_UP once ``--timeout`` passed first (the plan goes on)."""
    timeout: float | None = getattr(args, "timeout", None)
    deadline = None if timeout is None else time.monotonic() + timeout
    before: dict[str, Any] | None = None
    told: set[str] = set()
    while True:
        plan = api.call("GET", f"/plans/{plan_id}")
        lines = changes(before, plan)
        if lines:
            _emit(args, "changes", lines, state=plan["state"], lines=lines)
        if plan["state"] not in told:
            told.add(plan["state"])
            waiting = waiting_text(plan)
            if waiting:
                _emit(args, "waiting", waiting, state=plan["state"], lines=waiting)
        before = plan
        if plan["state"] in PLAN_FINAL:
            return _plan_ended(api, args, plan, deadline)
        if deadline is not None and time.monotonic() >= deadline:
            said = (
                f"gave up after {timeout:g} s: plan {plan_id} is still {plan['state']} "
                f"(nothing was cancelled); follow it with: fabu plan show {plan_id} --watch"
            )
            _emit(args, "gave_up", [said], state=plan["state"], timeout_s=timeout)
            return GAVE_UP
        pause = POLL_S if deadline is None else min(POLL_S, max(0.0, deadline - time.monotonic()))
        time.sleep(pause)


def _rollback_started(api: Api, plan: dict[str, Any], deadline: float | None) -> dict[str, Any]:
    """A failed plan that asked to be rolled back, once Fabu has named its rollback plan
    (waiting at most ROLLBACK_WAIT_S and the deadline)."""
    if (
        plan["state"] != "failed"
        or plan["on_failure"] != "rollback"
        or plan["kind"] == "rollback"
        or plan.get("rolled_back_by")
    ):
        return plan
    until = time.monotonic() + ROLLBACK_WAIT_S
    until = until if deadline is None else min(until, deadline)
    while time.monotonic() < until and not plan.get("rolled_back_by"):
        time.sleep(POLL_S / 2)
        plan = api.call("GET", f"/plans/{plan['id']}")
    return plan


def _plan_ended(
    api: Api, args: argparse.Namespace, plan: dict[str, Any], deadline: float | None
) -> int:
    plan = _rollback_started(api, plan, deadline)
    reason = f": {plan['reason']}" if plan.get("reason") else ""
    lines = [items_table(plan), f"plan {plan['id']} {plan['state']}{reason}"]
    if plan.get("rolled_back_by"):
        back = plan["rolled_back_by"]
        lines.append(f"rolled back by plan {back}; follow it with: fabu plan show {back} --watch")
    elif plan["state"] != "succeeded":
        lines.append(f"roll back what it changed: fabu plan rollback {plan['id']}")
    _emit(
        args,
        "end",
        lines,
        state=plan["state"],
        reason=plan.get("reason", ""),
        rolled_back_by=plan.get("rolled_back_by"),
    )
    return plan_exit_code(plan["state"])


# Asking


def confirmed(question: str, yes: bool) -> bool:
    """Whether to go ahead: ``--yes``, or the person at the terminal says so; without a
    terminal and without ``--yes``, no (a CI job must say ``--yes``)."""
    if yes:
        return True
    if not sys.stdin.isatty():
        print(f"{question}: add --yes to go ahead", file=sys.stderr)
        return False
    try:
        answer = input(f"{question}? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _show(args: argparse.Namespace, lines: list[str], value: Any) -> None:
    """Print what is about to be done, as text; in JSON to stderr, so that stdout holds
    only the answer of what is done."""
    if args.output == "json":
        print(json.dumps(value, indent=2, ensure_ascii=False), file=sys.stderr)
    else:
        print("\n".join(lines), flush=True)


def _show_plan(api: Api, args: argparse.Namespace) -> int:
    """One plan; awaiting approval, what approving it would change too."""
    plan = api.call("GET", f"/plans/{args.id}")
    extra: list[str] = []
    if plan["state"] == "awaiting_approval":
        plan["review"] = api.call("GET", f"/plans/{args.id}/review")
        extra = [*review_text(plan["review"]), *waiting_text(plan)]
    elif plan["state"] == "scheduled":
        extra = waiting_text(plan)
    print_answer(args, plan, lambda p: "\n".join([plan_text(p), *extra]))
    return 0


def _rollback(api: Api, args: argparse.Namespace) -> int:
    """The combined preview, a confirmation, then the rollback plan."""
    preview = api.call("GET", f"/plans/{args.id}/rollback/preview")
    _show(args, rollback_text(preview), preview)
    if not confirmed(f"roll plan {args.id} back", args.yes):
        return REFUSED
    body = given(args, "description", "override_reason")
    back = api.call("POST", f"/plans/{args.id}/rollback", json=body)
    print_answer(args, back, accepted_text)
    return watch_plan(api, args, back["id"]) if args.watch else 0


def _promote(api: Api, args: argparse.Namespace) -> int:
    """What promoting would release, a confirmation, then the promotion plan."""
    body = promote_body(args)
    promotion = api.call("POST", "/plans/promotion", json=body)
    _show(args, promotion_text(promotion), promotion)
    if not promotion["items"]:
        raise Failed(
            f"nothing to promote from {args.source} to {args.target}: "
            "what runs there is the same already"
        )
    if not confirmed(f"promote {args.source} → {args.target}", args.yes):
        return REFUSED
    made = api.call("POST", "/plans/promote", json=body)
    print_answer(args, made, accepted_text)
    return watch_plan(api, args, made["id"]) if args.watch else 0


def run(api: Api, args: argparse.Namespace) -> int:
    """Do what ``fabu plan <action>`` asks; the exit code."""
    if getattr(args, "timeout", None) is not None and not getattr(args, "watch", True):
        raise Failed("timeout: give --watch too (--timeout bounds how long it follows)")
    match args.action:
        case "create":
            made = api.call("POST", "/plans", json=plan_body(args))
            print_answer(args, made, accepted_text)
            return watch_plan(api, args, made["id"]) if args.watch else 0
        case "list":
            params = {**given(args, "environment", "cursor"), "limit": args.limit}
            found = api.call("GET", "/plans", params=params)
            print_answer(args, found, lambda p: plans_text(p, args.limit))
        case "show":
            return watch_plan(api, args, args.id) if args.watch else _show_plan(api, args)
        case "approve":
            review = api.call("GET", f"/plans/{args.id}/review")
            _show(args, review_text(review), review)
            body = given(args, "comment", "override_reason")
            decided = api.call("POST", f"/plans/{args.id}/approve", json=body)
            print_answer(args, decided, accepted_text)
            return watch_plan(api, args, args.id) if args.watch else 0
        case "reject":
            decided = api.call(
                "POST", f"/plans/{args.id}/reject", json=given(args, "comment", "override_reason")
            )
            print_answer(args, decided, accepted_text)
        case "cancel":
            print_answer(args, api.call("POST", f"/plans/{args.id}/cancel"), plan_text)
        case "rollback":
            return _rollback(api, args)
        case "promote":
            return _promote(api, args)
    return 0


# The parser


def plan_options(command: argparse.ArgumentParser) -> None:
    """What every new plan may be asked with (``PlanOptions``)."""
    command.add_argument("--name", help="what the plan is called (default: its items)")
    command.add_argument("--description", "-d", help="why")
    command.add_argument(
        "--concurrency", type=int, help="how many items of a wave run at once (default 5)"
    )
    command.add_argument(
        "--on-failure",
        choices=["stop", "rollback"],
        help="when an item fails: stop (later waves never start; the default), or rollback "
        "(then every service the plan changed is rolled back)",
    )
    command.add_argument(
        "--at",
        type=at_time,
        metavar="TIME",
        help="start then: 2026-01-31T08:00:00Z (with its zone), or +10m, +2h from now",
    )
    command.add_argument("--override-reason", help="an admin's reason during a freeze")


def _after_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--after",
        type=after,
        action="append",
        metavar="SERVICE:DEP[,DEP]",
        help="SERVICE starts only once every DEP has succeeded (a later wave); repeatable",
    )


def _following(command: argparse.ArgumentParser) -> None:
    watching_options(command, True, "plan", PLAN_EXIT_CODES, "cancelled/rejected")


def add_commands(commands: Commands) -> None:
    """``fabu plan`` and its actions."""
    plan = commands.add_parser(
        "plan", help="release plans: several services in waves, approved once"
    ).add_subparsers(dest="action", required=True)

    create = plan.add_parser(
        "create",
        help="release several services to one environment in waves",
        description="Items of one wave start together (up to --concurrency); a wave starts\n"
        "when every item of the one before has succeeded. Where the environment asks for\n"
        "approval, someone else approves the plan once, for every item.",
    )
    create.add_argument("--environment", "-e", required=True)
    create.add_argument(
        "--item",
        "-i",
        type=item,
        action="append",
        required=True,
        metavar="SERVICE=VERSION[@WAVE]",
        help="a service and the version to release, in wave WAVE (from 1; default 1); repeatable",
    )
    _after_option(create)
    plan_options(create)
    _following(create)

    listing = plan.add_parser("list", help="plans, newest first, a page at a time")
    listing.add_argument("--environment", "-e")
    listing.add_argument("--limit", type=int, default=20, help="plans per page (1-200)")
    listing.add_argument("--cursor", help="the page after the one that printed it")

    show = plan.add_parser(
        "show",
        help="one plan: its waves as a table (with --watch: followed to its end)",
    )
    show.add_argument("id")
    _following(show)

    approve = plan.add_parser(
        "approve",
        help="print what every item would change, then approve the plan once for all of them",
    )
    approve.add_argument("id")
    approve.add_argument("--comment", "-c")
    approve.add_argument("--override-reason", help="an admin's reason during a freeze")
    _following(approve)
    reject = plan.add_parser("reject", help="reject a plan: none of its items is released")
    reject.add_argument("id")
    reject.add_argument("--comment", "-c")
    plan.add_parser(
        "cancel", help="no item starts after this; items running go on to their own end"
    ).add_argument("id")

    back = plan.add_parser(
        "rollback",
        help="print what rolling a plan back restores, confirm, and roll back every service "
        "it changed (reverse wave order)",
    )
    back.add_argument("id")
    back.add_argument("--description", "-d")
    back.add_argument("--override-reason", help="an admin's reason during a freeze")
    back.add_argument("--yes", "-y", action="store_true", help="do not ask: go ahead")
    _following(back)

    promote = plan.add_parser(
        "promote",
        help="release exactly what runs healthy in SOURCE to TARGET, as a plan",
        description="Prints what would be promoted (each service's version running in\n"
        "TARGET → the one in SOURCE, its template version, notes; services unchanged or\n"
        "skipped), asks (unless --yes), then makes the plan.",
    )
    promote.add_argument("source")
    promote.add_argument("target")
    chosen = promote.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--team", "-t", help="every service of the team configured in both")
    chosen.add_argument("--service", "-s", action="append", help="a service to promote; repeatable")
    _after_option(promote)
    plan_options(promote)
    promote.add_argument("--yes", "-y", action="store_true", help="do not ask: go ahead")
    _following(promote)
