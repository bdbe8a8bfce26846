"""Connection, collections and indexes."""

import json
from typing import Any

from bson import ObjectId
from prometheus_client import Counter
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, monitoring
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

Doc = dict[str, Any]
# What the store raises when the database fails; callers need not know the driver.
StoreError = PyMongoError
# How long an operation waits for an unreachable database before StoreError (the
# API's 503): long enough for a failover, short enough not to hang a request.
SERVER_WAIT_MS = 3000
# Served with the process's other metrics (``shared.probes``, the API's /metrics).
COMMANDS = Counter(
    "fabu_database_commands",
    "Commands this process sent to the database",
    ["command", "collection"],
)


class Counted(monitoring.CommandListener):
    """Counts each command sent, by name and collection (what a stage costs the database)."""

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        collection = target if isinstance(target, str) else ""
        COMMANDS.labels(event.command_name, collection).inc()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


class Mongo:
    def __init__(self, url: str, database: str, pool: int = 16) -> None:
        self.client: AsyncMongoClient[Doc] = AsyncMongoClient(
            url,
            tz_aware=True,
            maxPoolSize=pool,
            serverSelectionTimeoutMS=SERVER_WAIT_MS,
            event_listeners=[Counted()],
        )
        self.db: AsyncDatabase[Doc] = self.client[database]

    def collection(self, name: str) -> AsyncCollection[Doc]:
        return self.db[name]

    async def ensure_indexes(self) -> None:
        releases = self.collection("releases")
        await releases.create_index(
            [("service", ASCENDING), ("environment", ASCENDING), ("_id", DESCENDING)],
            name="by_service_env",
        )
        # One per list filter, each ending in the sort key, so a page is an index range.
        await releases.create_index(
            [("environment", ASCENDING), ("_id", DESCENDING)], name="by_environment"
        )
        await releases.create_index([("state", ASCENDING), ("_id", DESCENDING)], name="by_state")
        await releases.create_index(
            [("operator", ASCENDING), ("_id", DESCENDING)], name="by_operator"
        )
        await releases.create_index("created_at", name="by_created_at")
        await self.collection("services").create_index("name", unique=True, name="name")
        await self.collection("environments").create_index("name", unique=True, name="name")
        tokens = self.collection("api_tokens")
        await tokens.create_index("hash", unique=True, name="hash")
        await tokens.create_index("user", name="user")
        await self.collection("sessions").create_index("user", name="user")
        await self.collection("deliveries").create_index("release_id", name="release_id")
        await self.collection("release_lines").create_index(
            [("release_id", ASCENDING), ("at", ASCENDING)], name="by_release"
        )
        await self.collection("images").create_index(
            [("repository", ASCENDING), ("digest", ASCENDING)], name="by_repository"
        )
        attempts = self.collection("login_attempts")
        for field in ("user", "address"):
            await attempts.create_index(
                [(field, ASCENDING), ("at", DESCENDING)], name=f"by_{field}"
            )
        await attempts.create_index("at", name="at")
        audit = self.collection("audit")
        for field in ("actor", "action", "target"):
            await audit.create_index([(field, ASCENDING), ("_id", DESCENDING)], name=f"by_{field}")

    async def ping(self) -> None:
        await self.db.command("ping")

    async def close(self) -> None:
        await self.client.close()


def new_id() -> str:
    """Time-ordered ids: newest-first pagination sorts on them."""
    return str(ObjectId())


# A config's template values are stored as one JSON text: their keys are user data
# (label keys such as ``app.kubernetes.io/name``, a schema's own names) that FerretDB
# may refuse as field names (dots, a leading $), and their shape is the template's.
# Fabu's own settings stay fields.
SETTINGS = ("rollout_timeout_s", "auto_rollback", "canary")


def encode_params(params: Doc) -> Doc:
    values = {k: v for k, v in params.items() if k not in SETTINGS}
    return {
        **{k: params[k] for k in SETTINGS if k in params},
        "values": json.dumps(values, ensure_ascii=False),
    }


def _mapping(pairs: list[Doc]) -> dict[str, Any]:
    return {p["k"]: p["v"] for p in pairs}


def decode_params(doc: Doc) -> Doc:
    if isinstance(doc.get("values"), str):
        settings = {k: v for k, v in doc.items() if k != "values"}
        return {**json.loads(doc["values"]), **settings}
    # Stored before templates declared parameters: maps as lists of {k, v} documents.
    return {
        **doc,
        "labels": _mapping(doc.get("labels", [])),
        "env": _mapping(doc.get("env", [])),
        "resources": {p["k"]: _mapping(p["v"]) for p in doc.get("resources", [])},
    }
