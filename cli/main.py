"""``fabu``: drive Fabu from a terminal or a CI job.

Where it talks to: ``--url`` or ``FABU_URL``; who it is: ``--token`` or
``FABU_TOKEN`` (an API token), else the token ``fabu login`` saved in
``~/.config/fabu/config.json``. ``--output json`` prints the API's JSON for
scripts. ``fabu release watch`` (and ``create``, ``rollback``, ``redeploy`` with
``--watch``) follow a release to its end, say what it waits for (an approval, a
paused canary step) with the commands that decide it, and exit with a code per
ending (``EXIT_CODES``), so a CI job can wait on it.
"""

import argparse
import getpass
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import httpx
import shtab
import yaml

CONFIG = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "fabu" / "config.json"
SUCCEEDED = "succeeded"
FINAL = {"succeeded", "failed", "cancelled", "rejected", "aborted"}

# A watching command's exit code for each way a release ends; 2 is the command's own
# failure (bad usage, a refused request, Fabu out of reach), 4 a watch given up.
ENDINGS = {"succeeded": 0, "failed": 1, "cancelled": 3, "aborted": 3, "rejected": 3}
REFUSED = 2
GAVE_UP = 4
EXIT_CODES = """exit codes (when following a release):
  0  the release succeeded
  1  it failed (an automatic rollback it started is named)
  2  bad usage, a request Fabu refused, or Fabu out of reach
  3  it was cancelled, aborted or rejected
  4  --timeout passed first: the release goes on, nothing is cancelled"""
# The states in which a release waits for someone: the watch says for whom, once.
WAITING = ("awaiting_approval", "paused")
# How long a failed release's watch waits for Fabu to start its automatic rollback.
ROLLBACK_WAIT_S = 15.0
POLL_S = 0.5
T = TypeVar("T")


class Failed(Exception):
    """The command could not do what was asked (exit 2), with the reason."""


class GaveUp(Exception):
    """``--timeout`` passed before the release ended."""


def _saved() -> dict[str, str]:
    try:
        saved: dict[str, str] = json.loads(CONFIG.read_text())
    except (OSError, ValueError):
        return {}
    return saved


# Where a request's validation error points, as the CLI's user knows it.
LOCATIONS = ("body", "query", "path")


def said(answer: httpx.Response) -> str:
    """An error answer as one sentence naming the field: ``version: … (422)``.

    Fabu's own errors already are; a request that does not validate lists its
    problems, each with its place, and those become ``field: message; …``.
    """
    try:
        detail = answer.json().get("detail", answer.text)
    except (ValueError, AttributeError):
        detail = answer.text
    if isinstance(detail, list):
        parts = []
        for problem in detail:
            where = ".".join(str(p) for p in problem.get("loc", []) if p not in LOCATIONS)
            message = str(problem.get("msg", "not valid")).removeprefix("Value error, ")
            parts.append(f"{where}: {message}" if where else message)
        detail = "; ".join(parts)
    return f"{str(detail).strip() or answer.reason_phrase} ({answer.status_code})"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns as wide as their longest value, under a header; the last one unpadded."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(
            cell if i == len(headers) - 1 else cell.ljust(widths[i]) for i, cell in enumerate(line)
        ).rstrip()
        for line in lines
    )


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
            raise Failed(said(answer))
        return answer.json() if answer.content else None

    def events(self, release_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """The release's Server-Sent Events: (event, data) until ``end``. On a connection
        of its own, so that it may be read in another thread than the other calls."""
        # As long as the release runs: no read timeout.
        timeout = httpx.Timeout(60, read=None)
        http = httpx.Client(base_url=self.http.base_url, headers=self.http.headers, timeout=timeout)
        try:
            with http, http.stream("GET", f"/releases/{release_id}/events") as answer:
                if answer.status_code >= 400:
                    answer.read()
                    raise Failed(said(answer))
                event = ""
                for line in answer.iter_lines():
                    if line.startswith("event:"):
                        event = line.partition(":")[2].strip()
                    elif line.startswith("data:"):
                        yield event, json.loads(line.partition(":")[2])
        except httpx.TransportError as exc:
            raise Failed(f"lost Fabu while following release {release_id}: {exc}") from exc


def _print(args: argparse.Namespace, value: Any, text: Callable[[Any], str]) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False) if args.output == "json" else text(value))


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


# How much of a failing pod's log a terminal shows.
LOG_LINES = 8
PODS_SHOWN = 3


def _pods(diagnosis: dict[str, Any]) -> list[str]:
    """The failing pods of a diagnosis: each container that is not ready, its state and
    the last lines of its log (the crashed container's, if it restarted)."""
    lines = []
    for pod in (diagnosis.get("pods") or [])[:PODS_SHOWN]:
        ready = f" ({pod['ready']})" if pod.get("ready") else ""
        lines.append(f"pod {pod['name']}: {pod['phase']}{ready}")
        for c in pod.get("containers") or []:
            if c.get("ready"):
                continue
            last = f"; last: {c['last_state']}" if c.get("last_state") else ""
            lines.append(
                f"  container {c['name']}: {c['state'] or '-'}{last} "
                f"(restarts {c['restart_count']})"
            )
            log = (c.get("previous_log") or c.get("log") or "").rstrip("\n")
            if log:
                which = "previous container's" if c.get("previous_log") else "its"
                lines.append(f"  last lines of {which} log:")
                lines += [f"    | {line}" for line in log.splitlines()[-LOG_LINES:]]
    hidden = diagnosis.get("pods_not_shown") or 0
    if hidden:
        lines.append(f"({hidden} more pods not shown)")
    return lines


def _way_back(api: Api, r: dict[str, Any]) -> list[str]:
    """For a release that ended without succeeding: what went wrong, in one sentence,
    and how to get back to the last good release."""
    if r["state"] not in ("failed", "cancelled", "aborted"):
        return []
    lines = []
    diagnosis = r.get("diagnosis") or {}
    cause = diagnosis.get("summary") or ""
    if cause and cause != r.get("reason"):
        lines.append(f"cause: {cause}")
    lines += _pods(diagnosis)
    if r.get("rolled_back_by"):
        back = r["rolled_back_by"]
        return [
            *lines,
            f"Fabu is rolling back automatically: release {back}; "
            f"follow it with: fabu release watch {back}",
        ]
    query = {"service": r["service"], "environment": r["environment"], "state": SUCCEEDED}
    good = api.call("GET", "/releases", params={**query, "limit": 1})["items"]
    if good and good[0]["id"] < r["id"]:
        lines.append(
            f"last good: {good[0]['version']} (release {good[0]['id']}); roll back to it with: "
            f"fabu release rollback {good[0]['id']}"
        )
    return lines


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


def exit_code(state: str) -> int:
    """A watching command's exit code for a release that ended in ``state``."""
    return ENDINGS.get(state, ENDINGS["failed"])


def approval_text(release_id: str, approvers: list[str]) -> list[str]:
    """What a release awaiting approval waits for: who may decide it, and how."""
    return [
        f"release {release_id} awaits approval; "
        f"may approve it: {', '.join(approvers) or 'nobody (ask an admin)'}",
        f"  approve: fabu release approve {release_id}",
        f"  reject:  fabu release reject {release_id}",
    ]


def canary_text(release_id: str, step: int, steps: list[dict[str, Any]]) -> list[str]:
    """What a canary paused at ``step`` (counted from 0) waits for: the step, the weight
    it asked, when it goes on by itself if it does, and the commands that decide it."""
    asked = f", {steps[step]['weight']} % asked" if step < len(steps) else ""
    pause = steps[step].get("pause_s") if step < len(steps) else None
    by_itself = f"; promoted by itself after its {pause} s pause" if pause is not None else ""
    where = f"canary step {step + 1} of {len(steps)}{asked}"
    return [
        f"release {release_id} paused at {where}{by_itself}",
        f"  promote: fabu release promote {release_id}",
        f"  abort:   fabu release abort {release_id}",
    ]


def gave_up_text(release_id: str, state: str, seconds: float) -> str:
    """The last line of a watch given up at ``--timeout``: the release goes on."""
    return (
        f"gave up after {seconds:g} s: release {release_id} is still {state} "
        f"(nothing was cancelled); follow it with: fabu release watch {release_id}"
    )


def _until(items: Iterator[T], deadline: float | None) -> Iterator[T]:
    """``items`` as they come until ``deadline`` (``time.monotonic()``), then GaveUp.

    They are read in a thread of their own, so that a stream silent for long (a release
    awaiting approval) cannot hold the caller past the deadline; the thread, blocked on
    its connection, ends with the process.
    """
    if deadline is None:
        yield from items
        return
    box: queue.Queue[tuple[str, Any]] = queue.Queue()

    def pump() -> None:
        try:
            for item in items:
                box.put(("item", item))
            box.put(("done", None))
        except Exception as exc:  # handed to the caller, raised there
            box.put(("error", exc))

    threading.Thread(target=pump, daemon=True).start()
    while True:
        try:
            kind, value = box.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise GaveUp from None
        if kind == "done":
            return
        if kind == "error":
            raise value
        yield value


def _tell_waiting(api: Api, args: argparse.Namespace, release_id: str, told: set[str]) -> None:
    """Say once what the release waits for now (an approval, a paused canary step: once
    per step) and the commands that decide it."""
    r = api.call("GET", f"/releases/{release_id}")
    if r["state"] == "awaiting_approval":
        key = "approval"
        lines = approval_text(release_id, api.call("GET", f"/releases/{release_id}/approvers"))
    elif r["state"] == "paused":
        step = r.get("canary_step") or 0
        key = f"canary step {step}"
        lines = canary_text(release_id, step, (r.get("params") or {}).get("canary") or [])
    else:
        return
    if key in told:
        return
    told.add(key)
    if args.output == "json":
        waiting = {"event": "waiting", "state": r["state"], "lines": lines}
        print(json.dumps(waiting, ensure_ascii=False), flush=True)
    else:
        print("\n".join(lines), flush=True)


def _rolls_back(api: Api, r: dict[str, Any]) -> bool:
    """Whether Fabu is to roll this failed release back by itself (as the deployer's
    recovery decides: asked by its config or its environment, it reached the cluster,
    past any canary step, and it is no automatic rollback itself)."""
    params = r.get("params") or {}
    step, steps = r.get("canary_step"), len(params.get("canary") or [])
    if r["state"] != "failed" or not r.get("started_at") or r.get("rollback_of"):
        return False
    if step is not None and step < steps:
        return False
    asked = params.get("auto_rollback")
    if asked is None:
        asked = api.call("GET", f"/environments/{r['environment']}").get("auto_rollback")
    return bool(asked)


def _rolled_back(api: Api, r: dict[str, Any], deadline: float | None) -> dict[str, Any]:
    """The failed release again once Fabu has started its automatic rollback (or said it
    would not), if it is to have one; waiting at most ROLLBACK_WAIT_S and the deadline."""
    if r.get("rolled_back_by") or not _rolls_back(api, r):
        return r
    until = time.monotonic() + ROLLBACK_WAIT_S
    until = until if deadline is None else min(until, deadline)
    while time.monotonic() < until:
        time.sleep(POLL_S)
        r = api.call("GET", f"/releases/{r['id']}")
        lines = r.get("transcript") or []
        if r.get("rolled_back_by") or any(
            line["text"].startswith("no automatic rollback") for line in lines
        ):
            break
    return r


def _show_event(args: argparse.Namespace, event: str, data: dict[str, Any]) -> None:
    if args.output == "json":
        print(json.dumps({"event": event, **data}, ensure_ascii=False), flush=True)
    elif event == "line":
        print(f"{data['at'][11:19]} {data['text']}", flush=True)
    elif event == "state":
        print(f"{data['at'][11:19]} [{data['state']}] by {data['actor']}", flush=True)


def watch(api: Api, args: argparse.Namespace, release_id: str) -> int:
    """Follow a release to its end, saying what it waits for; the exit code of its
    ending (``ENDINGS``), or GAVE_UP once ``--timeout`` passed first."""
    timeout: float | None = args.timeout
    deadline = None if timeout is None else time.monotonic() + timeout
    told: set[str] = set()
    end: dict[str, Any] | None = None
    try:
        for event, data in _until(api.events(release_id), deadline):
            _show_event(args, event, data)
            if event == "state" and data["state"] in WAITING:
                _tell_waiting(api, args, release_id, told)
            if event == "end":
                end = data
    except GaveUp:
        r = api.call("GET", f"/releases/{release_id}")
        state = r["state"]
        if state in FINAL:  # it ended as the time ran out
            return _ended(api, args, release_id, {"state": state, "reason": r["reason"]}, deadline)
        if args.output == "json":
            print(json.dumps({"event": "gave_up", "state": state, "timeout_s": timeout}))
        else:
            print(gave_up_text(release_id, state, timeout or 0))
        return GAVE_UP
    if end is None:
        raise Failed(
            f"the events of release {release_id} stopped before it ended; "
            f"follow it with: fabu release watch {release_id}"
        )
    return _ended(api, args, release_id, end, deadline)


def _ended(
    api: Api,
    args: argparse.Namespace,
    release_id: str,
    end: dict[str, Any],
    deadline: float | None,
) -> int:
    """Say how the release ended, and for one that did not succeed what went wrong and
    the way back (the automatic rollback it started, if any); its exit code."""
    state = end.get("state", "")
    if args.output != "json":
        reason = f": {end['reason']}" if end.get("reason") else ""
        print(f"release {release_id} {state}{reason}", flush=True)
    if state == SUCCEEDED:
        return exit_code(state)
    r = _rolled_back(api, api.call("GET", f"/releases/{release_id}"), deadline)
    if args.output == "json":
        if r.get("rolled_back_by"):
            print(json.dumps({"event": "rollback", "release_id": r["rolled_back_by"]}))
    else:
        for line in _way_back(api, r):
            print(line)
    return exit_code(state)


def _given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The options among ``names`` given on the command line, by their API names."""
    return {n: getattr(args, n) for n in names if getattr(args, n) not in (None, "")}


def _read(path: str) -> str:
    """A file's text (``-``: stdin)."""
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise Failed(f"{path}: {exc.strerror}") from exc


def _document(path: str, what: str) -> Any:
    """A JSON or YAML file's value."""
    try:
        return yaml.safe_load(_read(path))
    except yaml.YAMLError as exc:
        raise Failed(f"{what}: {path} is not JSON or YAML: {exc}") from exc


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


def _environments(items: list[dict[str, Any]]) -> str:
    rows = [
        [
            e["name"],
            e["namespace"],
            "in cluster" if e.get("in_cluster") else (e.get("kubeconfig") or "-"),
            "yes" if e.get("approval_required") else "no",
            str(e.get("pod_security", "")) + (" +rbac" if e.get("allow_rbac") else ""),
            str(len(e.get("freeze_windows") or [])),
            "archived" if e.get("archived_at") else "",
        ]
        for e in items
    ]
    return table(["NAME", "NAMESPACE", "CLUSTER", "APPROVAL", "POD SECURITY", "FREEZES", ""], rows)


def _templates(items: list[dict[str, Any]]) -> str:
    def where(t: dict[str, Any]) -> str:
        source = t.get("source")
        if not source:
            return "fabu"
        return f"{source['type']}: {source.get('project') or source.get('url')} {source['path']}"

    rows = [[t["id"], t["name"], str(t["version"]), where(t), t.get("error") or ""] for t in items]
    return table(["ID", "NAME", "VERSION", "SOURCE", "ERROR"], rows)


def _config(c: dict[str, Any]) -> str:
    lines = [
        f"{c['service']} in {c['environment']}: version {c['version']} by {c['author'] or '-'}, "
        f"template {c['template_id']}",
        json.dumps(c["effective"], indent=2, ensure_ascii=False),
    ]
    lines += [f"does not fit: {path}: {why}" for path, why in (c.get("problems") or {}).items()]
    return "\n".join(lines)


def _release(api: Api, args: argparse.Namespace) -> int:
    if getattr(args, "timeout", None) is not None and not getattr(args, "watch", True):
        raise Failed("timeout: give --watch too (--timeout bounds how long it follows)")
    match args.action:
        case "create":
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
        case "list":
            names = ("service", "environment", "state", "operator", "since", "until", "cursor")
            page = api.call(
                "GET", "/releases", params={**_given(args, *names), "limit": args.limit}
            )
            _print(args, page, _releases)
        case "show":
            shown = api.call("GET", f"/releases/{args.id}")
            waiting = []
            if shown["state"] == "awaiting_approval":
                who = api.call("GET", f"/releases/{args.id}/approvers")
                waiting = [f"may approve it: {', '.join(who) or 'nobody (ask an admin)'}"]
                shown["review"] = api.call("GET", f"/releases/{args.id}/review")
                waiting = [*review_text(shown["review"]), *waiting]
            _print(args, shown, lambda r: "\n".join([_detail(r), *waiting, *_way_back(api, r)]))
        case "watch":
            return watch(api, args, args.id)
        case "rollback" | "redeploy":
            body = {"description": args.description, "override_reason": args.override_reason}
            if args.action == "redeploy":
                confirm = api.call("GET", f"/releases/{args.id}/actions")["confirm"]
                if "redeploy" in confirm and not args.yes:
                    print(f"{confirm['redeploy']}; add --yes to go ahead", file=sys.stderr)
                    return 2
                body["confirmed"] = args.yes
            accepted = api.call("POST", f"/releases/{args.id}/{args.action}", json=body)
            _print(args, accepted, _accepted)
            return watch(api, args, accepted["id"]) if args.watch else 0
        case _:
            answer = api.call("POST", f"/releases/{args.id}/{args.action}")
            _print(args, answer, _accepted)
    return 0


def _service(api: Api, args: argparse.Namespace) -> int:
    match args.action:
        case "list":
            found = api.call("GET", "/services", params={"archived": args.archived})
            _print(args, found, _services)
        case "create":
            body = {"name": args.name, **_given(args, "team", "image_repository", "gitlab_project")}
            _print(args, api.call("POST", "/services", json=body), lambda s: _services([s]))
        case "update":
            current = api.call("GET", f"/services/{args.name}")
            current.pop("archived_at", None)
            body = {**current, **_given(args, "team", "image_repository", "gitlab_project")}
            answer = api.call("PUT", f"/services/{args.name}", json=body)
            _print(args, answer, lambda s: _services([s]))
        case "archive" | "restore":
            answer = api.call("POST", f"/services/{args.name}/{args.action}")
            _print(args, answer, lambda s: _services([s]))
        case "status":
            query = {"environment": args.environment} if args.environment else {}
            answer = api.call("GET", f"/services/{args.name}/state", params=query)
            _print(args, answer, _state_text)
    return 0


def _environment(api: Api, args: argparse.Namespace) -> int:
    match args.action:
        case "list":
            found = api.call("GET", "/environments", params={"archived": args.archived})
            _print(args, found, _environments)
        case "create":
            body = {
                "name": args.name,
                "in_cluster": args.in_cluster,
                "approval_required": args.approval_required,
                "auto_rollback": args.auto_rollback,
                "allow_rbac": args.allow_rbac,
                "create_namespace": args.create_namespace,
                **_given(args, "namespace", "kubeconfig", "rollout_timeout_s", "pod_security"),
            }
            made = api.call("POST", "/environments", json=body)
            _print(args, made, lambda e: _environments([e]))
        case "archive" | "restore":
            answer = api.call("POST", f"/environments/{args.name}/{args.action}")
            _print(args, answer, lambda e: _environments([e]))
    return 0


def _template(api: Api, args: argparse.Namespace) -> int:
    match args.action:
        case "list":
            _print(args, api.call("GET", "/templates"), _templates)
        case "create":
            body: dict[str, Any] = {"name": args.name}
            if args.file:
                body["content"] = _read(args.file)
                if args.parameters:
                    body["parameters"] = _document(args.parameters, "parameters")
            elif args.gitlab_project or args.git_url:
                body["source"] = {
                    "type": "gitlab" if args.gitlab_project else "git",
                    "project": args.gitlab_project or "",
                    "url": args.git_url or "",
                    "path": args.path or "",
                    "ref": args.ref,
                }
            else:
                raise Failed("content: give --file, or --gitlab-project or --git-url with --path")
            _print(args, api.call("POST", "/templates", json=body), lambda t: _templates([t]))
        case "sync":
            _print(args, api.call("POST", "/templates/sync"), lambda a: a["detail"])
    return 0


def _configs(api: Api, args: argparse.Namespace) -> int:
    path = f"/services/{args.service}/config/{args.environment}"
    match args.action:
        case "show":
            _print(args, api.call("GET", path), _config)
        case "set":
            try:
                current = api.call("GET", path)
            except Failed:
                current = None
            params = current["params"] if current else {}
            if args.values:
                values = _document(args.values, "values")
                if not isinstance(values, dict):
                    raise Failed("values: give an object of the template's parameters")
                settings = ("canary", "rollout_timeout_s", "auto_rollback")
                params = {**{k: v for k, v in params.items() if k in settings}, **values}
            template = args.template or (current["template_id"] if current else "")
            if not template:
                raise Failed("template_id: give --template (fabu template list names them)")
            body = {"template_id": template, "params": params, "note": args.note}
            _print(
                args, api.call("PUT", path, json=body), lambda c: f"saved version {c['version']}"
            )
    return 0


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


def _notifications(api: Api, args: argparse.Namespace) -> int:
    if args.service:
        path = f"/services/{args.service}/notifications/{args.environment}"
    else:
        path = f"/environments/{args.environment}/notifications"
    match args.action:
        case "show":
            _print(args, api.call("GET", path), _channels)
        case "set":
            channels = _document(args.file, "channels")
            if not isinstance(channels, list):
                raise Failed("channels: give a list of channels ({type, url|recipients, …})")
            _print(args, api.call("PUT", path, json=channels), _channels)
        case "reset":
            if not args.service:
                raise Failed("service: give --service: only a service's own channels reset")
            _print(args, api.call("DELETE", path), _channels)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.command == "login":
        return login(args)
    if args.command == "completion":
        print(shtab.complete(parser(), shell=args.shell))
        return 0
    saved = _saved()
    api = Api(
        args.url or os.environ.get("FABU_URL") or saved.get("url", ""),
        args.token or os.environ.get("FABU_TOKEN") or saved.get("token", ""),
    )
    match args.command:
        case "release":
            return _release(api, args)
        case "service":
            return _service(api, args)
        case "environment":
            return _environment(api, args)
        case "template":
            return _template(api, args)
        case "config":
            return _configs(api, args)
        case "notifications":
            return _notifications(api, args)
        case "image":
            body = _given(
                args, "service", "repository", "tag", "digest", "commit_sha", "pipeline_url"
            )
            image = api.call("POST", "/images", json=body)
            _print(args, image, lambda i: f"{i['repository']}@{i['digest']} {','.join(i['tags'])}")
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

    _release_commands(commands)
    _setup_commands(commands)
    _notification_commands(commands)
    completion = commands.add_parser(
        "completion", help='a shell completion script: eval "$(fabu completion bash)"'
    )
    completion.add_argument("shell", choices=["bash", "zsh", "tcsh"])
    return top


Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _seconds(text: str) -> float:
    """A ``--timeout``: a number of seconds above 0."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return seconds


def _watching(command: argparse.ArgumentParser, option: bool) -> None:
    """A command that follows a release: ``--watch`` (where following is a choice),
    ``--timeout``, and the exit codes in its epilog."""
    command.epilog = EXIT_CODES
    command.formatter_class = argparse.RawDescriptionHelpFormatter
    if option:
        command.add_argument(
            "--watch",
            "-w",
            action="store_true",
            help="follow it to its end: exit 0 succeeded, 1 failed, "
            "3 cancelled/aborted/rejected, 4 --timeout passed (see below)",
        )
    command.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="stop following after SECONDS (exit 4); the release goes on",
    )


def _release_commands(commands: Commands) -> None:
    release = commands.add_parser("release", help="releases").add_subparsers(
        dest="action", required=True
    )
    create = release.add_parser("create", help="release a version")
    create.add_argument("service")
    create.add_argument("environment")
    create.add_argument("version")
    create.add_argument("--description", "-d", default="")
    create.add_argument("--override-reason", default="", help="an admin's reason during a freeze")
    _watching(create, option=True)
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
    _watching(followed, option=False)
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
        _watching(again, option=True)
    for name in ("promote", "abort", "cancel", "approve", "reject"):
        release.add_parser(name, help=f"{name} a release").add_argument("id")

    image = commands.add_parser("image", help="image versions").add_subparsers(
        dest="action", required=True
    )
    register = image.add_parser("register", help="register a pushed image (for CI)")
    register.add_argument("--service", required=True)
    register.add_argument("--repository", help="default: the service's image repository")
    register.add_argument("--tag", required=True)
    register.add_argument("--digest", help="default: the tag's digest in the registry now")
    register.add_argument("--commit-sha", default="")
    register.add_argument("--pipeline-url", default="")


def _setup_commands(commands: Commands) -> None:
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

    environment = commands.add_parser("environment", help="environments").add_subparsers(
        dest="action", required=True
    )
    environment.add_parser("list", help="environments").add_argument(
        "--archived", action="store_true", help="the archived ones too"
    )
    env = environment.add_parser("create", help="add an environment (admins)")
    env.add_argument("name")
    env.add_argument("--namespace", required=True)
    env.add_argument("--kubeconfig", help="a file in the operator's FABU_KUBECONFIG_DIR")
    env.add_argument("--in-cluster", action="store_true", help="the cluster Fabu runs in")
    env.add_argument(
        "--create-namespace",
        action="store_true",
        help="create the namespace if the cluster lacks it (else a missing one is refused)",
    )
    env.add_argument("--rollout-timeout-s", type=int)
    env.add_argument("--approval-required", action="store_true")
    env.add_argument("--auto-rollback", action="store_true")
    env.add_argument(
        "--pod-security",
        choices=["privileged", "baseline", "restricted"],
        help="the Pod Security Standards level pods must meet (default baseline)",
    )
    env.add_argument(
        "--allow-rbac",
        action="store_true",
        help="let releases hold Roles and RoleBindings (never a binding to a ClusterRole)",
    )
    environment.add_parser(
        "archive", help="retire an environment: its history stays; nothing is released to it"
    ).add_argument("name")
    environment.add_parser("restore", help="bring an archived environment back").add_argument(
        "name"
    )

    template = commands.add_parser("template", help="templates").add_subparsers(
        dest="action", required=True
    )
    template.add_parser("list", help="templates")
    made = template.add_parser("create", help="a template kept in Fabu, or read from GitLab/Git")
    made.add_argument("name")
    made.add_argument("--file", "-f", help="the template's content (- for stdin)")
    made.add_argument("--parameters", help="its parameters' JSON Schema (JSON or YAML file)")
    made.add_argument("--gitlab-project", help="read it from this GitLab project")
    made.add_argument("--git-url", help="read it from this Git repository")
    made.add_argument("--path", help="the file in the project or repository")
    made.add_argument("--ref", default="main", help="branch or tag (default: main)")
    template.add_parser("sync", help="read every template from its source again")

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


def _notification_commands(commands: Commands) -> None:
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


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except Failed as exc:
        print(f"fabu: {exc}", file=sys.stderr)
        return 2
