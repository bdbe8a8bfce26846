"""The local cluster is real: scheduling, rollout status, failure modes and logs."""

from typing import Any

from kubernetes_asyncio import client

from devstack import kwok
from tests.support.kube import create_deployment, deployment, kubectl, pods
from tests.support.stack import StackEnv
from tests.support.wait import eventually


def _container(pod: Any) -> Any:
    statuses = pod.status.container_statuses or []
    return statuses[0] if statuses else None


async def test_deployment_schedules_on_kwok_nodes_and_rolls_out(
    kube: client.ApiClient, namespace: str, stack_env: StackEnv
) -> None:
    await create_deployment(kube, namespace, deployment("web", "registry.local/web:1.0", 3))

    code, out = await kubectl(
        stack_env, "-n", namespace, "rollout", "status", "deployment/web", "--timeout=60s"
    )

    assert code == 0, out
    assert 'deployment "web" successfully rolled out' in out
    running = await pods(kube, namespace, "web")
    assert len(running) == 3
    assert {p.spec.node_name for p in running} <= {f"kwok-node-{i}" for i in range(kwok.NODE_COUNT)}
    assert all(p.status.phase == "Running" for p in running)
    live = await client.AppsV1Api(kube).read_namespaced_deployment("web", namespace)
    assert live.status.available_replicas == 3
    assert live.status.updated_replicas == 3


async def test_never_ready_pod_stays_unavailable(
    kube: client.ApiClient, namespace: str, stack_env: StackEnv
) -> None:
    await create_deployment(
        kube,
        namespace,
        deployment("stuck", "registry.local/stuck:1.0", labels={kwok.FAULT_LABEL: "never-ready"}),
    )
    # A healthy twin started at the same time proves the ready delay has passed.
    await create_deployment(kube, namespace, deployment("twin", "registry.local/twin:1.0"))

    async def started() -> Any:
        found = await pods(kube, namespace, "stuck")
        ready = found and _container(found[0]) and _container(found[0]).started
        return found[0] if ready else None

    pod = await eventually(started, "the never-ready pod to start")
    code, out = await kubectl(
        stack_env, "-n", namespace, "rollout", "status", "deployment/twin", "--timeout=60s"
    )
    assert code == 0, out

    pod = (await pods(kube, namespace, "stuck"))[0]
    assert pod.status.phase == "Running"
    assert _container(pod).ready is False
    ready = next(c for c in pod.status.conditions if c.type == "Ready")
    assert ready.status == "False"
    live = await client.AppsV1Api(kube).read_namespaced_deployment("stuck", namespace)
    assert not live.status.available_replicas
    assert live.status.unavailable_replicas == 1
    code, out = await kubectl(
        stack_env, "-n", namespace, "rollout", "status", "deployment/stuck", "--timeout=2s"
    )
    assert code != 0
    assert "0 of 1 updated replicas are available" in out


async def test_crash_looping_pod_restarts_with_crash_loop_back_off(
    kube: client.ApiClient, namespace: str
) -> None:
    await create_deployment(
        kube, namespace, deployment("crashy", "registry.local/crashy:2.0-crash-loop")
    )

    async def backing_off() -> Any:
        found = await pods(kube, namespace, "crashy")
        status = found and _container(found[0])
        waiting = status and status.state.waiting
        return status if waiting and waiting.reason == "CrashLoopBackOff" else None

    first = await eventually(backing_off, "CrashLoopBackOff")
    assert first.restart_count >= 1
    assert first.last_state.terminated.exit_code == 1
    assert first.last_state.terminated.reason == "Error"
    assert first.ready is False

    async def restarted_again() -> Any:
        found = await pods(kube, namespace, "crashy")
        status = found and _container(found[0])
        return status if status and status.restart_count > first.restart_count else None

    later = await eventually(restarted_again, "a growing restartCount")
    assert later.last_state.terminated is not None
    pod = (await pods(kube, namespace, "crashy"))[0]
    assert pod.status.phase == "Running"


async def test_image_pull_failure_by_tag(kube: client.ApiClient, namespace: str) -> None:
    await create_deployment(
        kube, namespace, deployment("nopull", "registry.local/nopull:3.0-pull-fail")
    )

    async def backing_off() -> Any:
        found = await pods(kube, namespace, "nopull")
        status = found and _container(found[0])
        waiting = status and status.state.waiting
        return found[0] if waiting and waiting.reason == "ImagePullBackOff" else None

    pod = await eventually(backing_off, "ImagePullBackOff")
    assert pod.status.phase == "Pending"
    assert "registry.local/nopull:3.0-pull-fail" in _container(pod).state.waiting.message


async def test_logs_current_and_previous_through_kubectl_and_the_api(
    kube: client.ApiClient, namespace: str, stack_env: StackEnv
) -> None:
    await create_deployment(kube, namespace, deployment("talker", "registry.local/talker:1.0"))
    code, out = await kubectl(
        stack_env, "-n", namespace, "rollout", "status", "deployment/talker", "--timeout=60s"
    )
    assert code == 0, out
    pod = (await pods(kube, namespace, "talker"))[0].metadata.name

    code, current = await kubectl(stack_env, "-n", namespace, "logs", pod)
    assert code == 0, current
    assert current.splitlines() == list(kwok.CURRENT_LOG_LINES)
    code, previous = await kubectl(stack_env, "-n", namespace, "logs", "--previous", pod)
    assert code == 0, previous
    assert previous.splitlines() == list(kwok.PREVIOUS_LOG_LINES)

    core = client.CoreV1Api(kube)
    via_api = await core.read_namespaced_pod_log(pod, namespace, container="app")
    assert via_api.splitlines() == list(kwok.CURRENT_LOG_LINES)
    via_api = await core.read_namespaced_pod_log(pod, namespace, previous=True, tail_lines=1)
    assert via_api.splitlines() == [kwok.PREVIOUS_LOG_LINES[-1]]
