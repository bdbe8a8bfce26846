"""``fabu notifications``: where a release's results go: a service's own channels in an
environment, or the environment's default; shown, replaced, or (a service's) reset."""

import argparse
from typing import Any

from cli.api import Api, Failed
from cli.terminal import Commands, print_answer, read_document, table


def _channels(items: list[dict[str, Any]]) -> str:
    rows = [
        [
            c["type"],
            ", ".join(c.get("recipients") or []) or c.get("url") or "-",
            ", ".join(c.get("events") or []),
            c.get("language") or "en",
        ]
        for c in items
    ]
    return table(["TYPE", "TO", "EVENTS", "LANGUAGE"], rows) if rows else "no notifications"


def run(api: Api, args: argparse.Namespace) -> int:
    """Do what ``fabu notifications <action>`` asks; the exit code."""
    if args.service:
        path = f"/services/{args.service}/notifications/{args.environment}"
    else:
        path = f"/environments/{args.environment}/notifications"
    match args.action:
        case "show":
            print_answer(args, api.call("GET", path), _channels)
        case "set":
            channels = read_document(args.file, "channels")
            if not isinstance(channels, list):
                raise Failed("channels: give a list of channels ({type, url|recipients, …})")
            print_answer(args, api.call("PUT", path, json=channels), _channels)
        case "reset":
            if not args.service:
                raise Failed("service: give --service: only a service's own channels reset")
            print_answer(args, api.call("DELETE", path), _channels)
    return 0


def add_commands(commands: Commands) -> None:
    """``fabu notifications`` and its actions."""
    notify = commands.add_parser(
        "notifications", help="where results go: a service's channels, or an environment's default"
    ).add_subparsers(dest="action", required=True)
    for name, what in (
        ("show", "the channels in force"),
        ("set", "replace the channels (a JSON or YAML list; [] for none)"),
        ("reset", "drop a service's own channels: the environment's default applies"),
    ):
        one = notify.add_parser(name, help=what)
        one.add_argument("environment")
        one.add_argument("--service", "-s", help="a service's (default: the environment's)")
        if name == "set":
            one.add_argument("--file", "-f", required=True, help="the list of channels (- stdin)")
