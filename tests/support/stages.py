"""A stage's context on the tests' Fabu system: its real store, bus and clusters."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from devstack.system import FabuSystem
from shared.settings import Settings
from shared.worker import Context, context


def settings_of(fabu: FabuSystem) -> Settings:
    """The settings the system's stage processes run with."""
    fields = {
        "mongo_url": "FABU_MONGO_URL",
        "mongo_db": "FABU_MONGO_DB",
        "nats_url": "FABU_NATS_URL",
        "nats_prefix": "FABU_NATS_PREFIX",
        "kubeconfig_dir": "FABU_KUBECONFIG_DIR",
    }
    given = {f: fabu.env[var] for f, var in fields.items() if var in fabu.env}
    return Settings.model_validate(given)


@asynccontextmanager
async def stage(fabu: FabuSystem, process: str = "test") -> AsyncIterator[Context]:
    async with context(settings_of(fabu), process) as ctx:
        yield ctx
