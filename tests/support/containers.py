"""``FABU_STACK=containers``: NATS and MongoDB from testcontainers, where Docker runs.

This path cannot run on machines without a Docker engine (the default local
stack covers them); it only starts the two containers and hands their URLs to
the local stack as external services, so every other part stays the same.
"""

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def nats_and_mongo() -> Iterator[dict[str, str]]:
    from testcontainers.mongodb import MongoDbContainer  # noqa: PLC0415 - optional path
    from testcontainers.nats import NatsContainer  # noqa: PLC0415

    with (
        NatsContainer("nats:2.11-alpine").with_command("-js") as nats,
        MongoDbContainer("mongo:8.0") as mongo,
    ):
        yield {
            "FABU_NATS_URL": nats.nats_uri(),
            "FABU_MONGO_URL": mongo.get_connection_url(),
        }
