"""Releases, between the HTTP edges and the stores: the JSON routes and the UI call these.

Each function takes the :class:`Api` and the caller, checks what the caller
may do (the same refusal whoever asks), and moves releases only through
``shared.release.lifecycle``. :func:`refusal` is the one place that says whether an
action on a release is open to a caller now; :func:`actions` lists the open
ones for a page, and every action function raises its refusal.
"""

import asyncio

import structlog

from services.api.access import Lacking, Permission, Principal, need
from services.api.context import Api
from services.api.diff import ManifestDiff, manifest_diff
from services.api.releasing import Starter, config_template, freeze_check, start
from services.api.schemas import (
    ActionIn,
    Cancelled,
    DecisionIn,
    ReleaseAccepted,
    ReleaseIn,
    ReleasePage,
    ReleaseSummary,
)
from shared.cluster.client import ClusterError
from shared.errors import (
    Conflict,
    FabuError,
    Forbidden,
    Invalid,
    NotFound,
    TransientError,
    Unavailable,
    found,
)
from shared.ids import ReleaseId
from shared.models.base import now
from shared.models.catalog import Environment, Service
from shared.models.release import Release, ReleaseKind
from shared.models.release_parts import CanaryEvent, Decision, TranscriptLine
from shared.release import actions as actions_matrix
from shared.release import lifecycle, machine
from shared.release.actions import Action, Around
from shared.release.canary import promote as promote_canary
from shared.release.canary import remove_canary
from shared.release.lifecycle import Actor, Lost
from shared.release.machine import Approved, Nothing, Rejected, ReleaseState, Undecided
from shared.store.mongo import new_id
from shared.store.releases import ReleaseFilter

log = structlog.get_logger()
# A cancel that loses to a stage's move tries again from the new state, this often.
END_ATTEMPTS = 5

# The actions a release's page offers (a new release is offered by its service's page).
ACTIONS: tuple[Action, ...] = tuple(a for a in Action if a is not Action.RELEASE)


async def _found(api: Api, release_id: str) -> Release:
    return found(await api.releases.get(release_id), f"release {release_id!r}")


async def _target(api: Api, service_name: str, environment: str) -> tuple[Service, Environment]:
    service, env = await asyncio.gather(
        api.catalog.service(service_name), api.catalog.environment(environment)
    )
    if service is None:
        raise NotFound(f"service {service_name!r} not found", field="service")
    if env is None:
        raise NotFound(f"environment {environment!r} not found", field="environment")
    return service, env


def _starter(api: Api, principal: Principal) -> Starter:
    return Starter(api.releases, api.bus, api.audit, principal, api.catalog)


# Reading


async def get(api: Api, principal: Principal, release_id: str) -> Release:
    need(principal, Permission.VIEW)
    return found(await api.releases.detail(release_id), f"release {release_id!r}")


async def followed(api: Api, principal: Principal, release_id: str) -> Release | None:
    """The release as it is now, with its transcript and pods, for a follower reading it
    again and again (None: gone)."""
    need(principal, Permission.VIEW)
    return await api.releases.get(release_id)


async def page(
    api: Api,
    principal: Principal,
    filters: ReleaseFilter,
    *,
    cursor: str | None = None,
    back: str | None = None,
    limit: int = 50,
    counted: bool = False,
) -> ReleasePage:
    """A page of the records ``filters`` let through, newest first: after ``cursor`` (a
    page's ``next_cursor``) or before ``back`` (its ``previous_cursor``). ``counted``:
    with how many match and how many come before this page."""
    need(principal, Permission.VIEW)
    found = await api.releases.page(filters, before=cursor, after=back, limit=limit)
    # Without counting: a full page may have more after it; a page reached by paging
    # has the one it came from on its other side.
    more_after = len(found) == limit or (back is not None and bool(found))
    more_before = bool(found) and (cursor is not None or (back is not None and len(found) == limit))
    total = offset = None
    if counted:
        if found:
            total, offset = await asyncio.gather(
                api.releases.count(filters),
                api.releases.count(filters, newer_than=found[0].id),
            )
        else:
            total, offset = await api.releases.count(filters), 0
        more_before = offset > 0
        more_after = offset + len(found) < total
    return ReleasePage(
        items=[ReleaseSummary.of(r) for r in found],
        next_cursor=found[-1].id if found and more_after else None,
        previous_cursor=found[0].id if found and more_before else None,
        total=total,
        offset=offset,
    )


async def summaries(
    api: Api, principal: Principal, release_ids: list[str]
) -> dict[str, ReleaseSummary]:
    """The releases of ``release_ids`` that exist, by id, as a list shows them (one read
    each, without their transcripts)."""
    need(principal, Permission.VIEW)
    found = await asyncio.gather(*(api.releases.head(i) for i in release_ids))
    return {r.id: ReleaseSummary.of(r) for r in found if r is not None}


async def operators(api: Api, principal: Principal) -> list[str]:
    """Everyone who has asked for a release (the release list suggests them)."""
    need(principal, Permission.VIEW)
    return await api.releases.operators()


async def approvers(api: Api, principal: Principal, release: Release) -> list[str]:
    """Who may approve ``release``: every user whose grants let them release its service
    to its environment, except the one who asked for it."""
    need(principal, Permission.VIEW)
    service = await api.catalog.service(release.service)
    if service is None:
        return []
    return [
        u.name
        for u in await api.users.all()
        if u.name != release.operator
        and not u.disabled
        and Principal(u, "session").can_release(release.environment, service)
    ]


# Which actions a caller may take: the grants here, the state in ``shared.release.actions``


def refusal(
    action: Action,
    release: Release,
    principal: Principal,
    service: Service | None,
    around: Around,
) -> FabuError | None:
    """Why ``principal`` may not take ``action`` on ``release`` now (None: they may)."""
    if not principal.holds(Permission.RELEASE):
        return Lacking(principal, Permission.RELEASE)
    if service is None:
        return NotFound(f"service {release.service!r} not found")
    if not principal.can_release(release.environment, service):
        where = f" to {release.environment}"
        return Forbidden(
            f"{principal.name} may not release {service.name} (team {service.team}){where}: "
            "that needs a releaser grant covering it"
        )
    return actions_matrix.refusal(action, release, around)


async def running(api: Api, principal: Principal, service: str, environment: str) -> Release | None:
    """The release whose workloads the cluster runs now there (see ``Releases.running``)."""
    need(principal, Permission.VIEW)
    return await api.releases.running(service, environment)


async def _around(api: Api, principal: Principal, release: Release) -> Around:
    latest, now_running = await asyncio.gather(
        api.releases.latest(release.service, release.environment),
        running(api, principal, release.service, release.environment),
    )
    return Around(latest=latest, running=now_running, by=principal.name)


async def actions(api: Api, principal: Principal, release: Release) -> list[Action]:
    """The actions ``principal`` may take on ``release`` now."""
    if not principal.holds(Permission.RELEASE):
        return []
    service, around = await asyncio.gather(
        api.catalog.service(release.service), _around(api, principal, release)
    )
    return [a for a in ACTIONS if refusal(a, release, principal, service, around) is None]


async def last_good(api: Api, principal: Principal, release: Release) -> Release | None:
    """For a release that ended without succeeding: the last good release of its service
    there, to roll back to (None when there is none, or for any other release)."""
    need(principal, Permission.VIEW)
    ended = (ReleaseState.FAILED, ReleaseState.CANCELLED, ReleaseState.ABORTED)
    if release.state not in ended:
        return None
    good = await api.releases.last_good(release.service, release.environment)
    return good if good is not None and good.id < release.id else None


def confirmations(release: Release, offered: list[Action]) -> dict[Action, str]:
    """Of the ``offered`` actions, those a person confirms first, with what they confirm."""
    said = {a: actions_matrix.confirmation(a, release) for a in offered}
    return {a: text for a, text in said.items() if text}


async def may(
    api: Api, principal: Principal, action: Action, release_id: str
) -> tuple[Release, Service, Environment]:
    """The release, its service and environment, when ``principal`` may take ``action``."""
    need(principal, Permission.RELEASE)
    release = await _found(api, release_id)
    (service, env), around = await asyncio.gather(
        _target(api, release.service, release.environment), _around(api, principal, release)
    )
    refused = refusal(action, release, principal, service, around)
    if refused is not None:
        raise refused
    return release, service, env


# Starting releases


async def create(api: Api, principal: Principal, body: ReleaseIn) -> ReleaseAccepted:
    """Release a version; it waits for approval where the environment asks for one."""
    need(principal, Permission.RELEASE)
    service, env = await _target(api, body.service, body.environment)
    principal.must_release(env.name, service)
    release = await new_release(api, service, env, body.version, body.description)
    return await start(release, env, service, _starter(api, principal), body.override_reason)


async def new_release(
    api: Api,
    service: Service,
    env: Environment,
    version: str,
    description: str,
    template_version: int | None = None,
    release_id: str | None = None,
) -> Release:
    """A release of ``version`` with the service's config there and its template's current
    version (or ``template_version`` of it), not yet stored: 422 when the config is
    missing or does not fit, or the registry has no such tag."""
    config = await api.catalog.config(service.name, env.name)
    if config is None:
        raise Invalid(
            f"service {service.name!r} has no release config for environment {env.name!r}",
            field="environment",
        )
    template, digest = await asyncio.gather(
        config_template(api.catalog, config, api.secrets, template_version),
        _digest(api, service.image_repository, version),
    )
    if digest is None:
        raise Invalid(
            f"version: the registry has no tag {version!r} in {service.image_repository}",
            field="version",
        )
    return Release(
        id=ReleaseId(release_id or new_id()),
        service=service.name,
        environment=env.name,
        version=version,
        image=f"{service.image_repository}:{version}",
        description=description,
        template_id=template.id,
        template_version=template.version,
        config_version=config.version,
        params=config.params,
        namespace=env.namespace,
    )


async def _digest(api: Api, repository: str, tag: str) -> str | None:
    try:
        return await api.registries.digest(repository, tag)
    except FabuError as exc:
        raise Unavailable(f"cannot check the image in the registry: {exc.message}") from exc


async def rollback(
    api: Api, principal: Principal, release_id: str, body: ActionIn | None = None
) -> ReleaseAccepted:
    """A new release restoring this one whole: image, base parameters, template version."""
    source, service, env = await may(api, principal, Action.ROLLBACK, release_id)
    description = (body.description if body else "") or (
        f"roll back to {source.version} (release {source.id})"
    )
    release = source.again(ReleaseId(new_id()), ReleaseKind.ROLLBACK, description, env.namespace)
    override = body.override_reason if body else ""
    return await start(release, env, service, _starter(api, principal), override)


async def rollback_preview(api: Api, principal: Principal, release_id: str) -> ManifestDiff:
    """What rolling back to this release would change: its manifest against the live objects."""
    need(principal, Permission.VIEW)
    source = await _found(api, release_id)
    if not source.manifest:
        raise Invalid(f"release {release_id} has no rendered manifest to compare")
    env = await api.catalog.environment(source.environment)
    if env is None:
        raise NotFound(f"environment {source.environment!r} not found")
    hidden = source.params.hidden(api.secrets.open)
    manifest = api.secrets.manifest(source)
    try:
        cluster = await api.clusters.get(env)
        return await manifest_diff(cluster, env.namespace, manifest, hidden)
    except (ClusterError, TransientError) as exc:
        raise Unavailable(f"the cluster of {env.name!r} answered: {exc.message}") from exc


async def redeploy(
    api: Api, principal: Principal, release_id: str, body: ActionIn | None = None
) -> ReleaseAccepted:
    """This release's version again with the current config and template, its pods
    replaced, through the same gates as any release (canary steps, approval, freeze
    windows). Open on the latest release and on the one that runs now; a version that
    failed, was aborted or was rejected goes again only when ``confirmed``."""
    source, service, env = await may(api, principal, Action.REDEPLOY, release_id)
    confirm = actions_matrix.confirmation(Action.REDEPLOY, source)
    if confirm and not (body and body.confirmed):
        raise Invalid(f"confirmed: {confirm}; confirm to go ahead", field="confirmed")
    config = await api.catalog.config(source.service, source.environment)
    if config is None:
        raise Invalid(
            f"service {source.service!r} has no release config for {source.environment!r}"
        )
    template = await config_template(api.catalog, config, api.secrets)
    description = (body.description if body else "") or f"redeploy {source.version}"
    release = source.again(
        ReleaseId(new_id()), ReleaseKind.REDEPLOY, description, env.namespace, template, config
    )
    override = body.override_reason if body else ""
    return await start(release, env, service, _starter(api, principal), override)


# Ending releases


async def cancel(api: Api, principal: Principal, release_id: str) -> Cancelled:
    """End a release that has not finished. An applied one stays in the cluster as it is
    (a canary at a step is aborted instead: 409 says so)."""
    source, _, _ = await may(api, principal, Action.CANCEL, release_id)
    actor = principal.name
    line = TranscriptLine(at=now(), text=f"cancelled by {actor}; the cluster was left as it is")
    was = await _end(api, principal, source, machine.CANCEL, [line])
    if was is ReleaseState.APPLIED:
        message = (
            "tracking stopped; what was applied stays in the cluster as it is "
            "(roll back to an earlier release to undo it)"
        )
    elif was is ReleaseState.RENDERED:
        message = (
            "cancelled before it was applied; if the deployer had already begun, "
            "the transcript says so"
        )
    else:
        message = "cancelled before anything was applied; the cluster was not changed"
    return Cancelled(id=release_id, state=ReleaseState.CANCELLED, was=was, message=message)


def _objects_of(release: Release) -> str:
    return "the canary's objects" if release.params.blue_green is None else "the preview"


def _aborted_at(release: Release) -> str:
    step = release.canary_step or 0
    if release.params.blue_green is not None:
        return f"blue-green release aborted at {release.params.step_name(step)}"
    return f"canary aborted at step {step + 1}"


async def abort(api: Api, principal: Principal, release_id: str) -> Cancelled:
    """Stop a canary before its full rollout: its objects are removed, the main
    Deployment is left exactly as it was."""
    release, _, env = await may(api, principal, Action.ABORT, release_id)
    actor = principal.name
    step = (release.canary_step or 0) + 1
    weight = release.params.steps[step - 1].weight
    was = await _end(
        api,
        principal,
        release,
        machine.ABORT,
        [TranscriptLine(at=now(), text=f"{_aborted_at(release)} by {actor}")],
        CanaryEvent(step=step - 1, weight=weight, what="aborted", by=actor),
    )
    try:
        removed = await remove_canary(await api.clusters.get(env), release)
        line = f"removed {_objects_of(release)}: {', '.join(removed) or 'none were there'}"
    except (ClusterError, TransientError) as exc:
        line = f"could not remove {_objects_of(release)}: {exc.message}"
    line += "; the main Deployment was not touched"
    await api.releases.note(release.id, [TranscriptLine(at=now(), text=line)])
    return Cancelled(id=release.id, state=ReleaseState.ABORTED, was=was, message=line)


async def _end(
    api: Api,
    principal: Principal,
    release: Release,
    transition: machine.Transition[Nothing],
    lines: list[TranscriptLine],
    canary: CanaryEvent | None = None,
) -> ReleaseState:
    """End a release by hand, in whatever unfinished state it has moved to meanwhile (409
    once it has finished); audited. The state it was ended in."""
    actor = Actor.person(principal.name)
    for attempt in range(END_ATTEMPTS):
        try:
            outcome = await lifecycle.take(
                api.releases, api.bus, release, transition, actor, Nothing(), lines, canary
            )
        except FabuError:
            raise
        except Exception:
            # Ended, but not announced: each tracker also stops at its next write,
            # when it finds the release ended.
            log.exception("could not announce the end", release_id=release.id)
            break
        if not isinstance(outcome, Lost):
            break
        # A stage moved it on first: end it where it is now, unless it has finished.
        current = await _found(api, release.id)
        if current.state.final or current.state not in transition.leaves:
            raise Conflict(f"release {release.id} has already finished: {current.state}")
        release = current
        # A claim just made is written within milliseconds; give it that long.
        await asyncio.sleep(0.02 * (attempt + 1))
    else:
        raise Conflict(f"release {release.id} keeps moving on; try again")
    await api.audit.record(
        principal.name,
        f"release.{transition.name}",
        f"release/{release.id}",
        before={"state": release.state},
        after={"state": transition.to},
    )
    return release.state


async def promote(api: Api, principal: Principal, release_id: str) -> ReleaseAccepted:
    """Move a paused canary to its next step; after the last, the main Deployment
    takes the new version and the canary's objects are removed."""
    release, _, _ = await may(api, principal, Action.PROMOTE, release_id)
    outcome = await promote_canary(api.releases, api.bus, release, Actor.person(principal.name), "")
    if isinstance(outcome, Lost):
        raise Conflict(f"release {release_id} moved on meanwhile: it is {outcome.state}")
    await api.audit.record(
        principal.name,
        "release.promote",
        f"release/{release_id}",
        before={"canary_step": release.canary_step},
        after={"canary_step": (release.canary_step or 0) + 1},
    )
    return ReleaseAccepted(id=release_id, state=ReleaseState.RENDERED)


# Decisions


async def approve(
    api: Api, principal: Principal, release_id: str, body: DecisionIn | None = None
) -> ReleaseAccepted:
    """Approve a release awaiting approval: someone other than its requester, who may
    release there. It goes on at once."""
    body = body or DecisionIn()
    release, _, env = await may(api, principal, Action.APPROVE, release_id)
    override = freeze_check(env, principal, body.override_reason)
    decision = Decision(approved=True, by=principal.name, comment=body.comment)
    fields = (
        Approved(decision=decision, freeze_override=override)
        if override
        else Approved(decision=decision)
    )
    actor = Actor.person(principal.name)
    try:
        outcome = await lifecycle.take(
            api.releases, api.bus, release, machine.APPROVE, actor, fields, [_line(decision)]
        )
    except FabuError:
        raise
    except Exception as exc:
        log.exception("could not hand the approved release on", release_id=release.id)
        approved = await _found(api, release.id)
        undone = "the approval was undone: the message bus failed"
        await lifecycle.take(
            api.releases,
            api.bus,
            approved,
            machine.UNAPPROVE,
            lifecycle.AS_SYSTEM,
            Undecided(),
            [TranscriptLine(at=now(), text=undone)],
        )
        raise Unavailable(
            "the message bus is unavailable; the release still awaits approval"
        ) from exc
    await _decided(api, release, decision, outcome, ReleaseState.REQUESTED)
    return ReleaseAccepted(id=release.id, state=ReleaseState.REQUESTED)


async def reject(
    api: Api, principal: Principal, release_id: str, body: DecisionIn | None = None
) -> ReleaseAccepted:
    """Reject a release awaiting approval; it ends, and nothing reaches the cluster."""
    body = body or DecisionIn()
    release, _, _ = await may(api, principal, Action.REJECT, release_id)
    decision = Decision(approved=False, by=principal.name, comment=body.comment)
    outcome = await lifecycle.take(
        api.releases,
        api.bus,
        release,
        machine.REJECT,
        Actor.person(principal.name),
        Rejected(decision=decision),
        [_line(decision)],
    )
    await _decided(api, release, decision, outcome, ReleaseState.REJECTED)
    return ReleaseAccepted(id=release.id, state=ReleaseState.REJECTED)


def _line(decision: Decision) -> TranscriptLine:
    verb = "approved" if decision.approved else "rejected"
    text = f"{verb} by {decision.by}" + (f": {decision.comment}" if decision.comment else "")
    return TranscriptLine(at=now(), text=text)


async def _decided(
    api: Api, release: Release, decision: Decision, outcome: lifecycle.Outcome, new: ReleaseState
) -> None:
    if isinstance(outcome, Lost):
        raise Conflict(f"release {release.id} was decided or cancelled meanwhile")
    await api.audit.record(
        decision.by,
        f"release.{'approve' if decision.approved else 'reject'}",
        f"release/{release.id}",
        before={"state": ReleaseState.AWAITING_APPROVAL},
        after={"state": new, "decision": decision},
    )
