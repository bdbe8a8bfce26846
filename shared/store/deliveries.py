"""Notification deliveries: one document per attempt, apart from the release.

An attempt's id is ``<release>/<event>/<channel>#<n>``. Claiming attempt ``n``
inserts its document, so two notifiers can never both claim it: a unique id
is atomic on every MongoDB-protocol server, and an attempt's history stays
a document per attempt rather than a list rewritten in place. Each attempt's
document then has one writer, its claimant, and the notifier never writes
the release's document, which the stages advance meanwhile.
"""

from datetime import datetime
from typing import Literal

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from shared.ids import ReleaseId
from shared.models.base import now
from shared.models.notifications import Attempt, Delivery
from shared.store.mongo import Doc, Mongo

Claim = Literal["claimed", "busy", "done", "died"]
# An attempt's state: "sending" (claimed), then "sent", "failed" (tried again),
# "refused" (not tried again) or "unknown" (its notifier died while sending).
RETRIED = "failed"
DIED = "the notifier sending it stopped; not sent again"


async def ensure_indexes(mongo: Mongo) -> None:
    await mongo.collection("deliveries").create_index("release_id", name="release_id")


class Deliveries:
    def __init__(self, mongo: Mongo) -> None:
        self._attempts = mongo.collection("deliveries")

    async def _last(self, release_id: ReleaseId, key: str) -> Doc | None:
        cursor = self._attempts.find({"release_id": release_id, "key": key})
        attempts = [doc async for doc in cursor]
        return max(attempts, key=lambda doc: int(doc["n"])) if attempts else None

    async def claim(
        self, release_id: ReleaseId, key: str, stale_before: datetime
    ) -> tuple[Claim, int]:
        """Claim the next attempt of one notification (event and channel) before sending it.

        ``claimed``: send it now as attempt ``n``, then ``record`` it. ``busy``:
        another notifier holds it. ``done``: sent, refused, or given up.
        ``died``: a claim older than ``stale_before`` means its notifier died
        while sending; whether the message left is unknown, so it is recorded
        ``unknown`` and not sent again (at most once).
        """
        last = await self._last(release_id, key)
        if last is None or last["state"] == RETRIED:
            n = 1 if last is None else int(last["n"]) + 1
            try:
                await self._attempts.insert_one(
                    {
                        "_id": f"{release_id}/{key}#{n}",
                        "release_id": release_id,
                        "key": key,
                        "n": n,
                        "state": "sending",
                        "at": now(),
                    }
                )
            except DuplicateKeyError:
                return "busy", n
            return "claimed", n
        if last["state"] != "sending":
            return "done", int(last["n"])
        if last["at"] >= stale_before:
            return "busy", int(last["n"])
        # Every notifier that finds it stale writes the same thing.
        await self._attempts.update_one(
            {"_id": last["_id"]}, {"$set": {"state": "unknown", "outcome": DIED, "at": now()}}
        )
        return "died", int(last["n"])

    async def record(
        self,
        release_id: ReleaseId,
        key: str,
        n: int,
        state: str,
        outcome: str,
        error: str = "",
    ) -> None:
        """The outcome of attempt ``n`` (0: one never claimed, refused before sending)."""
        if n == 0:
            last = await self._last(release_id, key)
            n = int(last["n"]) + 1 if last else 1
        await self._attempts.update_one(
            {"_id": f"{release_id}/{key}#{n}"},
            {
                "$set": {
                    "release_id": release_id,
                    "key": key,
                    "n": n,
                    "state": state,
                    "outcome": outcome,
                    "error": error,
                    "at": now(),
                }
            },
            upsert=True,
        )

    async def of(self, release_id: ReleaseId) -> dict[str, Delivery]:
        """Every notification of a release, by ``<event>/<channel>``, with its attempts."""
        cursor = self._attempts.find({"release_id": release_id}).sort("n", ASCENDING)
        by_key: dict[str, list[Doc]] = {}
        async for doc in cursor:
            by_key.setdefault(doc["key"], []).append(doc)
        deliveries = {}
        for key, attempts in by_key.items():
            attempts.sort(key=lambda doc: int(doc["n"]))
            ended = [a for a in attempts if "outcome" in a]
            last = attempts[-1]
            deliveries[key] = Delivery(
                state=last["state"],
                attempts=sum(a["state"] != "unknown" for a in ended),
                last_error=last.get("error", ""),
                at=last["at"],
                history=[Attempt(at=a["at"], outcome=a["outcome"]) for a in ended],
            )
        return deliveries
