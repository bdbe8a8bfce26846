"""Users with given grants, and API clients acting as them, made through the admin API."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from devstack.system import FabuSystem


async def make_user(
    api: httpx.AsyncClient, grants: list[dict[str, Any]], password: str | None = None
) -> str:
    name = f"u-{uuid.uuid4().hex[:10]}"
    made = await api.post("/users", json={"name": name, "grants": grants, "password": password})
    assert made.status_code == 201, made.text
    return name


async def token_for(api: httpx.AsyncClient, name: str, **fields: Any) -> dict[str, Any]:
    made = await api.post("/tokens", json={"name": "test", "user": name, **fields})
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


@asynccontextmanager
async def acting_as(fabu: FabuSystem, token: str | None) -> AsyncIterator[httpx.AsyncClient]:
    """The JSON API with ``token`` (None: no credentials at all)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(
        base_url=fabu.api_url + "/api/v1", headers=headers, timeout=30
    ) as http:
        yield http


@asynccontextmanager
async def user_with(
    api: httpx.AsyncClient, fabu: FabuSystem, grants: list[dict[str, Any]]
) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    """A new user holding ``grants``, and the API acting as them."""
    name = await make_user(api, grants)
    token = await token_for(api, name)
    async with acting_as(fabu, token["token"]) as http:
        yield name, http
