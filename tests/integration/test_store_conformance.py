"""What Fabu asks of its MongoDB-protocol server, checked on whichever one the stack runs
(FerretDB, SecantusDB, MongoDB itself).

1. Concurrent updates of one document lose nothing.
2. A conditional update has exactly one winner.
3. The release pipeline's queries are read by index: each query its stores send, recorded
   as they send it, explained by the server (skipped where the server cannot explain).
4. A newest-first page of releases is an index range: no sort in memory.

SecantusDB (the local stack's) explains a filter with a clause beyond its index's keys
(``{_id: x, events: {$size: n}}``) as a collection scan, though its executor reads it
by the index (the same query takes the same time with 2,000 and 20,000 releases
stored): there, 3 checks the queries whose every clause is a key of the index they are
read by. It reads a page by walking the index but only limits what it has read whole,
so 4 fails there for a reason of its own: named as the bound of the release list.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from pymongo import AsyncMongoClient, ReturnDocument, monitoring
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

from shared.ids import TemplateId
from shared.messaging.bus import Bus
from shared.messaging.subjects import Subjects
from shared.models.base import now
from shared.models.catalog import BaseParams, Environment, Service, ServiceConfig, Template
from shared.models.release import Release
from shared.models.release_parts import TranscriptLine
from shared.models.users import User
from shared.release import lifecycle
from shared.release.lifecycle import AS_RENDERER, Actor
from shared.release.machine import CANCEL, RENDER, REQUEST, Nothing, ReleaseState, Rendered
from shared.store.catalog import Catalog
from shared.store.indexes import ensure_indexes
from shared.store.mongo import SERVER_WAIT_MS, Counted, Doc, Mongo
from shared.store.releases import ReleaseFilter, Releases
from shared.store.users import Users
from tests.conftest import unique
from tests.support.records import record
from tests.support.stack import StackEnv

# Many at once on one document: enough to overlap on any server that reads a document,
# changes it and writes it whole.
WRITERS = 200
PAIRS = 300
# Seeded for the explains: enough that a scan and an index read differ by far.
SERVICES, ENVIRONMENTS, RELEASES = (
    ("web", "api", "db", "queue", "cache"),
    ("dev", "qa", "prod"),
    300,
)
OPERATORS, STATES = ("alice", "bob", "carol"), (ReleaseState.SUCCEEDED, ReleaseState.FAILED)
# The release list's page (``services.api.release_service.page``).
PAGE = 50


@pytest.fixture
async def mongo(stack_env: StackEnv) -> AsyncIterator[Mongo]:
    """Fabu's connection to a database of the test's own, dropped afterwards."""
    mongo = Mongo(stack_env.mongo_url, unique("conformance").replace("-", "_"))
    try:
        yield mongo
    finally:
        await mongo.client.drop_database(mongo.db.name)
        await mongo.close()


# Servers whose explain shows a scan for a filter with clauses beyond the index's keys,
# and that read every match of a page before its limit (see above).
EXPLAINS_BY_KEYS_ONLY = ("SecantusDB",)


async def server(mongo: Mongo) -> str:
    """The server's name and version, for a message."""
    info = await mongo.db.command("buildInfo")
    for key, name in (("ferretdbVersion", "FerretDB"), ("secantusVersion", "SecantusDB")):
        if key in info:
            return f"{name} ({info[key]})"
    return f"MongoDB ({info.get('version')})"


# 1. Concurrent updates of one document.


@pytest.mark.parametrize("operator", ["$addToSet", "$push"])
async def test_concurrent_updates_of_one_document_lose_nothing(mongo: Mongo, operator: str) -> None:
    """200 tasks each add one value to one document's list at once, through Fabu's client
    (its pool of 16): every value is there, once."""
    items = mongo.collection("items")
    await items.insert_one({"_id": "one", "values": []})
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(items.update_one({"_id": "one"}, {operator: {"values": f"v{i}"}}))
            for i in range(WRITERS)
        ]
    assert [t.result().modified_count for t in tasks] == [1] * WRITERS
    stored = await items.find_one({"_id": "one"})
    assert stored is not None
    lost = sorted({f"v{i}" for i in range(WRITERS)} - set(stored["values"]))
    assert (lost, len(stored["values"])) == ([], WRITERS), f"{await server(mongo)} lost {lost}"


# 2. Conditional updates.

Attempt = Callable[[AsyncCollection[Doc], int, str], Awaitable[bool]]


async def write_of_a_change(releases: AsyncCollection[Doc], n: int, actor: str) -> bool:
    """``Releases._write``: the state change ``n`` of a release, on the condition that it
    has ``n`` changes (two takers of transitions from the same state both write it)."""
    result = await releases.update_one(
        {"_id": "r", "events": {"$size": n}},
        {"$set": {"state": f"s{n + 1}"}, "$push": {"events": {"n": n, "actor": actor}}},
    )
    return result.matched_count == 1


async def transition_from_a_state(releases: AsyncCollection[Doc], n: int, actor: str) -> bool:
    """A transition on the condition of the state it leaves, answered with the document
    as it was (``Users.revoke_token``'s form: the id and the field it changes)."""
    before = await releases.find_one_and_update(
        {"_id": "r", "state": f"s{n}"},
        {"$set": {"state": f"s{n + 1}"}, "$push": {"events": {"n": n, "actor": actor}}},
        return_document=ReturnDocument.BEFORE,
    )
    return before is not None


@pytest.mark.parametrize(
    "attempt",
    [write_of_a_change, transition_from_a_state],
    ids=["update_one", "find_one_and_update"],
)
async def test_of_two_conditional_updates_at_once_exactly_one_matches(
    stack_env: StackEnv, mongo: Mongo, attempt: Attempt
) -> None:
    """300 state changes of one release, each attempted by two processes at once (two
    clients) on the same condition: one matches, the other finds it changed."""
    other = Mongo(stack_env.mongo_url, mongo.db.name)
    try:
        mine, theirs = mongo.collection("releases"), other.collection("releases")
        await mine.insert_one({"_id": "r", "state": "s0", "events": []})
        winners, wrong = [], []
        for n in range(PAIRS):
            won = await asyncio.gather(attempt(mine, n, "mine"), attempt(theirs, n, "theirs"))
            if sorted(won) != [False, True]:
                wrong.append((n, won))
            winners.append("mine" if won[0] else "theirs")
        stored = await mine.find_one({"_id": "r"})
    finally:
        await other.close()
    assert wrong == [], f"{await server(mongo)}: pairs without exactly one winner: {wrong[:10]}"
    assert stored is not None
    assert stored["state"] == f"s{PAIRS}"
    assert stored["events"] == [{"n": n, "actor": a} for n, a in enumerate(winners)]


# 3 and 4. Queries read by index.


class Kept(monitoring.CommandListener):
    """Keeps every command sent to one database."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.commands: list[tuple[str, Doc]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.database_name == self.database:
            self.commands.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


class Recorded(Mongo):
    """Fabu's connection made with ``Mongo``'s options, its client also keeping each
    command it sends (``Mongo`` takes no listener of a caller's)."""

    def __init__(self, url: str, database: str) -> None:
        self.kept = Kept(database)
        self.client = AsyncMongoClient(
            url,
            tz_aware=True,
            maxPoolSize=16,
            serverSelectionTimeoutMS=SERVER_WAIT_MS,
            event_listeners=[Counted(), self.kept],
        )
        self.db = self.client[database]

    def queries(self) -> list[tuple[str, Doc]]:
        """The collection and ``find`` of every query kept since the last call (an update's
        or a delete's filter as a find of it), forgetting them."""
        found = []
        for name, command in self.kept.commands:
            collection = str(command.get(name))
            if name == "find":
                keys = ("filter", "sort", "limit", "projection")
                found.append((collection, {k: command[k] for k in keys if k in command}))
            elif name in ("update", "delete"):
                key = "updates" if name == "update" else "deletes"
                found += [(collection, {"filter": s["q"]}) for s in command[key]]
            elif name == "findAndModify":
                found.append((collection, {"filter": command["query"]}))
            elif name in ("aggregate", "count", "distinct"):
                raise AssertionError(f"explain the {name} on {collection} too: {command}")
        self.kept.commands.clear()
        return found


def stages(plan: object) -> list[tuple[str, str | None]]:
    """Every stage of a plan, with the index it reads: each node, however nested."""
    found: list[tuple[str, str | None]] = []
    if isinstance(plan, dict):
        if isinstance(plan.get("stage"), str):
            found.append((plan["stage"], plan.get("indexName")))
        for value in plan.values():
            found += stages(value)
    elif isinstance(plan, list):
        for value in plan:
            found += stages(value)
    return found


@dataclass(frozen=True)
class Explained:
    stages: list[tuple[str, str | None]]
    examined: int
    returned: int

    def reads(self, index: str) -> bool:
        """Whether the plan reads ``index`` (``_id_`` also by MongoDB's IDHACK, which
        names none)."""
        names = {stage for stage, _ in self.stages}
        return any(i == index for _, i in self.stages) or (index == "_id_" and "IDHACK" in names)

    def has(self, stage: str) -> bool:
        return any(s == stage for s, _ in self.stages)


async def explain(mongo: Mongo, collection: str, find: Doc) -> Explained:
    """The server's plan of ``find`` and what running it examined; the test is skipped
    on a server that cannot explain it."""
    try:
        answer = await mongo.db.command(
            "explain", {"find": collection, **find}, verbosity="executionStats"
        )
    except OperationFailure as exc:
        pytest.skip(f"{await server(mongo)} cannot explain a find: {exc}")
    plan = answer.get("queryPlanner", {}).get("winningPlan")
    statistics = answer.get("executionStats", {})
    if not plan or "totalDocsExamined" not in statistics:
        shown = str(answer.get("queryPlanner", answer))[:300]
        pytest.skip(f"{await server(mongo)} explains without MongoDB's plan: {shown}")
    return Explained(stages(plan), statistics["totalDocsExamined"], statistics["nReturned"])


async def index_keys(mongo: Mongo) -> dict[str, dict[str, set[str]]]:
    """Each collection's indexes by name, with the fields each has as keys."""
    found: dict[str, dict[str, set[str]]] = {}
    for collection in await mongo.db.list_collection_names():
        indexes = await mongo.db[collection].list_indexes()
        found[collection] = {ix["name"]: set(ix["key"]) async for ix in indexes}
    return found


def point(find: Doc) -> bool:
    """A lookup of one document by a unique key."""
    return any(
        k in find["filter"] and not isinstance(find["filter"][k], dict) for k in ("_id", "hash")
    )


@dataclass
class Seeded:
    releases: list[Release]
    token: str
    session: str


async def seed(mongo: Mongo) -> Seeded:
    """Every store's indexes as a process makes them, and a few hundred records stored
    through the stores."""
    await ensure_indexes(mongo)
    releases, catalog, users = Releases(mongo), Catalog(mongo), Users(mongo)
    made: list[Release] = []

    async def chain(service: str, environment: str) -> None:
        for i in range(RELEASES // (len(SERVICES) * len(ENVIRONMENTS))):
            release = record(
                service,
                environment,
                state=STATES[i % len(STATES)],
                operator=OPERATORS[i % len(OPERATORS)],
                generation=i,
            )
            await releases.create(release)
            # Let its lock go, as its final state would have.
            await mongo.collection("locks").delete_one({"_id": f"{service}/{environment}"})
            await releases.note(release.id, [TranscriptLine(at=now(), text=f"line {i}")])
            made.append(release)

    await asyncio.gather(*(chain(s, e) for s in SERVICES for e in ENVIRONMENTS))
    for i in range(60):
        await catalog.add_environment(Environment(name=f"env{i}", namespace=f"ns{i}"))
        await catalog.add_service(
            Service(name=f"svc{i}", image_repository=f"registry.example/team/svc{i}", team="t")
        )
        await catalog.add_template(
            Template(id=TemplateId("t"), version=i + 1, name="t", content=f"kind: ConfigMap # {i}")
        )
        await catalog.put_config(
            ServiceConfig(
                service=f"svc{i}",
                environment=f"env{i}",
                template_id=TemplateId("t"),
                params=BaseParams(),
            )
        )
        await users.add(User(name=f"user{i}"), None)
        _, token = await users.add_token(f"user{i}", "ci", None)
        session, _ = await users.add_session(f"user{i}", timedelta(hours=1))
        await releases.deliveries.claim(made[i].id, "succeeded/email-1", now())
    return Seeded(made, token, session)


@dataclass(frozen=True)
class Step:
    """A call of the release pipeline and the index each collection it queries is read by
    (made by its store's ``ensure_indexes``; ``_id_``: the collection's own)."""

    what: str
    call: Callable[[], Awaitable[object]]
    indexes: dict[str, str | set[str]]


async def test_the_release_pipelines_queries_are_read_by_index(
    stack_env: StackEnv, mongo: Mongo, stream_name: str
) -> None:
    seeded = await seed(mongo)
    recorded = Recorded(stack_env.mongo_url, mongo.db.name)
    subjects = Subjects(stream_name)
    bus = await Bus.connect(stack_env.nats_url, subjects, "test")
    try:
        releases, catalog, users = Releases(recorded), Catalog(recorded), Users(recorded)
        first = seeded.releases[0]
        started = await lifecycle.start(
            releases, bus, record("svc1", "env1"), REQUEST, Actor.person("alice")
        )

        async def cancel() -> object:
            current = await releases.head(started.id)
            assert current is not None
            return await lifecycle.take(
                releases, bus, current, CANCEL, Actor.person("alice"), Nothing()
            )

        rendered = Rendered(
            manifest="", manifest_sha256="", deployment="web", workloads=[], inventory=[]
        )
        line = TranscriptLine(at=now(), text="rendered")
        steps = [
            Step(
                "lifecycle.pending: the release by id (a stage's first read)",
                lambda: lifecycle.pending(
                    releases, bus, started.id, AS_RENDERER, ReleaseState.REQUESTED
                ),
                {"releases": "_id_"},
            ),
            Step(
                "Catalog: the service, the environment, the config and the template version",
                lambda: asyncio.gather(
                    catalog.service("svc1"),
                    catalog.environment("env1"),
                    catalog.config("svc1", "env1"),
                    catalog.template(TemplateId("t"), 2),
                ),
                {
                    "services": "_id_",
                    "environments": "_id_",
                    "service_configs": "_id_",
                    "template_versions": "_id_",
                },
            ),
            Step(
                "lifecycle.take: the change written, on the condition of the changes read",
                lambda: lifecycle.take(
                    releases, bus, started, RENDER, AS_RENDERER, rendered, [line]
                ),
                {"releases": "_id_"},
            ),
            Step(
                "lifecycle.take from the state read before: the write lost, the release read",
                lambda: lifecycle.take(releases, bus, started, RENDER, AS_RENDERER, rendered),
                {"releases": "_id_"},
            ),
            Step(
                "Releases.record_progress (the tracker)",
                lambda: releases.record_progress(first.id, [line], []),
                {"releases": "_id_"},
            ),
            Step(
                "Releases.detail (the release's page)",
                lambda: releases.detail(first.id),
                {
                    "releases": "_id_",
                    "release_lines": "by_release",
                    "release_measurements": "by_release",
                    "release_progress": "_id_",
                    "deliveries": "release_id",
                    "rollbacks": "_id_",
                },
            ),
            Step(
                "Releases.measurements (the tracker taking an analysis over)",
                lambda: releases.measurements(first.id),
                {"release_measurements": "by_release"},
            ),
            Step(
                "Releases.latest, running, inventories: a service's releases in an "
                "environment, newest first",
                lambda: asyncio.gather(
                    releases.latest("web", "prod"),
                    releases.running("web", "prod"),
                    releases.inventories("web", "prod"),
                ),
                {"releases": "by_service_env"},
            ),
            Step(
                "Releases.last_good: the newest that succeeded (by either index that serves it)",
                lambda: releases.last_good("web", "prod"),
                {"releases": {"by_service_env", "by_state"}},
            ),
            Step(
                "Deliveries.claim (the notifier)",
                lambda: releases.deliveries.claim(first.id, "failed/email-1", now()),
                {"deliveries": "release_id"},
            ),
            Step(
                "Users: the API token by its hash, the session, the user by name",
                lambda: asyncio.gather(
                    users.token_by_secret(seeded.token),
                    users.session(seeded.session),
                    users.get("user1"),
                ),
                {"api_tokens": "hash", "sessions": "_id_", "users": "_id_"},
            ),
            Step(
                "lifecycle.take cancel: a final state lets the release's lock go",
                cancel,
                {"releases": "_id_", "locks": "_id_"},
            ),
        ]
        by_keys_only = (await server(mongo)).startswith(EXPLAINS_BY_KEYS_ONLY)
        keys = await index_keys(recorded)
        recorded.queries()
        wrong, checked = [], 0
        for step in steps:
            await step.call()
            queries = recorded.queries()
            assert queries, f"{step.what}: no query recorded"
            for collection, find in queries:
                assert collection in step.indexes, f"{step.what}: a query on {collection}: {find}"
                index = step.indexes[collection]
                accepted = {index} if isinstance(index, str) else index
                if by_keys_only and not any(
                    set(find["filter"]) <= keys.get(collection, {}).get(i, set()) for i in accepted
                ):
                    continue
                checked += 1
                plan = await explain(recorded, collection, find)
                if plan.has("COLLSCAN") or not any(plan.reads(i) for i in accepted):
                    wrong.append(
                        f"{step.what}: {collection} {find} read by {plan.stages}, not {index}"
                    )
                elif point(find) and plan.examined > plan.returned:
                    wrong.append(
                        f"{step.what}: {collection} {find} examined {plan.examined} "
                        f"documents for {plan.returned}"
                    )
        assert wrong == [], f"{await server(mongo)}:\n" + "\n".join(wrong)
        assert checked >= 10, f"only {checked} queries explained"
    finally:
        await bus.js.delete_stream(subjects.stream)
        await bus.close()
        await recorded.close()


# The release list's filters, each with the index its page is a range of.
PAGES = [
    (ReleaseFilter(), "_id_"),
    (ReleaseFilter(environment="prod"), "by_environment"),
    (ReleaseFilter(state=ReleaseState.FAILED), "by_state"),
    (ReleaseFilter(operator="bob"), "by_operator"),
    (ReleaseFilter(service="web", environment="prod"), "by_service_env"),
]


async def test_a_newest_first_page_of_releases_is_an_index_range(
    stack_env: StackEnv, mongo: Mongo
) -> None:
    """The release list's query (``Releases.page``), a first page and the next, for each
    filter: read in the order of its sort's index, never sorted in memory."""
    name = await server(mongo)
    if name.startswith(EXPLAINS_BY_KEYS_ONLY):
        pytest.skip(f"{name} reads every match of a page before its limit: the list's bound")
    seeded = await seed(mongo)
    recorded = Recorded(stack_env.mongo_url, mongo.db.name)
    try:
        releases = Releases(recorded)
        recorded.queries()
        wrong = []
        for filters, index in PAGES:
            first = await releases.page(filters, limit=PAGE)
            await releases.page(filters, before=first[len(first) // 2].id, limit=PAGE)
            pages = recorded.queries()
            assert len(pages) == 2
            assert len(first) == min(PAGE, len([r for r in seeded.releases if matches(r, filters)]))
            for collection, find in pages:
                assert (collection, find["sort"], find["limit"]) == ("releases", {"_id": -1}, PAGE)
                plan = await explain(recorded, collection, find)
                if not (plan.has("IXSCAN") and plan.reads(index)) or plan.has("SORT"):
                    wrong.append(f"{find['filter']} read by {plan.stages}, not by {index} in order")
        assert wrong == [], f"{await server(mongo)}:\n" + "\n".join(wrong)
    finally:
        await recorded.close()


def matches(release: Release, filters: ReleaseFilter) -> bool:
    wanted = filters.model_dump(include={"service", "environment", "state", "operator"})
    return all(v is None or getattr(release, k) == v for k, v in wanted.items())
