"""Small helpers over the Kubernetes client and the built kubectl, for tests."""

import asyncio
from typing import Any, cast

from kubernetes_asyncio import client

from tests.support.stack import StackEnv


def deployment(
    name: str, image: str, replicas: int = 1, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    pod_labels = {"app": name, **(labels or {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


async def create_deployment(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> None:
    await client.AppsV1Api(api).create_namespaced_deployment(
        namespace, cast(client.V1Deployment, body)
    )


async def pods(api: client.ApiClient, namespace: str, app: str) -> list[Any]:
    found = await client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"app={app}")
    return list(found.items)


async def kubectl(env: StackEnv, *args: str) -> tuple[int, str]:
    """Run the stack's kubectl; returns the exit code and combined output."""
    process = await asyncio.create_subprocess_exec(
        str(env.kubectl),
        f"--kubeconfig={env.kubeconfig}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()
