"""PyMongo's async client against the local stack's MongoDB-protocol server (SecantusDB)."""

import asyncio
from datetime import timedelta

import pytest
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.ids import ReleaseId
from shared.messaging.messages import ImageBuilt
from shared.models.base import now
from shared.store.deliveries import Deliveries
from shared.store.images import Images
from shared.store.indexes import ensure_indexes
from shared.store.mongo import Mongo
from tests.conftest import unique
from tests.support.stack import StackEnv

R, R0 = ReleaseId("r"), ReleaseId("r0")


async def test_crud_and_unique_index(mongo_db: AsyncDatabase[dict[str, object]]) -> None:
    services = mongo_db["services"]
    await services.create_index([("name", ASCENDING)], unique=True, name="name_unique")

    inserted = await services.insert_one({"name": "web", "team": "core", "replicas": 2})
    assert await services.find_one({"_id": inserted.inserted_id}) == {
        "_id": inserted.inserted_id,
        "name": "web",
        "team": "core",
        "replicas": 2,
    }

    with pytest.raises(DuplicateKeyError):
        await services.insert_one({"name": "web", "team": "other"})

    updated = await services.find_one_and_update(
        {"name": "web", "replicas": 2},
        {"$inc": {"replicas": 1}, "$push": {"history": "scaled"}},
        return_document=ReturnDocument.AFTER,
    )
    assert updated is not None
    assert updated["replicas"] == 3
    assert updated["history"] == ["scaled"]

    # A conditional update whose expected state no longer holds changes nothing.
    stale = await services.update_one({"name": "web", "replicas": 2}, {"$set": {"replicas": 9}})
    assert stale.modified_count == 0

    deleted = await services.delete_one({"name": "web"})
    assert deleted.deleted_count == 1
    assert await services.count_documents({}) == 0
    indexes = await services.index_information()
    assert indexes["name_unique"]["unique"] is True


async def test_two_notifiers_never_both_claim_one_attempt(stack_env: StackEnv) -> None:
    """Claims are inserts of a unique id: atomic even on a server that loses one of two
    concurrent updates of a document (FerretDB 1.x read it, then rewrote it whole)."""
    first = Mongo(stack_env.mongo_url, unique("d"))
    second = Mongo(stack_env.mongo_url, first.db.name)
    try:
        await ensure_indexes(first)
        mine, theirs = Deliveries(first), Deliveries(second)
        stale = now() - timedelta(minutes=1)
        outcomes = []
        for i in range(40):
            release = ReleaseId(f"r{i}")
            claims = await asyncio.gather(
                mine.claim(release, "failed/email-1", stale),
                theirs.claim(release, "failed/email-1", stale),
            )
            outcomes.append(sorted(claim for claim, _ in claims))
            await mine.record(release, "failed/email-1", 1, "failed", "SMTP 451", "SMTP 451")
            retried = await asyncio.gather(
                mine.claim(release, "failed/email-1", stale),
                theirs.claim(release, "failed/email-1", stale),
            )
            outcomes.append(sorted(claim for claim, _ in retried))
        assert outcomes == [["busy", "claimed"]] * 80

        await mine.record(R0, "failed/email-1", 2, "sent", "sent")
        delivery = (await theirs.of(R0))["failed/email-1"]
        assert (delivery.state, delivery.attempts) == ("sent", 2)
        assert [a.outcome for a in delivery.history] == ["SMTP 451", "sent"]
        assert await mine.claim(R0, "failed/email-1", stale) == ("done", 2)
    finally:
        await first.client.drop_database(first.db.name)
        await first.close()
        await second.close()


async def test_a_claim_left_by_a_dead_notifier_is_recorded_unknown_not_sent_again(
    stack_env: StackEnv,
) -> None:
    mongo = Mongo(stack_env.mongo_url, unique("d"))
    try:
        deliveries = Deliveries(mongo)
        assert await deliveries.claim(R, "succeeded/email-1", now()) == ("claimed", 1)
        a_minute_ago = now() - timedelta(minutes=1)
        assert await deliveries.claim(R, "succeeded/email-1", a_minute_ago) == ("busy", 1)
        # Its notifier died: the claim is now older than the stale mark.
        later = now() + timedelta(seconds=1)
        assert await deliveries.claim(R, "succeeded/email-1", later) == ("died", 1)
        assert await deliveries.claim(R, "succeeded/email-1", later) == ("done", 1)
        delivery = (await deliveries.of(R))["succeeded/email-1"]
        assert (delivery.state, delivery.attempts) == ("unknown", 0)
    finally:
        await mongo.client.drop_database(mongo.db.name)
        await mongo.close()


async def test_registrations_at_once_lose_no_tag_and_fold_with_a_record_stored_before(
    stack_env: StackEnv,
) -> None:
    """Twenty tags of one digest registered at once from two clients (the
    ``image.built`` consumer and ``POST /images``): every tag and source kept, the first
    metadata kept."""
    first = Mongo(stack_env.mongo_url, unique("d"))
    second = Mongo(stack_env.mongo_url, first.db.name)
    repository, digest = "registry.example.com/apps/web", "sha256:" + "c" * 64
    try:
        await ensure_indexes(first)
        # One document per digest holding its lists: how records were stored before.
        await first.collection("images").insert_one(
            {
                "_id": f"{repository}@{digest}",
                "repository": repository,
                "digest": digest,
                "service": "web",
                "tags": ["0.9.0"],
                "commit_sha": "",
                "pipeline_url": "https://ci.example.com/1",
                "pushed_at": None,
                "sources": ["gitlab"],
                "registered_at": now() - timedelta(days=1),
            }
        )
        built = [
            ImageBuilt(
                service="web",
                repository=repository,
                tag=f"1.0.{i}",
                digest=digest,
                commit_sha=f"{i:040d}",
                pipeline_url="https://ci.example.com/2",
            )
            for i in range(20)
        ]
        stores = (Images(first), Images(second))
        await asyncio.gather(
            *(stores[i % 2].register(b, ("nats", "api")[i % 2]) for i, b in enumerate(built)),
            *(stores[1].register(b, "nats") for b in built[:5]),
        )
        (image,) = await stores[0].of(repository)
        assert image.tags[0] == "0.9.0"
        assert sorted(image.tags[1:]) == sorted(b.tag for b in built)
        assert image.sources[0] == "gitlab"
        assert sorted(image.sources[1:]) == ["api", "nats"]
        # The record stored first had no commit: the earliest registration after it fills it.
        assert image.pipeline_url == "https://ci.example.com/1"
        assert image.commit_sha in {b.commit_sha for b in built}
        again = await stores[1].register(built[0], "nats")
        assert again == (await stores[0].of(repository))[0]
        assert await first.collection("images").count_documents({}) == 1 + 20 + 5 - 3
    finally:
        await first.client.drop_database(first.db.name)
        await first.close()
        await second.close()
