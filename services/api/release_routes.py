"""Releases over HTTP: thin wrappers over ``release_service``, and the live event stream."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent

from services.api import release_service, review
from services.api.access import Releaser, Viewer
from services.api.deps import ApiDep
from services.api.diff import ManifestDiff
from services.api.review import Review
from services.api.schemas import (
    ActionIn,
    Cancelled,
    DecisionIn,
    ReleaseAccepted,
    ReleaseIn,
    ReleasePage,
    zoned,
)
from shared.errors import Invalid
from shared.models.release import Release
from shared.release.actions import Action
from shared.store.releases import ReleaseFilter

router = APIRouter()
# How often a followed release is read again for new lines.
FOLLOW_POLL_S = 0.25


class Actions(BaseModel):
    """What the caller may do with a release now."""

    actions: list[Action]
    # The actions that go ahead only once the person has seen this (sent as ``confirmed``).
    confirm: dict[Action, str] = {}


@router.post("/releases", status_code=202)
async def create_release(body: ReleaseIn, api: ApiDep, me: Releaser) -> ReleaseAccepted:
    """Release a version; it waits for approval where the environment asks for one."""
    return await release_service.create(api, me, body)


@router.get("/releases/{release_id}")
async def get_release(release_id: str, api: ApiDep, me: Viewer) -> Release:
    return await release_service.get(api, me, release_id)


@router.get("/releases/{release_id}/approvers")
async def release_approvers(release_id: str, api: ApiDep, me: Viewer) -> list[str]:
    """Who may approve the release: whose grants cover it, except its requester."""
    release = await release_service.get(api, me, release_id)
    return await release_service.approvers(api, me, release)


@router.get("/releases/{release_id}/review")
async def release_review(release_id: str, api: ApiDep, me: Viewer) -> Review:
    """What approving a release not yet applied would do: who asked, when and why, the
    config changes since the release running now and the manifest diff against the live
    objects, secrets masked; 409 once it reached the cluster."""
    return await review.review(api, me, release_id)


@router.get("/releases/{release_id}/actions")
async def release_actions(release_id: str, api: ApiDep, me: Viewer) -> Actions:
    """The actions the caller may take on the release now (what the UI offers)."""
    release = await release_service.get(api, me, release_id)
    offered = await release_service.actions(api, me, release)
    return Actions(actions=offered, confirm=release_service.confirmations(release, offered))


@router.get("/releases")
async def list_releases(
    api: ApiDep,
    me: Viewer,
    filters: Annotated[ReleaseFilter, Query()],
    cursor: Annotated[str | None, Query(description="a page's next_cursor: the older page")] = None,
    back: Annotated[
        str | None, Query(description="a page's previous_cursor: the newer page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    count: Annotated[bool, Query(description="answer total and offset too")] = False,
) -> ReleasePage:
    """Release records, newest first, a page at a time."""
    zoned(since=filters.since, until=filters.until)
    if cursor and back:
        raise Invalid("back: give cursor or back, not both", field="back")
    return await release_service.page(
        api, me, filters, cursor=cursor, back=back, limit=limit, counted=count
    )


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
    release_id: str, api: ApiDep, me: Viewer, request: Request
) -> EventSourceResponse:
    """Server-Sent Events: ``state`` and ``line`` events as they happen, ``pods`` (the
    whole pod timeline) each time it changes, then ``end``.

    A finished release replays the same events at once.
    """
    first = await release_service.get(api, me, release_id)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        release: Release | None = first
        lines_sent = states_sent = 0
        pods_sent = ""
        while release is not None:
            for event in _replay(release, lines_sent, states_sent):
                yield event
            lines_sent, states_sent = len(release.transcript), len(release.events)
            pods = json.dumps([p.model_dump(mode="json") for p in release.pods])
            if pods != pods_sent:
                yield ServerSentEvent(data=pods, event="pods")
                pods_sent = pods
            if release.state.final:
                end = {"state": release.state, "reason": release.reason}
                yield ServerSentEvent(data=json.dumps(end), event="end")
                return
            await asyncio.sleep(FOLLOW_POLL_S)
            if await request.is_disconnected():
                return
            release = await release_service.followed(api, me, release_id)

    return EventSourceResponse(stream())


@router.post("/releases/{release_id}/rollback", status_code=202)
async def rollback(
    release_id: str, api: ApiDep, me: Releaser, body: ActionIn | None = None
) -> ReleaseAccepted:
    """A new release restoring this one whole: image, base parameters, template version."""
    return await release_service.rollback(api, me, release_id, body)


@router.get("/releases/{release_id}/rollback/preview")
async def rollback_preview(release_id: str, api: ApiDep, me: Viewer) -> ManifestDiff:
    """What rolling back to this release would change: its manifest against the live objects."""
    return await release_service.rollback_preview(api, me, release_id)


@router.post("/releases/{release_id}/redeploy", status_code=202)
async def redeploy(
    release_id: str, api: ApiDep, me: Releaser, body: ActionIn | None = None
) -> ReleaseAccepted:
    """The latest release again, with the current base parameters, its pods replaced."""
    return await release_service.redeploy(api, me, release_id, body)


@router.post("/releases/{release_id}/cancel")
async def cancel(release_id: str, api: ApiDep, me: Releaser) -> Cancelled:
    """End a release that has not finished. An applied one stays in the cluster as it is;
    a canary before its full rollout is aborted (its objects removed)."""
    return await release_service.cancel(api, me, release_id)


@router.post("/releases/{release_id}/abort")
async def abort(release_id: str, api: ApiDep, me: Releaser) -> Cancelled:
    """Stop a canary before its full rollout: its objects are removed, the main
    Deployment is left exactly as it was."""
    return await release_service.abort(api, me, release_id)


@router.post("/releases/{release_id}/promote")
async def promote_release(release_id: str, api: ApiDep, me: Releaser) -> ReleaseAccepted:
    """Move a paused canary to its next step; after the last, the main Deployment
    takes the new version and the canary's objects are removed."""
    return await release_service.promote(api, me, release_id)


@router.post("/releases/{release_id}/approve")
async def approve(
    release_id: str, api: ApiDep, me: Releaser, body: DecisionIn | None = None
) -> ReleaseAccepted:
    """Approve a release awaiting approval: someone other than its requester, who may
    release there. It goes on at once."""
    return await release_service.approve(api, me, release_id, body)


@router.post("/releases/{release_id}/reject")
async def reject(
    release_id: str, api: ApiDep, me: Releaser, body: DecisionIn | None = None
) -> ReleaseAccepted:
    """Reject a release awaiting approval; it ends, and nothing reaches the cluster."""
    return await release_service.reject(api, me, release_id, body)
