"""``fabu``: drive Fabu from a terminal or a CI job.

Where it talks to: ``--url`` or ``FABU_URL``; who it is: ``--token`` or
``FABU_TOKEN`` (an API token), else the token ``fabu login`` saved in
``~/.config/fabu/config.json``. ``--output json`` prints the API's JSON for
scripts. ``fabu release watch`` (and ``create``, ``rollback``, ``redeploy`` with
``--watch``) follow a release to its end, say what it waits for (an approval, a
paused canary step) with the commands that decide it, and exit with a code per
ending (``cli.watch.EXIT_CODES``), so a CI job can wait on it; ``fabu plan show
--watch`` does the same for a release plan (``cli.plans.PLAN_EXIT_CODES``).

This module is the entry point: the parser of every command group and the dispatch to
the group's module (``cli/releases.py``, ``cli/plans.py``, ``cli/services.py``…).
"""

import argparse
import os
import sys

import shtab

from cli import (
    analysis,
    configs,
    environments,
    images,
    login,
    notifications,
    plans,
    releases,
    services,
    templates,
)
from cli.api import Api, Failed
from cli.watch import REFUSED


def run(args: argparse.Namespace) -> int:
    """Do what the command line asks; the exit code."""
    if args.command == "login":
        return login.log_in(args)
    if args.command == "completion":
        print(shtab.complete(parser(), shell=args.shell))
        return 0
    saved = login.saved()
    api = Api(
        args.url or os.environ.get("FABU_URL") or saved.get("url", ""),
        args.token or os.environ.get("FABU_TOKEN") or saved.get("token", ""),
    )
    match args.command:
        case "release":
            return releases.run(api, args)
        case "plan":
            return plans.run(api, args)
        case "service":
            return services.run(api, args)
        case "environment":
            return environments.run(api, args)
        case "template":
            return templates.run(api, args)
        case "config":
            return configs.run(api, args)
        case "analysis":
            return analysis.run(api, args)
        case "notifications":
            return notifications.run(api, args)
        case "image":
            return images.run(api, args)
    return 0


def parser() -> argparse.ArgumentParser:
    """``fabu``'s options and every group's commands, in the order its help lists them."""
    top = argparse.ArgumentParser(prog="fabu", description=__doc__.splitlines()[0])
    top.add_argument("--url", help="Fabu's address (default: FABU_URL, else the saved one)")
    top.add_argument("--token", help="an API token (default: FABU_TOKEN, else the saved one)")
    top.add_argument("--output", "-o", choices=["text", "json"], default="text")
    commands = top.add_subparsers(dest="command", required=True)
    login.add_command(commands)
    releases.add_commands(commands)
    plans.add_commands(commands)
    images.add_commands(commands)
    services.add_commands(commands)
    environments.add_commands(commands)
    templates.add_commands(commands)
    configs.add_commands(commands)
    analysis.add_commands(commands)
    notifications.add_commands(commands)
    completion = commands.add_parser(
        "completion", help='a shell completion script: eval "$(fabu completion bash)"'
    )
    completion.add_argument("shell", choices=["bash", "zsh", "tcsh"])
    return top


def main(argv: list[str] | None = None) -> int:
    """``fabu`` with ``argv`` (default: the process's arguments); its exit code."""
    args = parser().parse_args(argv)
    try:
        return run(args)
    except Failed as exc:
        print(f"fabu: {exc}", file=sys.stderr)
        return REFUSED
