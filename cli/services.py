"""``fabu service``: list, add, change, archive and restore services, and what runs of
one in each environment (``status``)."""

import argparse
import json
from typing import Any

from cli.api import Api
from cli.terminal import Commands, given, print_answer, table


def _services(items: list[dict[str, Any]]) -> str:
    rows = [
        [
            s["name"],
            s["team"],
            s["image_repository"],
            s.get("gitlab_project") or "-",
            "archived" if s.get("archived_at") else "",
        ]
        for s in items
    ]
    return table(["NAME", "TEAM", "IMAGE REPOSITORY", "GITLAB PROJECT", ""], rows)


def _state_text(answer: dict[str, Any]) -> str:
    """``fabu service status``: one block per environment."""
    lines = []
    for s in answer["environments"]:
        release = s.get("release") or {}
        head = (
            f"{s['environment']:<12} {s['health']:<11} {s['sync']:<9} {release.get('version', '-')}"
        )
        if release:
            head += f" (release {release['id']}, {release['state']})"
        lines.append(head)
        running = ", ".join(f"{i['image']} x{i['pods']}" for i in s["images"]) or "-"
        lines.append(f"  running: {running}")
        for w in s["workloads"]:
            why = f"  {w['message']}" if w["message"] else ""
            lines.append(
                f"  {w['kind'] + '/' + w['name']:<36} {w['health']:<11} "
                f"ready {w['ready']}/{w['desired']} updated {w['updated']}{why}"
            )
        for d in s["drift"]:
            lines.append(
                f"  drift: {d['object']} {d['field'] or '(missing)'}: live "
                f"{json.dumps(d['live'])}, release {json.dumps(d['release'])}"
            )
        good = s.get("last_good")
        if good and good["id"] != release.get("id"):
            lines.append(
                f"  last good: {good['version']} (release {good['id']}): "
                f"fabu release rollback {good['id']}"
            )
        if s.get("error"):
            lines.append(f"  not observed: {s['error']}")
    return "\n".join(lines) or f"{answer['service']} has not been released anywhere yet"


def run(api: Api, args: argparse.Namespace) -> int:
    """Do what ``fabu service <action>`` asks; the exit code."""
    match args.action:
        case "list":
            found = api.call("GET", "/services", params={"archived": args.archived})
            print_answer(args, found, _services)
        case "create":
            body = {"name": args.name, **given(args, "team", "image_repository", "gitlab_project")}
            print_answer(args, api.call("POST", "/services", json=body), lambda s: _services([s]))
        case "update":
            current = api.call("GET", f"/services/{args.name}")
            current.pop("archived_at", None)
            body = {**current, **given(args, "team", "image_repository", "gitlab_project")}
            answer = api.call("PUT", f"/services/{args.name}", json=body)
            print_answer(args, answer, lambda s: _services([s]))
        case "archive" | "restore":
            answer = api.call("POST", f"/services/{args.name}/{args.action}")
            print_answer(args, answer, lambda s: _services([s]))
        case "status":
            query = {"environment": args.environment} if args.environment else {}
            answer = api.call("GET", f"/services/{args.name}/state", params=query)
            print_answer(args, answer, _state_text)
    return 0


def add_commands(commands: Commands) -> None:
    """``fabu service`` and its actions."""
    service = commands.add_parser("service", help="services").add_subparsers(
        dest="action", required=True
    )
    service.add_parser("list", help="services").add_argument(
        "--archived", action="store_true", help="the archived ones too"
    )
    for name, what in (("create", "add a service"), ("update", "change a service's settings")):
        one = service.add_parser(name, help=what)
        one.add_argument("name")
        one.add_argument("--team", required=name == "create")
        one.add_argument("--image-repository", required=name == "create")
        one.add_argument("--gitlab-project", help="the project whose pipelines build its image")
    service.add_parser(
        "archive", help="retire a service: its history stays; it is released no more"
    ).add_argument("name")
    service.add_parser("restore", help="bring an archived service back").add_argument("name")
    status = service.add_parser(
        "status", help="what runs: health, drift and the last good release, per environment"
    )
    status.add_argument("name")
    status.add_argument("--environment", "-e", default="")
