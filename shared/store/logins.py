"""Failed logins, counted per user name and per client address, shared by every API replica.

Each attempt is a document of its own, inserted before its password is
checked and counted after: an insert is atomic on every MongoDB-protocol
server, and a count of documents needs no counter updated in place.
Of attempts made at once, the one counted last sees all the others, so no
more than ``limit`` pass in a window however many arrive together. A failed
attempt's document stays (it is what is counted); a refused one's is taken
back, so waiting out the window is enough; a success deletes the user's.
Documents older than the window are deleted as attempts come (no TTL index).
"""

import math
from datetime import datetime, timedelta

from pymongo import ASCENDING, DESCENDING

from shared.models.base import now
from shared.store.mongo import Doc, Mongo, new_id

COLLECTION = "login_attempts"


async def ensure_indexes(mongo: Mongo) -> None:
    attempts = mongo.collection(COLLECTION)
    for field in ("user", "address"):
        await attempts.create_index([(field, ASCENDING), ("at", DESCENDING)], name=f"by_{field}")
    await attempts.create_index("at", name="at")


class LoginAttempts:
    def __init__(self, mongo: Mongo, limit: int, window_s: float) -> None:
        self._attempts = mongo.collection(COLLECTION)
        self._limit, self._window = limit, timedelta(seconds=window_s)

    async def begin(self, user: str, address: str) -> int:
        """Record an attempt at logging in as ``user`` from ``address``: 0, or while
        either has ``limit`` others within the window, the whole seconds to wait before
        trying again (and nothing is recorded)."""
        at = now()
        since = at - self._window
        await self._attempts.delete_many({"at": {"$lte": since}})
        attempt = new_id()
        await self._attempts.insert_one(
            {"_id": attempt, "user": user, "address": address, "at": at}
        )
        wait = max(
            await self._wait({"user": user}, attempt, since),
            await self._wait({"address": address}, attempt, since),
        )
        if wait <= 0:
            return 0
        await self._attempts.delete_one({"_id": attempt})
        return max(1, math.ceil(wait))

    async def _wait(self, key: Doc, attempt: str, since: datetime) -> float:
        """Seconds until ``key`` has fewer than ``limit`` other attempts in the window."""
        others = self._attempts.find(
            {**key, "at": {"$gt": since}, "_id": {"$ne": attempt}}, {"at": 1}
        )
        newest: list[datetime] = [
            doc["at"] async for doc in others.sort("at", DESCENDING).limit(self._limit)
        ]
        if len(newest) < self._limit:
            return 0.0
        # Once the oldest of these leaves the window, fewer than ``limit`` remain.
        return (newest[-1] + self._window - now()).total_seconds()

    async def succeeded(self, user: str) -> None:
        """The user logged in: the failures at their name are forgotten, from every address
        (an address's failures at other names stay)."""
        await self._attempts.delete_many({"user": user})
