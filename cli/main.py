"""``fabu``: drive Fabu from a terminal or a CI job.

Where it talks to: ``--url`` or ``FABU_URL``; who it is: ``--token`` or
``FABU_TOKEN`` (an API token), else the token ``fabu login`` saved in
``~/.config/fabu/config.json``. ``--output json`` prints the API's JSON for
scripts. ``fabu release watch`` (and ``create --watch``) follow a release to its
end and exit 0 when it succeeded, 1 when it failed, was cancelled, rejected or
aborted, so a CI job can wait on it; 2 means the command itself failed.
"""

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

CONFIG = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "fabu" / "config.json"
SUCCEEDED = "succeeded"
FINAL = {"succeeded", "failed", "cancelled", "rejected", "aborted"}


class Failed(Exception):
    """The command could not do what was asked (exit 2), with the reason."""


def _saved() -> dict[str, str]:
    try:
        saved: dict[str, str] = json.loads(CONFIG.read_text())
    except (OSError, ValueError):
        return {}
    return saved


class Api:
    def __init__(self, url: str, token: str) -> None:
        if not url:
            raise Failed("no Fabu URL: pass --url, set FABU_URL, or run fabu login")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url.rstrip("/") + "/api/v1", headers=headers, timeout=60)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            answer = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Failed(f"cannot reach Fabu: {exc}") from exc
        if answer.status_code >= 400:
            try:
                detail = answer.json().get("detail", answer.text)
            except ValueError:
                detail = answer.text
            raise Failed(f"{answer.status_code}: {detail}")
        return answer.json() if answer.content else None

    def events(self, release_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """The release's Server-Sent Events: (event, data) until ``end``."""
        with self.http.stream("GET", f"/releases/{release_id}/events", timeout=None) as answer:
            if answer.status_code >= 400:
                answer.read()
                raise Failed(f"{answer.status_code}: {answer.text}")
            event = ""
            for line in answer.iter_lines():
                if line.startswith("event:"):
                    event = line.partition(":")[2].strip()
                elif line.startswith("data:"):
                    yield event, json.loads(line.partition(":")[2])


def _print(args: argparse.Namespace, value: Any, text: Callable[[Any], str]) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False) if args.output == "json" else text(value))


def _row(r: dict[str, Any]) -> str:
    took = f"{r['duration_s']:.1f}s" if r.get("duration_s") is not None else "-"
    return (
        f"{r['id']}  {r['service']:<20} {r['environment']:<12} {r['version']:<16} "
        f"{r['state']:<17} {took:>7}  {r['operator']}  {r.get('description', '')}"
    )


def _detail(r: dict[str, Any]) -> str:
    lines = [
        _row(r),
        f"kind: {r['kind']}   created: {r['created_at']}   finished: {r.get('finished_at') or '-'}",
    ]
    if r.get("reason"):
        lines.append(f"reason: {r['reason']}")
    lines += [f"  {line['at'][11:19]} {line['text']}" for line in r.get("transcript", [])]
    return "\n".join(lines)


def _way_back(api: Api, r: dict[str, Any]) -> list[str]:
    """For a release that ended without succeeding: what went wrong, in one sentence,
    and how to get back to the last good release."""
    if r["state"] not in ("failed", "cancelled", "aborted"):
        return []
    lines = []
    cause = (r.get("diagnosis") or {}).get("summary") or ""
    if cause and cause != r.get("reason"):
        lines.append(f"cause: {cause}")
    if r.get("rolled_back_by"):
        return [*lines, f"Fabu is rolling back automatically: release {r['rolled_back_by']}"]
    query = {"service": r["service"], "environment": r["environment"], "state": SUCCEEDED}
    good = api.call("GET", "/releases", params={**query, "limit": 1})["items"]
    if good and good[0]["id"] < r["id"]:
        lines.append(
            f"last good: {good[0]['version']} (release {good[0]['id']}); roll back to it with: "
            f"fabu release rollback {good[0]['id']}"
        )
    return lines


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


def _accepted(a: dict[str, Any]) -> str:
    return f"{a['id']} {a['state']}"


def watch(api: Api, args: argparse.Namespace, release_id: str) -> int:
    """Follow a release to its end; 0 when it succeeded, else 1."""
    end: dict[str, Any] = {}
    for event, data in api.events(release_id):
        if args.output == "json":
            print(json.dumps({"event": event, **data}, ensure_ascii=False), flush=True)
        elif event == "line":
            print(f"{data['at'][11:19]} {data['text']}", flush=True)
        elif event == "state":
            print(f"{data['at'][11:19]} [{data['state']}] by {data['actor']}", flush=True)
        if event == "end":
            end = data
    if args.output != "json":
        reason = f": {end['reason']}" if end.get("reason") else ""
        print(f"release {release_id} {end.get('state', 'ended')}{reason}")
        if end.get("state") != SUCCEEDED:
            for line in _way_back(api, api.call("GET", f"/releases/{release_id}")):
                print(line)
    return 0 if end.get("state") == SUCCEEDED else 1


def run(args: argparse.Namespace) -> int:
    if args.command == "login":
        return login(args)
    saved = _saved()
    api = Api(
        args.url or os.environ.get("FABU_URL") or saved.get("url", ""),
        args.token or os.environ.get("FABU_TOKEN") or saved.get("token", ""),
    )
    match args.command, getattr(args, "action", None):
        case "release", "create":
            body = {
                "service": args.service,
                "environment": args.environment,
                "version": args.version,
                "description": args.description,
                "override_reason": args.override_reason,
            }
            accepted = api.call("POST", "/releases", json=body)
            _print(args, accepted, _accepted)
            return watch(api, args, accepted["id"]) if args.watch else 0
        case "release", "list":
            params = {
                k: v
                for k, v in (
                    ("service", args.service),
                    ("environment", args.environment),
                    ("state", args.state),
                    ("operator", args.operator),
                    ("limit", args.limit),
                )
                if v
            }
            page = api.call("GET", "/releases", params=params)
            _print(args, page, lambda p: "\n".join(_row(r) for r in p["items"]))
        case "release", "show":
            shown = api.call("GET", f"/releases/{args.id}")
            _print(args, shown, lambda r: "\n".join([_detail(r), *_way_back(api, r)]))
        case "service", "status":
            query = {"environment": args.environment} if args.environment else {}
            answer = api.call("GET", f"/services/{args.name}/state", params=query)
            _print(args, answer, _state_text)
        case "release", "watch":
            return watch(api, args, args.id)
        case "release", ("rollback" | "redeploy") as action:
            body = {"description": args.description, "override_reason": args.override_reason}
            accepted = api.call("POST", f"/releases/{args.id}/{action}", json=body)
            _print(args, accepted, _accepted)
            return watch(api, args, accepted["id"]) if args.watch else 0
        case "release", ("promote" | "abort" | "cancel" | "approve" | "reject") as action:
            answer = api.call("POST", f"/releases/{args.id}/{action}")
            _print(args, answer, _accepted)
        case "image", "register":
            body = {
                "service": args.service,
                "repository": args.repository,
                "tag": args.tag,
                "digest": args.digest,
                "commit_sha": args.commit_sha,
                "pipeline_url": args.pipeline_url,
            }
            image = api.call("POST", "/images", json=body)
            _print(args, image, lambda i: f"{i['repository']}@{i['digest']} {','.join(i['tags'])}")
        case "template", "sync":
            _print(args, api.call("POST", "/templates/sync"), lambda a: a["detail"])
    return 0


def login(args: argparse.Namespace) -> int:
    """Log in with a password, make an API token, and keep it in the config file."""
    url = (args.url or os.environ.get("FABU_URL") or _saved().get("url", "")).rstrip("/")
    if not url:
        raise Failed("give the Fabu URL: fabu login --url https://fabu.example.com")
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass()
    with httpx.Client(base_url=url, timeout=30) as http:
        answer = http.post("/api/v1/auth/login", json={"username": args.user, "password": password})
        if answer.status_code != 200:
            raise Failed(f"{answer.status_code}: {answer.json().get('detail')}")
        session = {
            "Cookie": f"fabu_session={answer.cookies['fabu_session']}",
            "X-CSRF-Token": answer.json()["csrf_token"],
        }
        made = http.post("/api/v1/tokens", json={"name": "fabu cli"}, headers=session)
        if made.status_code != 201:
            raise Failed(f"{made.status_code}: {made.json().get('detail')}")
        http.post("/api/v1/auth/logout", headers=session)
    CONFIG.parent.mkdir(parents=True, exist_ok=True)
    CONFIG.touch(mode=0o600)
    CONFIG.write_text(json.dumps({"url": url, "token": made.json()["token"]}))
    print(f"logged in to {url} as {args.user}; token kept in {CONFIG}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="fabu", description=__doc__.splitlines()[0])
    top.add_argument("--url", help="Fabu's address (default: FABU_URL, else the saved one)")
    top.add_argument("--token", help="an API token (default: FABU_TOKEN, else the saved one)")
    top.add_argument("--output", "-o", choices=["text", "json"], default="text")
    commands = top.add_subparsers(dest="command", required=True)

    log_in = commands.add_parser("login", help="log in and keep an API token")
    log_in.add_argument("--user", "-u", required=True)
    log_in.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )

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
        "--watch", "-w", action="store_true", help="follow it; exit 1 unless it succeeds"
    )
    listing = release.add_parser("list", help="release records, newest first")
    for name in ("service", "environment", "state", "operator"):
        listing.add_argument(f"--{name}")
    listing.add_argument("--limit", type=int, default=20)
    for name, what in (("show", "one release"), ("watch", "follow a release to its end")):
        release.add_parser(name, help=what).add_argument("id")
    for name in ("rollback", "redeploy"):
        again = release.add_parser(name, help=f"{name} a release")
        again.add_argument("id")
        again.add_argument("--description", "-d", default="")
        again.add_argument("--override-reason", default="")
        again.add_argument("--watch", "-w", action="store_true")
    for name in ("promote", "abort", "cancel", "approve", "reject"):
        release.add_parser(name, help=f"{name} a release").add_argument("id")

    image = commands.add_parser("image", help="image versions").add_subparsers(
        dest="action", required=True
    )
    register = image.add_parser("register", help="register a pushed image (for CI)")
    register.add_argument("--service", required=True)
    register.add_argument("--repository", required=True)
    register.add_argument("--tag", required=True)
    register.add_argument("--digest", required=True)
    register.add_argument("--commit-sha", default="")
    register.add_argument("--pipeline-url", default="")

    service = commands.add_parser("service", help="services").add_subparsers(
        dest="action", required=True
    )
    status = service.add_parser(
        "status", help="what runs: health, drift and the last good release, per environment"
    )
    status.add_argument("name")
    status.add_argument("--environment", "-e", default="")

    template = commands.add_parser("template", help="templates").add_subparsers(
        dest="action", required=True
    )
    template.add_parser("sync", help="read every template from its source again")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except Failed as exc:
        print(f"fabu: {exc}", file=sys.stderr)
        return 2
