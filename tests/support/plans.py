"""Release plans in tests: several services in one environment, plans and their ends."""

from typing import Any

import httpx

from tests.conftest import unique
from tests.support.releases import DEMO, push
from tests.support.stack import StackEnv
from tests.support.wait import eventually

PLAN_FINAL = {"succeeded", "failed", "cancelled", "rejected"}


async def environment(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, **fields: Any
) -> str:
    """An environment on ``namespace`` (``fields``: approval_required, requires_success_in...)."""
    name = unique("e")
    created = await api.post(
        "/environments",
        json={
            "name": name,
            "namespace": namespace,
            "kubeconfig": str(stack_env.kubeconfig),
            "rollout_timeout_s": 60,
            **fields,
        },
    )
    assert created.status_code == 201, created.text
    return name


async def services(
    api: httpx.AsyncClient,
    stack_env: StackEnv,
    environments: list[str],
    count: int,
    versions: tuple[str, ...] = ("1.0.0",),
    **params: Any,
) -> list[str]:
    """``count`` services of one new team, each configured in every environment given,
    with each of ``versions`` pushed to the registry."""
    team = unique("team")
    template_id = (await api.post("/templates", json={"name": "web", "content": DEMO})).json()["id"]
    registry = stack_env.registry_url.removeprefix("http://")
    names = []
    for _ in range(count):
        name = unique("svc")
        created = await api.post(
            "/services",
            json={"name": name, "image_repository": f"{registry}/team/{name}", "team": team},
        )
        assert created.status_code == 201, created.text
        for env in environments:
            config = await api.put(
                f"/services/{name}/config/{env}",
                json={"template_id": template_id, "params": params},
            )
            assert config.status_code == 200, config.text
        for version in versions:
            await push(api, name, version)
        names.append(name)
    return names


async def create(
    api: httpx.AsyncClient, environment: str, *items: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    made = await api.post(
        "/plans", json={"environment": environment, "items": list(items), **fields}
    )
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


async def plan_in(
    api: httpx.AsyncClient, plan_id: str, states: set[str], within: float = 120
) -> dict[str, Any]:
    """The plan once it is in one of ``states``."""

    async def probe() -> dict[str, Any] | None:
        body: dict[str, Any] = (await api.get(f"/plans/{plan_id}")).json()
        return body if body["state"] in states else None

    return await eventually(
        probe, f"plan {plan_id} to be {' or '.join(sorted(states))}", within=within
    )


async def plan_done(api: httpx.AsyncClient, plan_id: str, within: float = 120) -> dict[str, Any]:
    return await plan_in(api, plan_id, PLAN_FINAL, within)


async def releases_of(api: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each started item's release, by service."""
    found = {}
    for item in body["items"]:
        if item["release_id"]:
            found[item["service"]] = (await api.get(f"/releases/{item['release_id']}")).json()
    return found
