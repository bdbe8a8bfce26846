"""``fabu config``: a service's release config in an environment (the template and its
values), shown, and saved as its next version."""

import argparse
import json
from typing import Any

from cli.api import Api, Failed
from cli.terminal import Commands, print_answer, read_document


def _config(c: dict[str, Any]) -> str:
    lines = [
        f"{c['service']} in {c['environment']}: version {c['version']} by {c['author'] or '-'}, "
        f"template {c['template_id']}",
        json.dumps(c["effective"], indent=2, ensure_ascii=False),
    ]
    lines += [f"does not fit: {path}: {why}" for path, why in (c.get("problems") or {}).items()]
    return "\n".join(lines)


def run(api: Api, args: argparse.Namespace) -> int:
    """Do what ``fabu config <action>`` asks; the exit code."""
    path = f"/services/{args.service}/config/{args.environment}"
    match args.action:
        case "show":
            print_answer(args, api.call("GET", path), _config)
        case "set":
            try:
                current = api.call("GET", path)
            except Failed:
                current = None
            params = current["params"] if current else {}
            if args.values:
                values = read_document(args.values, "values")
                if not isinstance(values, dict):
                    raise Failed("values: give an object of the template's parameters")
                settings = ("canary", "blue_green", "rollout_timeout_s", "auto_rollback")
                params = {**{k: v for k, v in params.items() if k in settings}, **values}
            template = args.template or (current["template_id"] if current else "")
            if not template:
                raise Failed("template_id: give --template (fabu template list names them)")
            body = {"template_id": template, "params": params, "note": args.note}
            print_answer(
                args, api.call("PUT", path, json=body), lambda c: f"saved version {c['version']}"
            )
    return 0


def add_commands(commands: Commands) -> None:
    """``fabu config`` and its actions."""
    config = commands.add_parser("config", help="release configs").add_subparsers(
        dest="action", required=True
    )
    shown = config.add_parser("show", help="a service's config in an environment")
    shown.add_argument("service")
    shown.add_argument("environment")
    put = config.add_parser("set", help="save a config's next version")
    put.add_argument("service")
    put.add_argument("environment")
    put.add_argument("--template", help="the template's id (default: the one it uses)")
    put.add_argument("--values", help="the template's parameter values (JSON or YAML file)")
    put.add_argument("--note", default="", help="why, kept with the version")
