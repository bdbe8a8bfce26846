"""What a process keeps of users, tokens and the catalog (``shared.store.kept``), on the
stack's database and NATS: a change made in one process drops what another kept, at
once, through the bus's notice; with no notice, what is kept is answered."""

from datetime import UTC, datetime
from functools import partial

from pymongo.asynchronous.database import AsyncDatabase

from shared.messaging.bus import Bus
from shared.messaging.subjects import Subjects
from shared.models.catalog import Environment
from shared.models.users import User
from shared.store.catalog import Catalog
from shared.store.kept import Kept
from shared.store.mongo import Mongo
from shared.store.users import Users
from tests.conftest import unique
from tests.support.stack import StackEnv
from tests.support.wait import eventually


async def test_a_token_revoked_in_one_process_is_refused_at_once_by_another(
    stack_env: StackEnv, mongo_db: AsyncDatabase[dict[str, object]]
) -> None:
    subjects = Subjects(unique("kept").replace("-", "_"))
    mongo = Mongo(stack_env.mongo_url, mongo_db.name)
    buses = [await Bus.connect(stack_env.nats_url, subjects, f"test-{n}") for n in (1, 2)]
    try:
        # Two API processes, each keeping what it reads for a minute.
        kept = [Kept(60, partial(bus.notice, subjects.changed)) for bus in buses]
        for bus, mine in zip(buses, kept, strict=True):
            await bus.on_notice(subjects.changed, mine.forget)
        one, other = Users(mongo, kept[0]), Users(mongo, kept[1])
        await one.add(User(name="ann"), None)
        token, secret = await one.add_token("ann", "ci", None)
        seen = await other.token_by_secret(secret)
        assert seen is not None
        assert seen.revoked_at is None

        # Written behind both processes' backs (no notice): the kept read is answered.
        await mongo_db["api_tokens"].update_one({"_id": token.id}, {"$set": {"name": "x"}})
        kept_read = await other.token_by_secret(secret)
        assert kept_read is not None
        assert kept_read.name == "ci"

        assert await one.revoke_token(token.id) is not None

        async def refused() -> bool:
            read = await other.token_by_secret(secret)
            return read is not None and read.revoked_at is not None

        await eventually(refused, "the other process reads the token revoked", within=5)
    finally:
        for bus in buses:
            await bus.close()
        await mongo.close()


async def test_an_environment_changed_is_read_afresh_by_the_process_that_changed_it(
    stack_env: StackEnv, mongo_db: AsyncDatabase[dict[str, object]]
) -> None:
    mongo = Mongo(stack_env.mongo_url, mongo_db.name)
    try:
        catalog = Catalog(mongo, Kept(60))
        assert await catalog.environment("prod") is None  # "none" is kept too
        env = Environment(name="prod", namespace="shop")
        await catalog.add_environment(env)
        stored = await catalog.environment("prod")
        assert stored is not None
        assert stored.rollout_timeout_s == env.rollout_timeout_s
        frozen = env.model_copy(update={"archived_at": datetime.now(UTC)})
        await catalog.replace_environment(frozen)
        changed = await catalog.environment("prod")
        assert changed is not None
        assert changed.archived_at is not None
        # What a caller does to its copy is not what the next caller reads.
        changed.namespace = "elsewhere"
        again = await catalog.environment("prod")
        assert again is not None
        assert again.namespace == "shop"
    finally:
        await mongo.close()
