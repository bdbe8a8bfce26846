"""The connection and its collections (each store makes its own indexes: ``indexes``)."""

import json
from typing import Any

from bson import ObjectId
from prometheus_client import Counter
from pymongo import AsyncMongoClient, monitoring
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

    async def ping(self) -> None:
        await self.db.command("ping")

    async def close(self) -> None:
        await self.client.close()


def new_id() -> str:
    """Time-ordered ids: newest-first pagination sorts on them."""
    return str(ObjectId())


# A config's template values are stored as one JSON text: their keys are user data
# (label keys such as ``app.kubernetes.io/name``, a schema's own names) that some
# MongoDB-protocol servers refuse as field names (dots, a leading $), and their shape
# is the template's. Fabu's own settings stay fields.
SETTINGS = ("rollout_timeout_s", "auto_rollback", "canary", "blue_green")


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
