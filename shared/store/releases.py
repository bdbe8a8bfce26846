"""Releases and the release lock.

Every state change is one conditional update (``{_id, state: expected}``), so
a redelivered message or a second replica cannot move a release twice.
"""

from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError

from shared.errors import Conflict
from shared.ids import ReleaseId
from shared.models import (
    CanaryEvent,
    PodTimeline,
    Release,
    ReleaseState,
    TranscriptLine,
    now,
)
from shared.store.deliveries import Deliveries
from shared.store.mongo import Doc, Mongo, decode_params, encode_params

# A list row leaves out what only the detail shows.
LIST_PROJECTION = {
    "manifest": 0,
    "transcript": 0,
    "events": 0,
    "pods": 0,
    "replica_sets": 0,
    "diagnosis": 0,
}


def _release(doc: Doc) -> Release:
    doc["id"] = doc.pop("_id")
    doc["params"] = decode_params(doc["params"])
    return Release.model_validate(doc)


class Releases:
    def __init__(self, mongo: Mongo) -> None:
        self._releases = mongo.collection("releases")
        self._locks = mongo.collection("locks")
        self.deliveries = Deliveries(mongo)

    async def create(self, release: Release) -> None:
        """Take the service+environment lock, then store the release (409 when held)."""
        lock = f"{release.service}/{release.environment}"
        try:
            await self._locks.insert_one({"_id": lock, "release_id": release.id, "at": now()})
        except DuplicateKeyError as exc:
            holder = await self._locks.find_one({"_id": lock})
            running = holder["release_id"] if holder else "another release"
            raise Conflict(
                f"release {running} of {release.service} to {release.environment} is still running"
            ) from exc
        try:
            doc = release.model_dump(exclude={"id", "duration_s"})
            doc["params"] = encode_params(doc["params"])
            await self._releases.insert_one({"_id": release.id, **doc})
        except BaseException:
            await self._locks.delete_one({"_id": lock, "release_id": release.id})
            raise

    async def discard(self, release: Release) -> None:
        """Undo ``create`` when the request could not be handed on."""
        await self._releases.delete_one({"_id": release.id, "state": release.state.value})
        await self._unlock(release.service, release.environment, release.id)

    async def get(self, release_id: str) -> Release | None:
        doc = await self._releases.find_one({"_id": release_id})
        return _release(doc) if doc else None

    async def detail(self, release_id: str) -> Release | None:
        """The release with its notifications (kept apart: see ``Deliveries``)."""
        release = await self.get(release_id)
        if release is not None:
            # Records from before deliveries were kept apart stay on the release.
            release.notifications.update(await self.deliveries.of(release.id))
        return release

    async def page(
        self,
        *,
        service: str | None = None,
        environment: str | None = None,
        state: ReleaseState | None = None,
        operator: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: str | None = None,
        limit: int = 50,
    ) -> list[Release]:
        """Newest first. ``before`` is the last id of the previous page: ids only
        grow, so a page never repeats or skips a record while new ones arrive."""
        query: Doc = {}
        for field, value in (
            ("service", service),
            ("environment", environment),
            ("state", state.value if state else None),
            ("operator", operator),
        ):
            if value:
                query[field] = value
        created: Doc = {}
        if since:
            created["$gte"] = since
        if until:
            created["$lt"] = until
        if created:
            query["created_at"] = created
        if before:
            query["_id"] = {"$lt": before}
        cursor = self._releases.find(query, LIST_PROJECTION).sort("_id", DESCENDING).limit(limit)
        return [_release(d) async for d in cursor]

    async def latest(self, service: str, environment: str) -> Release | None:
        """The newest release of a service in an environment (redeploy allows only it)."""
        page = await self.page(service=service, environment=environment, limit=1)
        return page[0] if page else None

    async def cancel(
        self,
        release_id: ReleaseId,
        actor: str,
        line: str,
        state: ReleaseState = ReleaseState.CANCELLED,
    ) -> ReleaseState | None:
        """End a release that has not finished in ``state`` (cancelled, or a canary
        aborted), ``line`` added to its transcript.

        Returns the state it was ended in, or None when it had already finished.
        """
        at = now()
        before = await self._releases.find_one_and_update(
            {"_id": release_id, "state": {"$in": [s.value for s in ReleaseState if not s.final]}},
            {
                "$set": {"state": state.value, "finished_at": at},
                "$push": {
                    "events": {"at": at, "state": state.value, "actor": actor},
                    "transcript": {"at": at, "text": line},
                },
            },
        )
        if before is None:
            return None
        await self._unlock(before["service"], before["environment"], release_id)
        return ReleaseState(before["state"])

    async def advance(
        self,
        release_id: ReleaseId,
        expected: ReleaseState,
        new: ReleaseState,
        actor: str,
        lines: list[TranscriptLine] | None = None,
        canary: CanaryEvent | None = None,
        at_step: int | None = None,
        **fields: Any,
    ) -> bool:
        """Move ``expected`` → ``new``; False when the release is not in ``expected``
        (nor, given ``at_step``, at that canary step).

        ``lines`` are appended to the transcript, and ``canary`` to the canary's
        history, in the same write.
        """
        at = now()
        update: Doc = {
            "$set": {"state": new.value, **fields},
            "$push": {"events": {"at": at, "state": new.value, "actor": actor}},
        }
        if lines:
            update["$push"]["transcript"] = {"$each": [line.model_dump() for line in lines]}
        if canary:
            update["$push"]["canary"] = canary.model_dump()
        if new.final:
            update["$set"]["finished_at"] = at
        # The update returns the lock's key, so a final move needs no second read.
        where: Doc = {"_id": release_id, "state": expected}
        if at_step is not None:
            where["canary_step"] = at_step
        moved = await self._releases.find_one_and_update(
            where,
            update,  # no projection: FerretDB 1.x does not serve one on findAndModify
        )
        if moved is not None and new.final:
            await self._unlock(moved["service"], moved["environment"], release_id)
        return moved is not None

    async def note(
        self,
        release_id: ReleaseId,
        lines: list[TranscriptLine],
        canary: CanaryEvent | None = None,
    ) -> None:
        """Append lines to the transcript (and an event to the canary's history)
        whatever the release's state."""
        push: Doc = {"transcript": {"$each": [line.model_dump() for line in lines]}}
        if canary:
            push["canary"] = canary.model_dump()
        await self._releases.update_one({"_id": release_id}, {"$push": push})

    async def record_progress(
        self,
        release_id: ReleaseId,
        lines: list[TranscriptLine],
        pods: list[PodTimeline] | None = None,
    ) -> bool:
        """Append transcript lines and replace the pod timeline of an applied release.

        False when the release is no longer ``applied`` (cancelled meanwhile).
        """
        update: Doc = {}
        if lines:
            update["$push"] = {"transcript": {"$each": [line.model_dump() for line in lines]}}
        if pods is not None:
            update["$set"] = {"pods": [pod.model_dump() for pod in pods]}
        query = {"_id": release_id, "state": ReleaseState.APPLIED.value}
        result = await self._releases.update_one(query, update)
        return bool(result.matched_count)

    async def _unlock(self, service: str, environment: str, release_id: str) -> None:
        await self._locks.delete_one({"_id": f"{service}/{environment}", "release_id": release_id})
