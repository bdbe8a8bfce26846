"""PyMongo's async client against the stack's MongoDB-protocol server (FerretDB here)."""

import pytest
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError


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
