"""Driving Fabu through its API in tests: a service ready to release, releases, waits."""

from pathlib import Path
from typing import Any

import httpx

from devstack.registry import push_image
from tests.conftest import unique
from tests.support.stack import StackEnv
from tests.support.wait import eventually

DEMO = (Path(__file__).parents[2] / "devstack" / "demo" / "web-service.yaml.j2").read_text()
# A second Deployment to add to a template: the service's worker.
WORKER = """
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ service ~ "-worker" }}
spec:
  replicas: 1
  selector:
    matchLabels: {{ {"app": service ~ "-worker"} }}
  template:
    metadata:
      labels: {{ {"app": service ~ "-worker"} }}
    spec:
      containers:
      - name: worker
        image: {{ image }}
"""
FINAL = {"succeeded", "failed", "cancelled"}


async def prepare(
    api: httpx.AsyncClient,
    stack_env: StackEnv,
    namespace: str,
    template: str = DEMO,
    notify_emails: list[str] | None = None,
    **params: Any,
) -> tuple[str, str]:
    """An environment on the test's namespace, a template, a service and its config;
    with ``notify_emails``, an email channel for its results."""
    environment, service = unique("e"), unique("svc")
    created = await api.post(
        "/environments",
        json={
            "name": environment,
            "namespace": namespace,
            "kubeconfig": str(stack_env.kubeconfig),
            "rollout_timeout_s": 60,
        },
    )
    assert created.status_code == 201, created.text
    template_id = (await api.post("/templates", json={"name": "web", "content": template})).json()[
        "id"
    ]
    registry = stack_env.registry_url.removeprefix("http://")
    created = await api.post(
        "/services",
        json={"name": service, "image_repository": f"{registry}/team/{service}", "team": "core"},
    )
    assert created.status_code == 201, created.text
    config = await api.put(
        f"/services/{service}/config/{environment}",
        json={"template_id": template_id, "params": params},
    )
    assert config.status_code == 200, config.text
    if notify_emails:
        channels = [{"type": "email", "recipients": notify_emails}]
        answer = await api.put(f"/services/{service}/notifications/{environment}", json=channels)
        assert answer.status_code == 200, answer.text
    return service, environment


async def push(api: httpx.AsyncClient, service: str, version: str) -> None:
    """Push the service's image at ``version`` to the local registry, as CI would."""
    repository = (await api.get(f"/services/{service}")).json()["image_repository"]
    host, _, name = repository.partition("/")
    await push_image(f"http://{host}", name, version)


async def release(
    api: httpx.AsyncClient,
    service: str,
    environment: str,
    version: str,
    expect: str = "requested",
) -> str:
    await push(api, service, version)
    accepted = await api.post(
        "/releases",
        json={"service": service, "environment": environment, "version": version},
    )
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["state"] == expect
    release_id: str = accepted.json()["id"]
    return release_id


async def finished(api: httpx.AsyncClient, release_id: str, within: float = 60) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        body: dict[str, Any] = (await api.get(f"/releases/{release_id}")).json()
        return body if body["state"] in FINAL else None

    return await eventually(probe, f"release {release_id} to finish", within=within)


def delivery(body: dict[str, Any], event: str, channel_type: str) -> dict[str, Any] | None:
    """The release's delivery of ``event`` on its (one) channel of that type."""
    for key, value in body["notifications"].items():
        if key.startswith(f"{event}/{channel_type}-"):
            found: dict[str, Any] = value
            return found
    return None


async def emailed(api: httpx.AsyncClient, release_id: str, event: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        body: dict[str, Any] = (await api.get(f"/releases/{release_id}")).json()
        sent = delivery(body, event, "email")
        return body if sent and sent["state"] == "sent" else None

    return await eventually(probe, f"the {event} email of {release_id} to be sent")
