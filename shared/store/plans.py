"""Release plans: one document each, written whole on the revision it was read at.

A plan is small (at most 50 items), and every step a conductor takes changes
several of its parts at once (an item's release, the plan's state, a line), so
each write replaces the document on the condition that its ``revision`` is
still the one read: of two API replicas stepping the same plan, one wins and
the other reads it again.
"""

from datetime import datetime

from pymongo import ASCENDING, DESCENDING

from shared.models.plan import Plan, PlanState
from shared.store.mongo import Doc, Mongo

# The states the conductor looks at: plans that wait for their time, and plans running.
ACTIVE = (PlanState.RUNNING.value,)


def _plan(doc: Doc) -> Plan:
    doc["id"] = doc.pop("_id")
    doc.pop("waves", None)
    return Plan.model_validate(doc)


def _doc(plan: Plan) -> Doc:
    return {"_id": plan.id, **plan.model_dump(exclude={"id", "waves", "notifications"})}


async def ensure_indexes(mongo: Mongo) -> None:
    plans = mongo.collection("plans")
    await plans.create_index([("state", ASCENDING), ("scheduled_at", ASCENDING)], name="by_state")
    await plans.create_index(
        [("environment", ASCENDING), ("_id", DESCENDING)], name="by_environment"
    )


class Plans:
    def __init__(self, mongo: Mongo) -> None:
        self._plans = mongo.collection("plans")

    async def create(self, plan: Plan) -> None:
        await self._plans.insert_one(_doc(plan))

    async def get(self, plan_id: str) -> Plan | None:
        doc = await self._plans.find_one({"_id": plan_id})
        return None if doc is None else _plan(doc)

    async def save(self, plan: Plan) -> bool:
        """Store ``plan`` if its stored revision is still the one it was read at (True);
        the copy given then carries the new revision."""
        doc = _doc(plan)
        doc["revision"] = plan.revision + 1
        written = await self._plans.replace_one({"_id": plan.id, "revision": plan.revision}, doc)
        if written.matched_count != 1:
            return False
        plan.revision += 1
        return True

    async def page(
        self, environment: str | None = None, before: str | None = None, limit: int = 50
    ) -> list[Plan]:
        """Newest first; ``before``: the last id of the previous page."""
        query: Doc = {}
        if environment:
            query["environment"] = environment
        if before:
            query["_id"] = {"$lt": before}
        cursor = self._plans.find(query).sort("_id", DESCENDING).limit(limit)
        return [_plan(d) async for d in cursor]

    async def due(self, at: datetime) -> list[Plan]:
        """Scheduled plans whose time has come."""
        query = {"state": PlanState.SCHEDULED.value, "scheduled_at": {"$lte": at}}
        return [_plan(d) async for d in self._plans.find(query)]

    async def running(self) -> list[Plan]:
        return [_plan(d) async for d in self._plans.find({"state": {"$in": list(ACTIVE)}})]
