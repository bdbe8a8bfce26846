"""The audit log: one entry per change, never updated or deleted."""

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from pymongo import ASCENDING, DESCENDING

from shared.models.users import AuditEntry
from shared.secrets import MASK, PREFIX
from shared.store.mongo import Doc, Mongo, new_id

# Fields whose values never go into the log, whatever object they are on.
SECRET_FIELDS = frozenset({"password", "password_hash", "secret", "url", "hash", "token"})


def _plain(value: Any) -> Any:
    """A JSON-ready copy of ``value`` with secret fields and sealed values masked, as
    everywhere else Fabu shows a secret."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: (MASK if k in SECRET_FIELDS and v else _plain(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str) and value.startswith(PREFIX):
        return MASK
    return value


async def ensure_indexes(mongo: Mongo) -> None:
    audit = mongo.collection("audit")
    for field in ("actor", "action", "target"):
        await audit.create_index([(field, ASCENDING), ("_id", DESCENDING)], name=f"by_{field}")


class Audit:
    def __init__(self, mongo: Mongo) -> None:
        self._entries = mongo.collection("audit")

    async def record(
        self,
        actor: str,
        action: str,
        target: str,
        before: Any = None,
        after: Any = None,
        note: str = "",
    ) -> AuditEntry:
        entry = AuditEntry(
            id=new_id(),
            actor=actor,
            action=action,
            target=target,
            before=_plain(before),
            after=_plain(after),
            note=note,
        )
        doc = entry.model_dump(exclude={"id"})
        # As JSON text: objects may have keys MongoDB-compatible stores refuse
        # (label keys with dots, say).
        doc["before"] = json.dumps(entry.before, default=str)
        doc["after"] = json.dumps(entry.after, default=str)
        await self._entries.insert_one({"_id": entry.id, **doc})
        return entry

    async def page(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: str | None = None,
        limit: int = 50,
    ) -> list[AuditEntry]:
        """Newest first; ``before`` is the last id of the previous page."""
        query: Doc = {k: v for k, v in (("actor", actor), ("action", action)) if v}
        if target:
            query["target"] = target
        at: Doc = {}
        if since:
            at["$gte"] = since
        if until:
            at["$lt"] = until
        if at:
            query["at"] = at
        if before:
            query["_id"] = {"$lt": before}
        cursor = self._entries.find(query).sort("_id", DESCENDING).limit(limit)
        entries = []
        async for doc in cursor:
            doc["id"] = doc.pop("_id")
            doc["before"], doc["after"] = json.loads(doc["before"]), json.loads(doc["after"])
            entries.append(AuditEntry.model_validate(doc))
        return entries
