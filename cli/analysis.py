"""``fabu analysis``: the analysis templates that judge canary steps and blue-green
previews: list them, show one, apply one from a file (created, or changed over the
version read), delete one."""

import argparse
from typing import Any

from cli.api import Api, Failed
from cli.terminal import Commands, print_answer, read_document, table

# What an applied file may set; the rest (version, who and when, users) is Fabu's.
APPLIED = ("name", "description", "metrics")


def _templates(items: list[dict[str, Any]]) -> str:
    rows = [
        [
            t["name"],
            str(t["version"]),
            ", ".join(m["name"] for m in t["metrics"]),
            ", ".join(t.get("used_by") or []) or "-",
        ]
        for t in items
    ]
    return table(["NAME", "VERSION", "METRICS", "USED BY"], rows)


def _template(t: dict[str, Any]) -> str:
    by = t["updated_by"] or "-"
    lines = [f"{t['name']}: version {t['version']} by {by} at {t['updated_at']}"]
    if t.get("description"):
        lines.append(t["description"])
    if "used_by" in t:
        lines.append(f"used by: {', '.join(t['used_by']) or '-'}")
    for m in t["metrics"]:
        limits = f"failure limit {m['failure_limit']}, inconclusive limit {m['inconclusive_limit']}"
        lines += [
            f"metric {m['name']}: {m['count']} times, every {m['interval_s']} s, {limits}",
            f"  success: {m['success']}" + (f"; failure: {m['failure']}" if m["failure"] else ""),
            *(f"  {line}" for line in m["query"].splitlines()),
        ]
    return "\n".join(lines)


def _document(path: str) -> dict[str, Any]:
    """The template a file holds (JSON or YAML), with only what ``apply`` may set."""
    found = read_document(path, "file")
    if not isinstance(found, dict) or not isinstance(found.get("name"), str):
        raise Failed(f"name: {path} holds no analysis template (an object with a name)")
    return {k: v for k, v in found.items() if k in APPLIED}


def _apply(api: Api, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Create the template, or change it over the version read now; what was done."""
    try:
        current = api.call("GET", f"/analysis-templates/{body['name']}")
    except Failed as exc:
        if not str(exc).endswith("(404)"):
            raise
        return "created", api.call("POST", "/analysis-templates", json=body)
    changed = {**body, "version": current["version"]}
    saved = api.call("PUT", f"/analysis-templates/{body['name']}", json=changed)
    return ("unchanged" if saved["version"] == current["version"] else "changed"), saved


def run(api: Api, args: argparse.Namespace) -> int:
    """Do what ``fabu analysis <action>`` asks; the exit code."""
    match args.action:
        case "list":
            print_answer(args, api.call("GET", "/analysis-templates"), _templates)
        case "show":
            print_answer(args, api.call("GET", f"/analysis-templates/{args.name}"), _template)
        case "apply":
            done, saved = _apply(api, _document(args.file))
            print_answer(args, saved, lambda t: f"{t['name']} {done}: version {t['version']}")
        case "delete":
            gone = api.call("DELETE", f"/analysis-templates/{args.name}")
            print_answer(args, gone, lambda t: f"deleted {t['name']} (version {t['version']})")
    return 0


def add_commands(commands: Commands) -> None:
    """``fabu analysis`` and its actions."""
    analysis = commands.add_parser(
        "analysis", help="analysis templates (Prometheus checks of canary steps)"
    ).add_subparsers(dest="action", required=True)
    analysis.add_parser("list", help="analysis templates and the configs naming them")
    analysis.add_parser("show", help="one analysis template").add_argument("name")
    analysis.add_parser(
        "apply", help="create or change one from a file (config-admins)"
    ).add_argument("file", help="JSON or YAML: name, description, metrics (- for stdin)")
    analysis.add_parser(
        "delete", help="delete one no release config names (config-admins)"
    ).add_argument("name")
