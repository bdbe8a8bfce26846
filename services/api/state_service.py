"""What runs: each service's live state per environment (``shared.cluster.live``), for the JSON
route, the UI pages and the command line."""

import asyncio

from pydantic import BaseModel

from services.api.access import Permission, Principal, need
from services.api.context import Api
from shared.cluster.client import ClusterError
from shared.cluster.live import Health, ServiceState, matched
from shared.errors import found
from shared.models.base import now
from shared.models.catalog import Environment, Service

# States computed at once for a page of many services.
CONCURRENT_STATES = 16


class ServiceStates(BaseModel):
    service: str
    # One per environment a release of the service has reached.
    environments: list[ServiceState]


async def _state(api: Api, service: Service, env: Environment) -> ServiceState | None:
    """The service's live state in ``env``; None where no release of it ever reached
    the cluster."""
    applied, last_good = await asyncio.gather(
        api.releases.applied(service.name, env.name),
        api.releases.last_good(service.name, env.name),
    )
    release = next((r for r in applied if r.applied_whole), None)
    if not applied:
        return None  # never reached the cluster there: nothing of it to observe
    try:
        cluster = await api.clusters.get(env)
    except ClusterError as exc:
        return ServiceState(
            service=service.name,
            environment=env.name,
            namespace=env.namespace,
            health=Health.UNKNOWN,
            sync="Unknown",
            release=matched(release),
            last_good=matched(last_good),
            error=exc.message,
            observed_at=now(),
        )
    return await api.observer.state(
        cluster, service.name, env.name, env.namespace, release, last_good
    )


async def service_states(
    api: Api, principal: Principal, name: str, environment: str | None = None
) -> ServiceStates:
    need(principal, Permission.VIEW)
    service = found(await api.catalog.service(name), f"service {name!r}")
    envs = await api.catalog.environments()
    if environment is not None:
        envs = [
            found(
                next((e for e in envs if e.name == environment), None),
                f"environment {environment!r}",
            )
        ]
    states = await asyncio.gather(*(_state(api, service, env) for env in envs))
    return ServiceStates(service=name, environments=[s for s in states if s is not None])


async def all_states(
    api: Api, principal: Principal, services: list[Service]
) -> dict[tuple[str, str], ServiceState]:
    """Every listed service's state in every environment: (service, environment) → state."""
    need(principal, Permission.VIEW)
    envs = await api.catalog.environments()
    limit = asyncio.Semaphore(CONCURRENT_STATES)

    async def one(service: Service, env: Environment) -> ServiceState | None:
        async with limit:
            return await _state(api, service, env)

    pairs = [(s, e) for s in services for e in envs]
    states = await asyncio.gather(*(one(s, e) for s, e in pairs))
    return {(s.name, e.name): st for (s, e), st in zip(pairs, states, strict=True) if st}
