"""``fabu login``: log in with a password, make an API token, and keep it (with Fabu's
address) in the config file that later commands read."""

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

import httpx

from cli.api import Failed, said
from cli.terminal import Commands

CONFIG = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "fabu" / "config.json"


def saved() -> dict[str, str]:
    """The address and token ``fabu login`` kept (none if it was never run)."""
    try:
        kept: dict[str, str] = json.loads(CONFIG.read_text())
    except (OSError, ValueError):
        return {}
    return kept


def log_in(args: argparse.Namespace) -> int:
    """Log in with a password, make an API token, and keep it in the config file."""
    url = (args.url or os.environ.get("FABU_URL") or saved().get("url", "")).rstrip("/")
    if not url:
        raise Failed("give the Fabu URL: fabu login --url https://fabu.example.com")
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass()
    with httpx.Client(base_url=url, timeout=30) as http:
        answer = http.post("/api/v1/auth/login", json={"username": args.user, "password": password})
        if answer.status_code != 200:
            raise Failed(said(answer))
        session = {
            "Cookie": f"fabu_session={answer.cookies['fabu_session']}",
            "X-CSRF-Token": answer.json()["csrf_token"],
        }
        made = http.post("/api/v1/tokens", json={"name": "fabu cli"}, headers=session)
        if made.status_code != 201:
            raise Failed(said(made))
        http.post("/api/v1/auth/logout", headers=session)
    CONFIG.parent.mkdir(parents=True, exist_ok=True)
    CONFIG.touch(mode=0o600)
    CONFIG.write_text(json.dumps({"url": url, "token": made.json()["token"]}))
    print(f"logged in to {url} as {args.user}; token kept in {CONFIG}")
    return 0


def add_command(commands: Commands) -> None:
    """``fabu login``."""
    command = commands.add_parser("login", help="log in and keep an API token")
    command.add_argument("--user", "-u", required=True)
    command.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
