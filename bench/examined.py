"""Documents examined per release: the database server's own account of a window of work.

:class:`Examined` turns the server's profiler on for Fabu's database (level 2:
every operation, into a fresh ``system.profile``) for a measured window. After
it, each read or update the profile recorded (find, findAndModify, update,
delete, count, distinct, aggregate) is put to the server's ``explain`` with
``executionStats``: how many documents, and index keys, answering it examines.
An update's or a delete's statements are explained as the finds of their
filters (servers do not all explain an update's statements alike). The
database's own time is the sum of the profile's ``millis`` (every operation,
in whole milliseconds as the server rounds them down).

The account is taken after the window: each command is explained against the
data as it is then, so a filter on a state its own update changed may match
nothing by then. It is the server's account: SecantusDB 0.7.0b3 explains a
filter of several fields as a COLLSCAN of the whole collection even where its
query looks the documents up by one of those fields' index (``{_id, events}``:
an ``_id`` lookup), so each shape of command is printed with its plan and its
profiled milliseconds beside the documents. A server that cannot profile or
explain gets "n/a" with its reason, and the run goes on.
"""

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from bench.readings import Row
from devstack.system import FabuSystem

Doc = dict[str, Any]
# The commands that look documents up, as the profile names them.
LOOKUPS = ("find", "findAndModify", "update", "delete", "count", "distinct", "aggregate")
# What a profiled command carries that is about its session or its write, not its query:
# explain refuses some of it (a write concern) and needs none of it.
FRAMING = (
    "lsid",
    "txnNumber",
    "autocommit",
    "startTransaction",
    "$db",
    "$clusterTime",
    "$readPreference",
    "readConcern",
    "writeConcern",
    "maxTimeMS",
    "bypassDocumentValidation",
)
# The fresh profile's size: a window of 500 releases must not roll over.
PROFILE_BYTES = 1 << 30
# The collection a look-up is sent to, to see the profiler record it.
PROBE = "bench_profiler_probe"
# Explains sent at once.
AT_ONCE = 4


def _said(exc: PyMongoError) -> str:
    return str(exc).split(", full error:")[0][:120]


def _explainable(name: str, command: Doc) -> list[Doc]:
    """The commands to explain for one profiled command: itself, or the find of each of
    an update's or a delete's statements."""
    plain = {k: v for k, v in command.items() if k not in FRAMING}
    if name == "update":
        return [
            {"find": plain["update"], "filter": s.get("q", {}), "limit": 0 if s.get("multi") else 1}
            for s in plain.get("updates", [])
        ]
    if name == "delete":
        return [
            {"find": plain["delete"], "filter": s.get("q", {}), "limit": s.get("limit", 0)}
            for s in plain.get("deletes", [])
        ]
    return [plain]


def _stats(explained: Doc) -> Doc:
    """The execution statistics of an explain's answer (an aggregate's: its cursor's)."""
    if "executionStats" in explained:
        stats: Doc = explained["executionStats"]
        return stats
    for stage in explained.get("stages", []):
        cursor = stage.get("$cursor", {}) if isinstance(stage, dict) else {}
        if "executionStats" in cursor:
            found: Doc = cursor["executionStats"]
            return found
    raise LookupError("no executionStats in its explain")


def _scans(plan: Any) -> set[str]:
    """The scanning stages (COLLSCAN, IXSCAN, ...) anywhere in an explain's answer."""
    found: set[str] = set()
    if isinstance(plan, dict):
        stage = plan.get("stage")
        if isinstance(stage, str) and (
            "SCAN" in stage or stage == "IDHACK" or stage.startswith("EXPRESS")
        ):
            found.add(stage)
        for value in plan.values():
            found |= _scans(value)
    elif isinstance(plan, list):
        for item in plan:
            found |= _scans(item)
    return found


def _shape(name: str, command: Doc) -> str:
    """What a command looks up by, without its values: ``find {_id, state} sort _id``."""
    query = command.get("filter") or command.get("query") or {}
    if name == "aggregate":
        first = (command.get("pipeline") or [{}])[0]
        query = first.get("$match", {}) if isinstance(first, dict) else {}
    elif name in ("update", "delete"):
        statements = command.get("updates" if name == "update" else "deletes") or [{}]
        query = statements[0].get("q", {})
    said = f"{name} {{{', '.join(sorted(query))}}}"
    if command.get("sort"):
        said += f" sort {', '.join(command['sort'])}"
    return said


@dataclass
class Account:
    """What a window's lookups examined, by collection and by shape of command."""

    docs: Counter[str] = field(default_factory=Counter)
    keys: Counter[str] = field(default_factory=Counter)
    ops: Counter[str] = field(default_factory=Counter)
    # Per shape (``collection: command {fields}``): documents examined, the database's
    # milliseconds (as profiled), and the plans.
    shape_docs: Counter[str] = field(default_factory=Counter)
    shape_ms: Counter[str] = field(default_factory=Counter)
    shape_plans: dict[str, set[str]] = field(default_factory=dict)
    # Commands explained, those whose explain failed, and the first reason.
    explained: int = 0
    failed: int = 0
    failure: str = ""


class Examined:
    """The server's profiler on for Fabu's database from :meth:`start` to :meth:`stop`;
    then :meth:`rows`: documents examined and database milliseconds per release."""

    def __init__(self, mongo_url: str, database: str) -> None:
        self.client: AsyncMongoClient[Doc] = AsyncMongoClient(mongo_url)
        self.db = self.client[database]
        # Why there is no account ("" while there is one).
        self.why_not = ""
        self.entries: list[Doc] = []
        self.stopped = False
        # Per release, once :meth:`rows` has told them: documents examined, database ms.
        self.docs_per: float | None = None
        self.ms_per: float | None = None

    async def start(self) -> None:
        """A fresh profile of every operation from now on: uncapped where the server
        records into that (SecantusDB's capped collection costs each insert in
        proportion to what it holds), else capped and large."""
        try:
            for capped in (False, True):
                await self.db.command("profile", 0)
                await self.db.drop_collection("system.profile")
                options: Doc = {"capped": True, "size": PROFILE_BYTES} if capped else {}
                # Else the server's own profile collection, of its own size.
                with contextlib.suppress(PyMongoError):
                    await self.db.create_collection("system.profile", **options)
                await self.db.command("profile", 2)
                await self.db[PROBE].find_one({})
                if await self.db["system.profile"].find_one({"ns": f"{self.db.name}.{PROBE}"}):
                    return
            self.why_not = "the server's profile recorded nothing"
        except PyMongoError as exc:
            self.why_not = f"the server does not profile: {_said(exc)}"

    async def stop(self) -> None:
        """The profiler off; what it recorded kept (the inserted documents left out).
        Only the first call stops it."""
        if self.why_not or self.stopped:
            return
        self.stopped = True
        try:
            await self.db.command("profile", 0)
            found = self.db["system.profile"].find(
                {"ns": {"$ne": f"{self.db.name}.{PROBE}"}}, {"command.documents": 0}
            )
            self.entries = await found.to_list()
        except PyMongoError as exc:
            self.why_not = f"the profile could not be read: {_said(exc)}"

    async def close(self) -> None:
        """The profile dropped (it holds the window's commands), the connection closed."""
        with contextlib.suppress(PyMongoError):
            await self.db.command("profile", 0)
            await self.db.drop_collection("system.profile")
        await self.client.close()

    async def account(self) -> Account:
        """Each profiled lookup explained (the same command once)."""
        account = Account()
        gate = asyncio.Semaphore(AT_ONCE)
        answers: dict[str, asyncio.Task[Doc]] = {}

        async def explain(command: Doc) -> Doc:
            async with gate:
                answer: Doc = await self.db.command("explain", command, verbosity="executionStats")
                return answer

        jobs: list[tuple[str, str, asyncio.Task[Doc]]] = []
        for entry in self.entries:
            command = entry.get("command", {})
            name = next(iter(command), "")
            if name not in LOOKUPS or not isinstance(command.get(name), str):
                continue
            collection = command[name]
            account.ops[collection] += 1
            shape = f"{collection}: {_shape(name, command)}"
            account.shape_ms[shape] += int(entry.get("millis", 0))
            for each in _explainable(name, command):
                key = repr(each)
                if key not in answers:
                    answers[key] = asyncio.create_task(explain(each))
                jobs.append((collection, shape, answers[key]))
        await asyncio.gather(*answers.values(), return_exceptions=True)
        for collection, shape, task in jobs:
            try:
                answer = task.result()
                stats = _stats(answer)
                docs = int(stats.get("totalDocsExamined", 0))
                keys = int(stats.get("totalKeysExamined", 0))
            except (PyMongoError, LookupError, TypeError, ValueError) as exc:
                account.failed += 1
                account.failure = account.failure or (
                    _said(exc) if isinstance(exc, PyMongoError) else str(exc)
                )
                continue
            account.explained += 1
            account.docs[collection] += docs
            account.keys[collection] += keys
            account.shape_docs[shape] += docs
            account.shape_plans.setdefault(shape, set()).update(_scans(answer))
        return account

    async def rows(self, label: str, per: int) -> list[Row]:
        """Documents examined and database milliseconds per release of the window
        (``per`` releases), by collection, the most examining shapes of command named."""
        title = f"  documents examined per release, {label}"
        if self.why_not:
            return [(f"{title} ({self.why_not})", "n/a", "")]
        account = await self.account()
        rows: list[Row] = []
        if account.failed and not account.explained:
            rows.append((f"{title} (the server does not explain: {account.failure})", "n/a", ""))
        else:
            docs, keys = account.docs.total(), account.keys.total()
            self.docs_per = docs / per
            rows.append((f"{title}: docs / index keys", f"{docs / per:.1f} / {keys / per:.1f}", ""))
            rows += [
                (
                    f"    {name} ({account.ops[name] / per:.1f} lookups)",
                    f"{n / per:.1f} / {account.keys[name] / per:.1f}",
                    "",
                )
                for name, n in account.docs.most_common(6)
            ]
            rows += [
                (
                    f"      {shape} [{', '.join(sorted(account.shape_plans.get(shape, ())))}]"
                    ": docs / ms",
                    f"{n / per:.1f} / {account.shape_ms[shape] / per:.1f}",
                    "",
                )
                for shape, n in account.shape_docs.most_common(4)
                if n
            ]
            if account.failed:
                rows.append((f"    not explained ({account.failure})", f"{account.failed}", ""))
        millis: Counter[str] = Counter()
        for entry in self.entries:
            millis[str(entry.get("ns", "")).partition(".")[2] or "(database)"] += int(
                entry.get("millis", 0)
            )
        self.ms_per = millis.total() / per
        rows.append(
            (
                f"  database ms per release, {label} (profiled ops: {len(self.entries) / per:.1f})",
                f"{millis.total() / per:.1f}",
                "",
            )
        )
        rows += [(f"    {name}", f"{n / per:.1f}", "") for name, n in millis.most_common(4) if n]
        return rows


async def examined(system: FabuSystem) -> Examined:
    """A window on ``system``'s database, started now (see :class:`Examined`)."""
    window = Examined(system.env["FABU_MONGO_URL"], system.env.get("FABU_MONGO_DB", "fabu"))
    await window.start()
    return window
