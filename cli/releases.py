"""``fabu release``: release a version, list and show releases (with what an approval
would do), follow one, and act on it (rollback, redeploy, promote, abort, cancel,
approve, reject)."""

import argparse
import sys
from typing import Any

from cli.api import Api, Failed
from cli.diagnosis import way_back
from cli.plans import accepted_text, at_time, watch_plan
from cli.terminal import Commands, given, print_answer, table
from cli.watch import REFUSED, watch, watching_options

RELEASE_HEADERS = [
    "ID",
    "SERVICE",
    "ENVIRONMENT",
    "VERSION",
    "STATE",
    "TOOK",
    "OPERATOR",
    "DESCRIPTION",
]


def _cells(r: dict[str, Any]) -> list[str]:
    took = f"{r['duration_s']:.1f}s" if r.get("duration_s") is not None else "-"
    return [
        r["id"],
        r["service"],
        r["environment"],
        r["version"],
        r["state"],
        took,
        r["operator"],
        r.get("description", ""),
    ]


def _releases(page: dict[str, Any]) -> str:
    if not page["items"]:
        return "no releases match"
    text = table(RELEASE_HEADERS, [_cells(r) for r in page["items"]])
    if page.get("next_cursor"):
        text += f"\nmore: add --cursor {page['next_cursor']}"
    return text


def _detail(r: dict[str, Any]) -> str:
    lines = [
        table(RELEASE_HEADERS, [_cells(r)]),
        f"kind: {r['kind']}   created: {r['created_at']}   finished: {r.get('finished_at') or '-'}",
    ]
    if r.get("reason"):
        lines.append(f"reason: {r['reason']}")
    lines += [f"  {line['at'][11:19]} {line['text']}" for line in r.get("transcript", [])]
    return "\n".join(lines)


def review_text(review: dict[str, Any]) -> list[str]:
    """``fabu release show`` of a release awaiting approval: what approving it would do
    (the version change, who asked and why, the config changes, the manifest diff)."""
    running = review.get("running")
    was = f"{running['version']} (runs now)" if running else "nothing runs there yet"
    lines = [
        "review:",
        f"  version: {was} → {review['version']}",
        f"  asked by {review['operator']} at {review['created_at'][:16].replace('T', ' ')}: "
        f"{review.get('description') or '-'}",
        f"  template: {review['template']}",
    ]
    changes = review.get("config_changes") or []
    lines.append("  config changes:" if changes else "  config changes: none")
    for c in changes:
        lines.append(f"    {c['path']}: {c['before'] or '-'} → {c['after'] or '-'}")
    diff = review.get("diff")
    if diff is None:
        lines.append(f"  diff: not available: {review.get('diff_error') or '-'}")
        return lines
    for o in diff["objects"]:
        lines.append(f"  {o['kind']}/{o['name']}: {o['action']}")
        lines += [f"    {line}" for line in o["diff"].splitlines()]
    if diff.get("prune"):
        lines.append(f"  would delete: {', '.join(diff['prune'])}")
    return lines


def _accepted(a: dict[str, Any]) -> str:
    return f"{a['id']} {a['state']}"


def _scheduled(api: Api, args: argparse.Namespace) -> int:
    """``fabu release create … --at TIME``: a plan of one item, started at its time."""
    body = {
        "environment": args.environment,
        "items": [{"service": args.service, "version": args.version}],
        "scheduled_at": args.at,
        "description": args.description,
        "override_reason": args.override_reason,
    }
    plan = api.call("POST", "/plans", json=body)
    print_answer(args, plan, lambda p: f"plan {accepted_text(p)}")
    return watch_plan(api, args, plan["id"]) if args.watch else 0


def run(api: Api, args: argparse.Namespace) -> int:
    """Do what ``fabu release <action>`` asks; the exit code."""
    if getattr(args, "timeout", None) is not None and not getattr(args, "watch", True):
        raise Failed("timeout: give --watch too (--timeout bounds how long it follows)")
    match args.action:
        case "create" if args.at:
            return _scheduled(api, args)
        case "create":
            body = {
                "service": args.service,
                "environment": args.environment,
                "version": args.version,
                "description": args.description,
                "override_reason": args.override_reason,
            }
            accepted = api.call("POST", "/releases", json=body)
            print_answer(args, accepted, _accepted)
            return watch(api, args, accepted["id"]) if args.watch else 0
        case "list":
            names = ("service", "environment", "state", "operator", "since", "until", "cursor")
            page = api.call("GET", "/releases", params={**given(args, *names), "limit": args.limit})
            print_answer(args, page, _releases)
        case "show":
            shown = api.call("GET", f"/releases/{args.id}")
            waiting = []
            if shown["state"] == "awaiting_approval":
                who = api.call("GET", f"/releases/{args.id}/approvers")
                waiting = [f"may approve it: {', '.join(who) or 'nobody (ask an admin)'}"]
                shown["review"] = api.call("GET", f"/releases/{args.id}/review")
                waiting = [*review_text(shown["review"]), *waiting]
            print_answer(
                args, shown, lambda r: "\n".join([_detail(r), *waiting, *way_back(api, r)])
            )
        case "watch":
            return watch(api, args, args.id)
        case "rollback" | "redeploy":
            body = {"description": args.description, "override_reason": args.override_reason}
            if args.action == "redeploy":
                confirm = api.call("GET", f"/releases/{args.id}/actions")["confirm"]
                if "redeploy" in confirm and not args.yes:
                    print(f"{confirm['redeploy']}; add --yes to go ahead", file=sys.stderr)
                    return REFUSED
                body["confirmed"] = args.yes
            accepted = api.call("POST", f"/releases/{args.id}/{args.action}", json=body)
            print_answer(args, accepted, _accepted)
            return watch(api, args, accepted["id"]) if args.watch else 0
        case _:
            answer = api.call("POST", f"/releases/{args.id}/{args.action}")
            print_answer(args, answer, _accepted)
    return 0


def add_commands(commands: Commands) -> None:
    """``fabu release`` and its actions."""
    release = commands.add_parser("release", help="releases").add_subparsers(
        dest="action", required=True
    )
    create = release.add_parser("create", help="release a version")
    create.add_argument("service")
    create.add_argument("environment")
    create.add_argument("version")
    create.add_argument("--description", "-d", default="")
    create.add_argument("--override-reason", default="", help="an admin's reason during a freeze")
    create.add_argument(
        "--at",
        type=at_time,
        metavar="TIME",
        help="release it then, as a plan of one item (fabu plan show ID): "
        "2026-01-31T08:00:00Z (with its zone), or +10m, +2h from now",
    )
    watching_options(create, option=True)
    listing = release.add_parser("list", help="release records, newest first, a page at a time")
    for name in ("service", "environment", "state", "operator"):
        listing.add_argument(f"--{name}")
    listing.add_argument("--since", help="created at or after (2026-01-31T00:00:00Z)")
    listing.add_argument("--until", help="created before")
    listing.add_argument("--limit", type=int, default=20, help="records per page (1-200)")
    listing.add_argument("--cursor", help="the page after the one that printed it")
    release.add_parser("show", help="one release").add_argument("id")
    followed = release.add_parser("watch", help="follow a release to its end")
    followed.add_argument("id")
    watching_options(followed, option=False)
    for name in ("rollback", "redeploy"):
        again = release.add_parser(name, help=f"{name} a release")
        again.add_argument("id")
        again.add_argument("--description", "-d", default="")
        again.add_argument("--override-reason", default="")
        if name == "redeploy":
            again.add_argument(
                "--yes",
                action="store_true",
                help="redeploy a version that failed, was aborted or was rejected",
            )
        watching_options(again, option=True)
    for name in ("promote", "abort", "cancel", "approve", "reject"):
        release.add_parser(name, help=f"{name} a release").add_argument("id")
