"""Releases: request, list, read, follow, roll back, redeploy, cancel."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from services.api.access import Releaser
from services.api.deps import (
    AuditDep,
    BusDep,
    CatalogDep,
    ClustersDep,
    RegistriesDep,
    ReleasesDep,
)
from services.api.diff import ManifestDiff, manifest_diff
from services.api.releasing import Starter, again, config_template, freeze_check, start
from services.api.schemas import (
    ActionIn,
    Cancelled,
    DecisionIn,
    ReleaseAccepted,
    ReleaseIn,
    ReleasePage,
    ReleaseSummary,
    zoned,
)
from shared.bus import Bus
from shared.canary import promote, remove_canary
from shared.cluster import ClusterError, Clusters
from shared.errors import (
    Conflict,
    FabuError,
    Forbidden,
    Invalid,
    NotFound,
    TransientError,
    Unavailable,
)
from shared.ids import ReleaseId
from shared.messages import ReleaseCancelled, ReleaseRequested
from shared.models import (
    CanaryEvent,
    Decision,
    Environment,
    Release,
    ReleaseKind,
    ReleaseState,
    Service,
    TranscriptLine,
    now,
)
from shared.store.audit import Audit
from shared.store.catalog import Catalog
from shared.store.mongo import new_id
from shared.store.releases import Releases

router = APIRouter()
log = structlog.get_logger()
# How often a followed release is read again for new lines.
FOLLOW_POLL_S = 0.25


async def _found(releases: Releases, release_id: str) -> Release:
    release = await releases.get(release_id)
    if release is None:
        raise NotFound(f"release {release_id!r} not found")
    return release


async def _target(
    catalog: Catalog, service_name: str, environment: str
) -> tuple[Service, Environment]:
    service, env = await asyncio.gather(
        catalog.service(service_name), catalog.environment(environment)
    )
    if service is None:
        raise NotFound(f"service {service_name!r} not found")
    if env is None:
        raise NotFound(f"environment {environment!r} not found")
    return service, env


def _starter(releases: ReleasesDep, bus: BusDep, audit: AuditDep, principal: Releaser) -> Starter:
    return Starter(releases, bus, audit, principal)


StarterDep = Annotated[Starter, Depends(_starter)]


@router.post("/releases", status_code=202)
async def create_release(
    body: ReleaseIn,
    catalog: CatalogDep,
    registries: RegistriesDep,
    starter: StarterDep,
) -> ReleaseAccepted:
    """Release a version; it waits for approval where the environment asks for one."""
    (service, env), config = await asyncio.gather(
        _target(catalog, body.service, body.environment),
        catalog.config(body.service, body.environment),
    )
    starter.principal.must_release(env.name, service)
    if config is None:
        raise Invalid(
            f"service {body.service!r} has no release config for environment {body.environment!r}"
        )
    template = await config_template(catalog, config)
    try:
        digest = await registries.digest(service.image_repository, body.version)
    except FabuError as exc:
        raise Unavailable(f"cannot check the image in the registry: {exc.message}") from exc
    if digest is None:
        raise Invalid(
            f"version: the registry has no tag {body.version!r} in {service.image_repository}"
        )
    release = Release(
        id=ReleaseId(new_id()),
        service=service.name,
        environment=env.name,
        version=body.version,
        image=f"{service.image_repository}:{body.version}",
        description=body.description,
        template_id=template.id,
        template_version=template.version,
        config_version=config.version,
        params=config.params,
        namespace=env.namespace,
    )
    return await start(release, env, service, starter, body.override_reason)


@router.get("/releases/{release_id}")
async def get_release(release_id: str, releases: ReleasesDep) -> Release:
    release = await releases.detail(release_id)
    if release is None:
        raise NotFound(f"release {release_id!r} not found")
    return release


@router.get("/releases")
async def list_releases(
    releases: ReleasesDep,
    service: str | None = None,
    environment: str | None = None,
    state: ReleaseState | None = None,
    operator: str | None = None,
    since: Annotated[datetime | None, Query(description="created at or after")] = None,
    until: Annotated[datetime | None, Query(description="created before")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ReleasePage:
    zoned(since=since, until=until)
    page = await releases.page(
        service=service,
        environment=environment,
        state=state,
        operator=operator,
        since=since,
        until=until,
        before=cursor,
        limit=limit,
    )
    next_cursor = page[-1].id if len(page) == limit else None
    return ReleasePage(items=[ReleaseSummary.of(r) for r in page], next_cursor=next_cursor)


def _replay(release: Release, lines_sent: int, states_sent: int) -> list[ServerSentEvent]:
    """The state changes and transcript lines not sent yet, in time order."""
    entries = [
        (e.at, "state", {"at": e.at.isoformat(), "state": e.state, "actor": e.actor})
        for e in release.events[states_sent:]
    ]
    entries += [
        (line.at, "line", {"at": line.at.isoformat(), "text": line.text})
        for line in release.transcript[lines_sent:]
    ]
    entries.sort(key=lambda entry: entry[0])
    return [ServerSentEvent(data=json.dumps(data), event=kind) for _, kind, data in entries]


@router.get("/releases/{release_id}/events", response_class=EventSourceResponse)
async def follow_release(
    release_id: str, releases: ReleasesDep, request: Request
) -> EventSourceResponse:
    """Server-Sent Events: ``state`` and ``line`` events as they happen, then ``end``.

    A finished release replays the same events at once.
    """
    first = await _found(releases, release_id)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        release: Release | None = first
        lines_sent = states_sent = 0
        while release is not None:
            for event in _replay(release, lines_sent, states_sent):
                yield event
            lines_sent, states_sent = len(release.transcript), len(release.events)
            if release.state.final:
                end = {"state": release.state, "reason": release.reason}
                yield ServerSentEvent(data=json.dumps(end), event="end")
                return
            await asyncio.sleep(FOLLOW_POLL_S)
            if await request.is_disconnected():
                return
            release = await releases.get(release_id)

    return EventSourceResponse(stream())


@router.post("/releases/{release_id}/rollback", status_code=202)
async def rollback(
    release_id: str,
    catalog: CatalogDep,
    releases: ReleasesDep,
    starter: StarterDep,
    body: ActionIn | None = None,
) -> ReleaseAccepted:
    """A new release restoring this one whole: image, base parameters, template version."""
    source = await _found(releases, release_id)
    service, env = await _target(catalog, source.service, source.environment)
    starter.principal.must_release(env.name, service)
    if not source.manifest:
        raise Invalid(
            f"release {release_id} failed before its manifest was rendered; "
            "there is nothing to roll back to"
        )
    description = (body.description if body else "") or (
        f"roll back to {source.version} (release {source.id})"
    )
    release = again(source, ReleaseKind.ROLLBACK, description, env.namespace)
    return await start(release, env, service, starter, body.override_reason if body else "")


@router.get("/releases/{release_id}/rollback/preview")
async def rollback_preview(
    release_id: str, catalog: CatalogDep, releases: ReleasesDep, clusters: ClustersDep
) -> ManifestDiff:
    """What rolling back to this release would change: its manifest against the live objects."""
    source = await _found(releases, release_id)
    if not source.manifest:
        raise Invalid(f"release {release_id} has no rendered manifest to compare")
    env = await catalog.environment(source.environment)
    if env is None:
        raise NotFound(f"environment {source.environment!r} not found")
    try:
        return await manifest_diff(await clusters.get(env), env.namespace, source.manifest)
    except (ClusterError, TransientError) as exc:
        raise Unavailable(f"the cluster of {env.name!r} answered: {exc.message}") from exc


@router.post("/releases/{release_id}/redeploy", status_code=202)
async def redeploy(
    release_id: str,
    catalog: CatalogDep,
    releases: ReleasesDep,
    starter: StarterDep,
    body: ActionIn | None = None,
) -> ReleaseAccepted:
    """The latest release again, with the current base parameters, its pods replaced."""
    source = await _found(releases, release_id)
    service, env = await _target(catalog, source.service, source.environment)
    starter.principal.must_release(env.name, service)
    latest = await releases.latest(source.service, source.environment)
    if latest is not None and latest.id != source.id:
        raise Conflict(
            f"only the latest release of {source.service} in {source.environment} can be "
            f"redeployed: that is {latest.id} ({latest.version}, {latest.state})"
        )
    config = await catalog.config(source.service, source.environment)
    if config is None:
        raise Invalid(
            f"service {source.service!r} has no release config for {source.environment!r}"
        )
    template = await config_template(catalog, config)
    description = (body.description if body else "") or f"redeploy {source.version}"
    release = again(source, ReleaseKind.REDEPLOY, description, env.namespace, template, config)
    return await start(release, env, service, starter, body.override_reason if body else "")


@router.post("/releases/{release_id}/cancel")
async def cancel(
    release_id: str,
    catalog: CatalogDep,
    releases: ReleasesDep,
    clusters: ClustersDep,
    starter: StarterDep,
) -> Cancelled:
    """End a release that has not finished. An applied one stays in the cluster as it is;
    a canary before its full rollout is aborted (its objects removed)."""
    source = await _found(releases, release_id)
    service, env = await _target(catalog, source.service, source.environment)
    starter.principal.must_release(env.name, service)
    if source.in_canary and source.manifest:
        return await _abort(source, env, releases, clusters, starter)
    actor = starter.principal.name
    was = await releases.cancel(
        ReleaseId(release_id), actor, f"cancelled by {actor}; the cluster was left as it is"
    )
    await _ended(source, was, ReleaseState.CANCELLED, releases, starter)
    assert was is not None  # noqa: S101 - narrows the type: cancel returned a state
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


async def _ended(
    release: Release,
    was: ReleaseState | None,
    state: ReleaseState,
    releases: Releases,
    starter: Starter,
) -> None:
    """After ending a release by hand: 409 if it had finished, else tell the trackers, audit."""
    if was is None:
        current = await _found(releases, release.id)
        raise Conflict(f"release {release.id} has already finished: {current.state}")
    actor, bus = starter.principal.name, starter.bus
    try:
        await bus.publish(
            bus.subjects.cancelled, ReleaseCancelled(release_id=release.id, was=was, actor=actor)
        )
    except Exception:
        # The tracker also stops at its next write, when it finds the release ended.
        log.exception("could not announce the end", release_id=release.id)
    verb = "abort" if state is ReleaseState.ABORTED else "cancel"
    await starter.audit.record(
        actor,
        f"release.{verb}",
        f"release/{release.id}",
        before={"state": was},
        after={"state": state},
    )


async def _abort(
    release: Release, env: Environment, releases: Releases, clusters: Clusters, starter: Starter
) -> Cancelled:
    actor = starter.principal.name
    step = (release.canary_step or 0) + 1
    was = await releases.cancel(
        release.id, actor, f"canary aborted at step {step} by {actor}", ReleaseState.ABORTED
    )
    await _ended(release, was, ReleaseState.ABORTED, releases, starter)
    assert was is not None  # noqa: S101 - narrows the type: abort returned a state
    try:
        removed = await remove_canary(await clusters.get(env), release)
        line = f"removed the canary's objects: {', '.join(removed) or 'none were there'}"
    except (ClusterError, TransientError) as exc:
        line = f"could not remove the canary's objects: {exc.message}"
    line += "; the main Deployment was not touched"
    weight = release.params.canary[step - 1].weight
    await releases.note(
        release.id,
        [TranscriptLine(at=now(), text=line)],
        CanaryEvent(step=step - 1, weight=weight, what="aborted", by=actor),
    )
    return Cancelled(id=release.id, state=ReleaseState.ABORTED, was=was, message=line)


@router.post("/releases/{release_id}/abort")
async def abort(
    release_id: str,
    catalog: CatalogDep,
    releases: ReleasesDep,
    clusters: ClustersDep,
    starter: StarterDep,
) -> Cancelled:
    """Stop a canary before its full rollout: its objects are removed, the main
    Deployment is left exactly as it was."""
    release = await _found(releases, release_id)
    service, env = await _target(catalog, release.service, release.environment)
    starter.principal.must_release(env.name, service)
    if release.canary_step is None:
        raise Conflict(f"release {release_id} is not a canary release; cancel it instead")
    if release.state.final:
        raise Conflict(f"release {release_id} has already finished: {release.state}")
    if not release.in_canary:
        raise Conflict(
            f"release {release_id} is past its canary: the main Deployment is taking the new "
            "version; cancel it, or roll back to an earlier release"
        )
    if not release.manifest:
        raise Conflict(f"release {release_id} is not rendered yet; cancel it instead")
    return await _abort(release, env, releases, clusters, starter)


@router.post("/releases/{release_id}/promote")
async def promote_release(
    release_id: str, catalog: CatalogDep, releases: ReleasesDep, starter: StarterDep
) -> ReleaseAccepted:
    """Move a paused canary to its next step; after the last, the main Deployment
    takes the new version and the canary's objects are removed."""
    release = await _found(releases, release_id)
    service, env = await _target(catalog, release.service, release.environment)
    starter.principal.must_release(env.name, service)
    if release.state is not ReleaseState.PAUSED:
        raise Conflict(
            f"release {release_id} is not paused at a canary step: it is {release.state}"
        )
    actor = starter.principal.name
    if not await promote(releases, starter.bus, release, actor, ""):
        raise Conflict(f"release {release_id} moved on meanwhile")
    await starter.audit.record(
        actor,
        "release.promote",
        f"release/{release_id}",
        before={"canary_step": release.canary_step},
        after={"canary_step": (release.canary_step or 0) + 1},
    )
    return ReleaseAccepted(id=release_id, state=ReleaseState.RENDERED)


async def _awaiting(
    catalog: Catalog, releases: Releases, release_id: str, starter: Starter, verb: str
) -> tuple[Release, Environment]:
    """The release, waiting for a decision that ``starter.principal`` may make (else 4xx)."""
    release = await _found(releases, release_id)
    if release.state is not ReleaseState.AWAITING_APPROVAL:
        raise Conflict(f"release {release_id} is not awaiting approval: it is {release.state}")
    service, env = await _target(catalog, release.service, release.environment)
    principal = starter.principal
    principal.must_release(env.name, service)
    if principal.name == release.operator:
        raise Forbidden(
            f"{principal.name} requested release {release_id} and cannot {verb} it: "
            "someone else must (the requester may cancel it)"
        )
    return release, env


async def _decided(
    releases: Releases,
    audit: Audit,
    release: Release,
    decision: Decision,
    new: ReleaseState,
    **fields: Any,
) -> None:
    verb = "approved" if decision.approved else "rejected"
    line = f"{verb} by {decision.by}" + (f": {decision.comment}" if decision.comment else "")
    moved = await releases.advance(
        release.id,
        ReleaseState.AWAITING_APPROVAL,
        new,
        decision.by,
        [TranscriptLine(at=now(), text=line)],
        decision=decision.model_dump(),
        **fields,
    )
    if not moved:
        raise Conflict(f"release {release.id} was decided or cancelled meanwhile")
    await audit.record(
        decision.by,
        f"release.{'approve' if decision.approved else 'reject'}",
        f"release/{release.id}",
        before={"state": ReleaseState.AWAITING_APPROVAL},
        after={"state": new, "decision": decision},
    )


async def _hand_on(bus: Bus, releases: Releases, release: Release, actor: str) -> None:
    try:
        await bus.publish(bus.subjects.requested, ReleaseRequested(release_id=release.id))
    except Exception as exc:
        log.exception("could not hand the approved release on", release_id=release.id)
        await releases.advance(
            release.id,
            ReleaseState.REQUESTED,
            ReleaseState.AWAITING_APPROVAL,
            actor,
            [TranscriptLine(at=now(), text="the approval was undone: the message bus failed")],
            decision=None,
        )
        raise Unavailable(
            "the message bus is unavailable; the release still awaits approval"
        ) from exc


@router.post("/releases/{release_id}/approve")
async def approve(
    release_id: str,
    catalog: CatalogDep,
    releases: ReleasesDep,
    starter: StarterDep,
    body: DecisionIn | None = None,
) -> ReleaseAccepted:
    """Approve a release awaiting approval: someone other than its requester, who may
    release there. It goes on at once."""
    body = body or DecisionIn()
    release, env = await _awaiting(catalog, releases, release_id, starter, "approve")
    override = freeze_check(env, starter.principal, body.override_reason)
    decision = Decision(approved=True, by=starter.principal.name, comment=body.comment)
    extra = {"freeze_override": override.model_dump()} if override else {}
    await _decided(releases, starter.audit, release, decision, ReleaseState.REQUESTED, **extra)
    await _hand_on(starter.bus, releases, release, decision.by)
    return ReleaseAccepted(id=release.id, state=ReleaseState.REQUESTED)


@router.post("/releases/{release_id}/reject")
async def reject(
    release_id: str,
    catalog: CatalogDep,
    releases: ReleasesDep,
    starter: StarterDep,
    body: DecisionIn | None = None,
) -> ReleaseAccepted:
    """Reject a release awaiting approval; it ends, and nothing reaches the cluster."""
    body = body or DecisionIn()
    release, _ = await _awaiting(catalog, releases, release_id, starter, "reject")
    decision = Decision(approved=False, by=starter.principal.name, comment=body.comment)
    await _decided(releases, starter.audit, release, decision, ReleaseState.REJECTED)
    return ReleaseAccepted(id=release.id, state=ReleaseState.REJECTED)
