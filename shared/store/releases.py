"""Releases, their transcripts and the release lock.

A state change is one conditional update of the release (``_write``), the
lifecycle's alone (``shared.release.lifecycle``): it carries the transition's
transcript lines with it. Lines written whatever the state (``note``) are
documents of their own, merged with the release's by time when it is read.
"""

import asyncio
from collections.abc import Awaitable
from datetime import datetime

from pydantic import BaseModel, Field
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError

from shared.errors import Conflict
from shared.ids import ReleaseId
from shared.models.analysis import Measurement
from shared.models.base import now
from shared.models.release import Release
from shared.models.release_parts import HookRun, Owned, PodTimeline, TranscriptLine
from shared.release.machine import ReleaseState
from shared.store.deliveries import Deliveries
from shared.store.mongo import Doc, Mongo, decode_params, encode_params, new_id

# A list row leaves out what only the detail shows.
LIST_PROJECTION = {
    "manifest": 0,
    "sealed_manifest": 0,
    "transcript": 0,
    "events": 0,
    "pods": 0,
    "replica_sets": 0,
    "diagnosis": 0,
    "analyses": 0,
}


def _release(
    doc: Doc,
    lines: list[Doc] | None = None,
    pods: list[Doc] | None = None,
    hook: Doc | None = None,
    measurements: list[Doc] | None = None,
) -> Release:
    doc["id"] = doc.pop("_id")
    if measurements:
        doc["measurements"] = measurements
    doc["params"] = decode_params(doc["params"])
    if lines:
        # A transition's lines are on the release, the others beside it: one story, by time.
        told = [*doc.get("transcript", []), *lines]
        doc["transcript"] = sorted(told, key=lambda line: line["at"])
    if pods and not doc.get("pods"):
        doc["pods"] = pods
    if hook and not doc.get("hook"):
        doc["hook"] = hook
    return Release.model_validate(doc)


class ReleaseFilter(BaseModel):
    """Which releases a list holds (the JSON route's query, the UI's form, the store's
    query): each field given narrows it."""

    service: str | None = None
    environment: str | None = None
    state: ReleaseState | None = None
    operator: str | None = None
    since: datetime | None = Field(default=None, description="created at or after")
    until: datetime | None = Field(default=None, description="created before")
    prefix: bool = Field(
        default=False, description="service, environment, operator: match names they begin"
    )


def _query(filters: ReleaseFilter) -> Doc:
    """The query of a list; with ``prefix``, a name given matches every name it begins,
    case-insensitively (names are lowercase)."""
    query: Doc = {}
    for field in ("service", "environment", "operator"):
        value = getattr(filters, field)
        if value and filters.prefix:
            low = value.lower()
            query[field] = {"$gte": low, "$lt": low + "\uffff"}
        elif value:
            query[field] = value
    if filters.state:
        query["state"] = filters.state.value
    created: Doc = {}
    if filters.since:
        created["$gte"] = filters.since
    if filters.until:
        created["$lt"] = filters.until
    if created:
        query["created_at"] = created
    return query


async def ensure_indexes(mongo: Mongo) -> None:
    releases = mongo.collection("releases")
    await releases.create_index(
        [("service", ASCENDING), ("environment", ASCENDING), ("_id", DESCENDING)],
        name="by_service_env",
    )
    # One per list filter, each ending in the sort key, so a page is an index range.
    await releases.create_index(
        [("environment", ASCENDING), ("_id", DESCENDING)], name="by_environment"
    )
    await releases.create_index([("state", ASCENDING), ("_id", DESCENDING)], name="by_state")
    await releases.create_index([("operator", ASCENDING), ("_id", DESCENDING)], name="by_operator")
    await releases.create_index("created_at", name="by_created_at")
    for beside in ("release_lines", "release_measurements"):
        await mongo.collection(beside).create_index(
            [("release_id", ASCENDING), ("at", ASCENDING)], name="by_release"
        )


class Releases:
    def __init__(self, mongo: Mongo) -> None:
        self._releases = mongo.collection("releases")
        self._locks = mongo.collection("locks")
        self._lines = mongo.collection("release_lines")
        self._progress = mongo.collection("release_progress")
        # Each analysis measurement, inserted as taken (no race with the lifecycle).
        self._measurements = mongo.collection("release_measurements")
        # A failed release → the automatic rollback Fabu started for it.
        self._rollbacks = mongo.collection("rollbacks")
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

    async def head(self, release_id: str) -> Release | None:
        """The release without its transcript: one read, for a stage that needs none."""
        doc = await self._releases.find_one({"_id": release_id}, {"transcript": 0})
        return None if doc is None else _release(doc)

    async def get(self, release_id: str) -> Release | None:
        doc, lines, progress, measured = await asyncio.gather(
            self._releases.find_one({"_id": release_id}),
            self._lines.find({"release_id": release_id}, {"_id": 0, "release_id": 0})
            .sort([("at", ASCENDING), ("_id", ASCENDING)])
            .to_list(None),
            self._progress.find_one({"_id": release_id}),
            self._measured(release_id),
        )
        if doc is None:
            return None
        progress = progress or {}
        return _release(doc, lines, progress.get("pods"), progress.get("hook"), measured)

    def _measured(self, release_id: str) -> Awaitable[list[Doc]]:
        return (
            self._measurements.find({"release_id": release_id}, {"_id": 0, "release_id": 0})
            .sort([("at", ASCENDING), ("_id", ASCENDING)])
            .to_list(None)
        )

    async def measurements(self, release_id: str) -> list[Measurement]:
        return [Measurement.model_validate(d) for d in await self._measured(release_id)]

    async def measure(self, release_id: ReleaseId, measurements: list[Measurement]) -> None:
        """Keep measurements beside the release: inserts only, whatever its state."""
        if measurements:
            await self._measurements.insert_many(
                [
                    {"_id": new_id(), "release_id": release_id, **m.model_dump()}
                    for m in measurements
                ],
                ordered=False,
            )

    async def detail(self, release_id: str) -> Release | None:
        """The release with its notifications (kept apart: see ``Deliveries``) and the
        automatic rollback started for it, if any."""
        release = await self.get(release_id)
        if release is not None:
            delivered, rollback = await asyncio.gather(
                self.deliveries.of(release.id), self._rollbacks.find_one({"_id": release.id})
            )
            # Records from before deliveries were kept apart stay on the release.
            release.notifications.update(delivered)
            if rollback is not None:
                release.rolled_back_by = ReleaseId(rollback["rollback"])
        return release

    async def page(
        self,
        filters: ReleaseFilter,
        *,
        before: str | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> list[Release]:
        """Newest first. ``before`` is the last id of the previous page, ``after`` the
        first id of the next one: ids only grow, so a page never repeats or skips a
        record while new ones arrive."""
        query = _query(filters)
        if after:
            query["_id"] = {"$gt": after}
            cursor = self._releases.find(query, LIST_PROJECTION).sort("_id", ASCENDING)
            return [_release(d) async for d in cursor.limit(limit)][::-1]
        if before:
            query["_id"] = {"$lt": before}
        cursor = self._releases.find(query, LIST_PROJECTION).sort("_id", DESCENDING).limit(limit)
        return [_release(d) async for d in cursor]

    async def operators(self) -> list[str]:
        """Everyone who has asked for a release, by name (the list's suggestions)."""
        return sorted(str(o) for o in await self._releases.distinct("operator") if o)

    async def count(self, filters: ReleaseFilter, newer_than: str | None = None) -> int:
        """How many releases match ``filters`` (those newer than an id, if given)."""
        query = _query(filters)
        if newer_than:
            query["_id"] = {"$gt": newer_than}
        return int(await self._releases.count_documents(query))

    async def latest(self, service: str, environment: str) -> Release | None:
        """The newest release of a service in an environment (redeploy allows only it)."""
        page = await self.page(ReleaseFilter(service=service, environment=environment), limit=1)
        return page[0] if page else None

    async def last_good(self, service: str, environment: str) -> Release | None:
        """The newest release of a service in an environment that succeeded."""
        succeeded = ReleaseState.SUCCEEDED
        filters = ReleaseFilter(service=service, environment=environment, state=succeeded)
        page = await self.page(filters, limit=1)
        return page[0] if page else None

    async def succeeded_in(self, service: str, environment: str, version: str) -> bool:
        """Whether a release of this version of the service succeeded in the environment."""
        query = {
            "service": service,
            "environment": environment,
            "version": version,
            "state": ReleaseState.SUCCEEDED.value,
        }
        return await self._releases.count_documents(query, limit=1) == 1

    async def inventories(
        self, service: str, environment: str, limit: int = 50
    ) -> list[list[Owned]] | None:
        """What the newest releases of a service in an environment rendered (any state: a
        failed one may have applied part of it), newest first; None when one of them reached
        the cluster without an inventory (recorded before releases kept one)."""
        query = {"service": service, "environment": environment}
        projection = {"_id": 0, "inventory": 1, "generation": 1}
        cursor = self._releases.find(query, projection).sort("_id", DESCENDING).limit(limit)
        found = []
        async for doc in cursor:
            if not doc.get("inventory") and doc.get("generation") is not None:
                return None
            found.append([Owned.model_validate(o) for o in doc.get("inventory") or []])
        return found

    async def applied(self, service: str, environment: str, limit: int = 10) -> list[Release]:
        """The newest releases there that reached the cluster, newest first, with their
        manifests (a live state compares the cluster with them)."""
        query = {"service": service, "environment": environment, "generation": {"$ne": None}}
        projection = {
            k: v for k, v in LIST_PROJECTION.items() if k not in ("manifest", "sealed_manifest")
        }
        cursor = self._releases.find(query, projection).sort("_id", DESCENDING).limit(limit)
        return [_release(d) async for d in cursor]

    async def running(self, service: str, environment: str) -> Release | None:
        """The release whose workloads the cluster runs there now: the newest that changed
        them whole, whatever its state (None when none ever did)."""
        return next((r for r in await self.applied(service, environment) if r.applied_whole), None)

    async def claim_rollback(self, failed: ReleaseId, rollback: ReleaseId) -> ReleaseId:
        """Name the automatic rollback of a failed release, once (a unique insert): the id
        named first, whoever asks again."""
        try:
            await self._rollbacks.insert_one({"_id": failed, "rollback": rollback, "at": now()})
        except DuplicateKeyError:
            doc = await self._rollbacks.find_one({"_id": failed})
            return ReleaseId(doc["rollback"]) if doc else rollback
        return rollback

    # The lifecycle's own write (``shared.release.lifecycle``): nothing else changes a state.

    async def _write(self, release: Release, change: Doc) -> bool:
        """Store a transition on the release if it still has the ``n`` state changes its
        taker read: the server applies one of two such updates, so one taker wins (True)."""
        push: Doc = {
            "events": {"at": change["at"], "state": change["state"], "actor": change["actor"]}
        }
        if change["lines"]:
            push["transcript"] = {"$each": change["lines"]}
        if change["canary"]:
            push["canary"] = change["canary"]
        update: Doc = {"$set": {"state": change["state"], **change["fields"]}, "$push": push}
        final = ReleaseState(change["state"]).final
        if final:
            update["$set"]["finished_at"] = change["at"]
        written = await self._releases.update_one(
            {"_id": release.id, "events": {"$size": change["n"]}}, update
        )
        if written.matched_count != 1:
            return False
        if final:
            await self._unlock(release.service, release.environment, release.id)
        return True

    async def note(self, release_id: ReleaseId, lines: list[TranscriptLine]) -> None:
        """Append lines to the transcript whatever the release's state: inserts only,
        so no line is lost to a concurrent write."""
        await self._insert_lines(
            [{"_id": new_id(), "release_id": release_id, **line.model_dump()} for line in lines]
        )

    async def record_progress(
        self,
        release_id: ReleaseId,
        lines: list[TranscriptLine],
        pods: list[PodTimeline] | None = None,
    ) -> bool:
        """Append transcript lines to an applied release and replace its pod timeline, in
        one conditional update; False when it is no longer ``applied`` (cancelled
        meanwhile: the lines are then kept beside it, the timeline dropped)."""
        update: Doc = {}
        if lines:
            update["$push"] = {"transcript": {"$each": [line.model_dump() for line in lines]}}
        if pods is not None:
            update["$set"] = {"pods": [pod.model_dump() for pod in pods]}
        applied = {"_id": release_id, "state": ReleaseState.APPLIED.value}
        if not update:
            return await self._releases.count_documents(applied, limit=1) == 1
        if (await self._releases.update_one(applied, update)).matched_count == 1:
            return True
        await self.note(release_id, lines)
        return False

    async def record_hook(
        self, release_id: ReleaseId, run: HookRun, pods: list[PodTimeline] | None = None
    ) -> None:
        """Keep the phase of the hook Job the release runs and, when given, the pods to show
        with it, beside the release (never on it: no race with the lifecycle's writes)."""
        fields: Doc = {"hook": run.model_dump()}
        if pods is not None:
            fields["pods"] = [pod.model_dump() for pod in pods]
        await self._progress.update_one({"_id": release_id}, {"$set": fields}, upsert=True)

    async def _insert_lines(self, docs: list[Doc]) -> None:
        if docs:
            await self._lines.insert_many(docs, ordered=False)

    async def _unlock(self, service: str, environment: str, release_id: str) -> None:
        await self._locks.delete_one({"_id": f"{service}/{environment}", "release_id": release_id})
