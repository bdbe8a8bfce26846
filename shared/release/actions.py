"""What a person may do to a release, in each state: the one action matrix.

Each :class:`Rule` names an action, what it does, and the transition it takes
on the release (a row of ``shared.release.machine``: an action is open only in
the states that transition leaves), or none for the actions that start
a new release from this one (redeploy, rollback). :func:`refusal` says, in the
words every door uses, why an action is closed on a release now; the API's
409s, the UI's buttons, the command line and the notifications all ask it. It
does not judge grants: who may release the service is the caller's business
(``services.api.access``), and every action here needs that.

:func:`confirmation` names the actions that go ahead only once the person has
seen what they do (redeploying a version that failed, was aborted or was
rejected); :func:`matrix` is the table the README shows.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.errors import Conflict, FabuError, Forbidden, Invalid
from shared.ids import ReleaseId, TemplateId
from shared.models.catalog import BaseParams, CanaryStep
from shared.models.release import Release, ReleaseKind
from shared.release import machine
from shared.release.machine import ReleaseState


class Action(StrEnum):
    RELEASE = "release"
    REDEPLOY = "redeploy"
    ROLLBACK = "rollback"
    PROMOTE = "promote"
    ABORT = "abort"
    CANCEL = "cancel"
    APPROVE = "approve"
    REJECT = "reject"


@dataclass(frozen=True)
class Rule:
    action: Action
    does: str
    # The transition the action takes on this release; None: it starts a new release.
    takes: machine.Transition[Any] | None = None


RULES: tuple[Rule, ...] = (
    Rule(
        Action.RELEASE,
        "a new release of the service there (one runs at a time per service and environment)",
    ),
    Rule(
        Action.REDEPLOY,
        "this version again with the current config and template, pods restarted, through "
        "the config's canary steps and the environment's approval like any release",
    ),
    Rule(
        Action.ROLLBACK,
        "a new release restoring this one whole: its image, parameters and template version",
    ),
    Rule(
        Action.PROMOTE,
        "the paused canary goes to its next step (after the last, the full rollout)",
        machine.PROMOTE,
    ),
    Rule(
        Action.ABORT,
        "the canary's objects are removed; the main workloads stay as they were",
        machine.ABORT,
    ),
    Rule(
        Action.CANCEL,
        "the release ends where it is; what was applied stays as it is",
        machine.CANCEL,
    ),
    Rule(Action.APPROVE, "the release goes on to the cluster", machine.APPROVE),
    Rule(Action.REJECT, "the release ends; nothing reaches the cluster", machine.REJECT),
)
RULE = {rule.action: rule for rule in RULES}
# Versions that ended this way are redeployed only once the person has said so.
CONFIRMED_ENDINGS = {
    ReleaseState.FAILED: "failed",
    ReleaseState.ABORTED: "was aborted",
    ReleaseState.REJECTED: "was rejected",
}


@dataclass(frozen=True)
class Around:
    """What else decides an action on a release: the newest release of its service
    there, the one whose workloads the cluster runs now, and who asks."""

    latest: Release | None = None
    running: Release | None = None
    by: str = ""


def refusal(action: Action, release: Release, around: Around) -> FabuError | None:
    """Why ``action`` is closed on ``release`` now (None: it is open), the grants aside."""
    rule = RULE[action]
    if rule.takes is not None and release.state not in rule.takes.leaves:
        return _not_from(action, release)
    match action:
        case Action.RELEASE:
            return _busy(release, around)
        case Action.REDEPLOY:
            return _redeploy_refusal(release, around) or _busy(release, around)
        case Action.ROLLBACK:
            return _rollback_refusal(release, around) or _busy(release, around)
        case Action.ABORT:
            return _abort_refusal(release)
        case Action.CANCEL:
            if release.in_canary and release.manifest:
                return Conflict(f"release {release.id} is at a canary step: abort it instead")
        case Action.APPROVE | Action.REJECT:
            if around.by and around.by == release.operator:
                return Forbidden(
                    f"{around.by} requested release {release.id} and cannot {action} it: "
                    "someone else must (the requester may cancel it)"
                )
        case Action.PROMOTE:
            pass
    return None


def _busy(release: Release, around: Around) -> FabuError | None:
    """A new release of the service there waits while one has not finished."""
    unfinished = next(
        (r for r in (around.latest, release) if r is not None and not r.state.final), None
    )
    if unfinished is None:
        return None
    return Conflict(
        f"release {unfinished.id} of {unfinished.service} to {unfinished.environment} is "
        f"still {unfinished.state}: one release runs at a time there; wait for it to end, "
        "or cancel it"
    )


def _not_from(action: Action, release: Release) -> FabuError:
    rid, state = release.id, release.state
    match action:
        case Action.PROMOTE:
            return Conflict(f"release {rid} is not paused at a canary step: it is {state}")
        case Action.APPROVE | Action.REJECT:
            return Conflict(f"release {rid} is not awaiting approval: it is {state}")
        case _:
            return Conflict(f"release {rid} has already finished: {state}")


def _redeploy_refusal(release: Release, around: Around) -> FabuError | None:
    if not release.state.final:
        return Conflict(
            f"release {release.id} is still {release.state}: cancel it, or wait for it to end"
        )
    if release.id in {r.id for r in (around.latest, around.running) if r is not None}:
        return None
    offered = [
        f"{r.id} ({r.version}, {r.state})" for r in (around.latest, around.running) if r is not None
    ]
    return Conflict(
        f"only the latest release of {release.service} in {release.environment}, or the one "
        f"that runs there now, can be redeployed: {' or '.join(dict.fromkeys(offered))}"
    )


def _rollback_refusal(release: Release, around: Around) -> FabuError | None:
    rid = release.id
    if release.state is not ReleaseState.SUCCEEDED:
        return Conflict(
            f"release {rid} {release.state.value}: roll back to a release that "
            "succeeded (its service's last good release)"
        )
    if not (release.manifest or release.manifest_sha256):  # a listed release: only its hash
        return Invalid(f"release {rid} has no rendered manifest; there is nothing to roll back to")
    if around.running is not None and around.running.id == rid:
        return Conflict(
            f"release {rid} ({release.version}) is what runs in {release.environment} now: "
            "rolling back to it changes nothing; redeploy it to restart its pods or to take "
            "the current config"
        )
    return None


def _abort_refusal(release: Release) -> FabuError | None:
    rid = release.id
    if release.canary_step is None:
        return Conflict(f"release {rid} is not a canary release; cancel it instead")
    if not release.in_canary:
        return Conflict(
            f"release {rid} is past its canary: the main workloads are taking the new "
            "version; cancel it, or roll back to an earlier release"
        )
    if not release.manifest:
        return Conflict(f"release {rid} is not rendered yet; cancel it instead")
    return None


def confirmation(action: Action, release: Release) -> str:
    """What the person must have seen before ``action`` goes ahead ("" when nothing)."""
    ended = CONFIRMED_ENDINGS.get(release.state)
    if action is not Action.REDEPLOY or ended is None:
        return ""
    how = ended
    if release.state is ReleaseState.ABORTED and release.canary:
        how += f" at canary step {release.canary[-1].step + 1}"
    if release.reason:
        how += f" ({release.reason})"
    return (
        f"{release.version} {how}: redeploying releases {release.version} again to "
        f"{release.environment}"
    )


def open_actions(release: Release, around: Around) -> list[Action]:
    """The actions open on ``release`` now (the grants aside), in the matrix's order."""
    return [rule.action for rule in RULES if refusal(rule.action, release, around) is None]


# The README's table: each state (a canary release where that matters) against each action.

_ROWS: tuple[tuple[str, ReleaseState, bool], ...] = (
    ("awaiting_approval", ReleaseState.AWAITING_APPROVAL, False),
    ("requested", ReleaseState.REQUESTED, False),
    ("rendered", ReleaseState.RENDERED, False),
    ("rendered, canary step", ReleaseState.RENDERED, True),
    ("applied", ReleaseState.APPLIED, False),
    ("applied, canary step", ReleaseState.APPLIED, True),
    ("paused (canary)", ReleaseState.PAUSED, True),
    ("succeeded", ReleaseState.SUCCEEDED, False),
    ("failed", ReleaseState.FAILED, False),
    ("cancelled", ReleaseState.CANCELLED, False),
    ("rejected", ReleaseState.REJECTED, False),
    ("aborted (canary)", ReleaseState.ABORTED, True),
)


def _example(state: ReleaseState, canary: bool) -> Release:
    params = BaseParams(canary=[CanaryStep(weight=10)] if canary else [])
    return Release(
        id=ReleaseId("0" * 24),
        service="s",
        environment="e",
        version="1",
        image="i:1",
        kind=ReleaseKind.DEPLOY,
        template_id=TemplateId("t"),
        template_version=1,
        config_version=1,
        params=params,
        namespace="n",
        state=state,
        canary_step=0 if canary else None,
        manifest="kind: Deployment",
        manifest_sha256="x",
        operator="alice",
    )


def matrix() -> str:
    """The action matrix as a Markdown table (the newest release of its service there,
    asked by someone other than its requester)."""
    head = "| state | " + " | ".join(rule.action.value for rule in RULES) + " |"
    lines = [head, "|---" * (len(RULES) + 1) + "|"]
    for label, state, canary in _ROWS:
        release = _example(state, canary)
        around = Around(latest=release, by="bob")
        cells = []
        for rule in RULES:
            if refusal(rule.action, release, around) is not None:
                cells.append("—")
            else:
                cells.append("yes, confirmed" if confirmation(rule.action, release) else "yes")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(matrix())
