"""Every store's indexes, made as a process starts (making one that exists changes nothing)."""

from shared.store import audit, catalog, deliveries, images, logins, plans, releases, users
from shared.store.mongo import Mongo


async def ensure_indexes(mongo: Mongo) -> None:
    for store in (releases, deliveries, catalog, users, logins, images, audit, plans):
        await store.ensure_indexes(mongo)
