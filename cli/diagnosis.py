"""A release that ended without succeeding, told at a terminal: what went wrong, its
failing pods with the last lines of their logs, and the way back to the last good
release."""

from typing import Any

from cli.api import Api

SUCCEEDED = "succeeded"
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


def way_back(api: Api, r: dict[str, Any]) -> list[str]:
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
