"""Following a release to its end: its events as they come, what it waits for (an
approval, a paused canary step) with the commands that decide it, how it ended and the
way back, and an exit code per ending (``EXIT_CODES``) so that a CI job can wait on it."""

import argparse
import json
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any, TypeVar

from cli.api import Api, Failed
from cli.diagnosis import SUCCEEDED, way_back

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


class GaveUp(Exception):
    """``--timeout`` passed before the release ended."""


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


def steps_of(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps before the full rollout: the canary's, or a blue-green release's
    preview and switch (as ``BaseParams.steps`` has them)."""
    bg = params.get("blue_green")
    if not bg:
        return list(params.get("canary") or [])
    return [
        {"name": "the preview", "pause_s": bg.get("pause_s"), "analysis": bg.get("analysis")},
        {"name": "the switch", "pause_s": bg.get("scale_down_delay_s")},
    ]


def canary_text(release_id: str, step: int, steps: list[dict[str, Any]]) -> list[str]:
    """What a canary paused at ``step`` (counted from 0) waits for: the step, the weight
    it asked, when it goes on by itself if it does, and the commands that decide it."""
    here = steps[step] if step < len(steps) else {}
    asked = f", {here['weight']} % asked" if "weight" in here else ""
    pause = here.get("pause_s")
    by_itself = f"; promoted by itself after its {pause} s pause" if pause is not None else ""
    if here.get("analysis"):
        judged = ", ".join(here["analysis"])
        by_itself = f"; judged by its analysis ({judged}){by_itself}"
    where = here.get("name") or f"canary step {step + 1} of {len(steps)}{asked}"
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
        lines = canary_text(release_id, step, steps_of(r.get("params") or {}))
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
    step, steps = r.get("canary_step"), len(steps_of(params))
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
        for line in way_back(api, r):
            print(line)
    return exit_code(state)


def _seconds(text: str) -> float:
    """A ``--timeout``: a number of seconds above 0."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return seconds


def watching_options(
    command: argparse.ArgumentParser,
    option: bool,
    what: str = "release",
    exit_codes: str = EXIT_CODES,
    stopped: str = "cancelled/aborted/rejected",
) -> None:
    """A command that follows a release (or ``what`` else: a plan): ``--watch`` (where
    following is a choice), ``--timeout``, and the exit codes in its epilog (``stopped``:
    the endings of exit code 3)."""
    command.epilog = exit_codes
    command.formatter_class = argparse.RawDescriptionHelpFormatter
    if option:
        command.add_argument(
            "--watch",
            "-w",
            action="store_true",
            help=f"follow the {what} to its end: exit 0 succeeded, 1 failed, "
            f"3 {stopped}, 4 --timeout passed (see below)",
        )
    command.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help=f"stop following after SECONDS (exit 4); the {what} goes on",
    )
