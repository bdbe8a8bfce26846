"""Hook Jobs on the real stack (KWOK runs their pods): a hook's pods and phase are kept on
the release while it runs, a cause retrying will not fix fails it at once, its Job is
deleted as its ``fabu.io/hook-delete-policy`` says, and a failed post-rollout check
rolls the release back."""

from datetime import datetime
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client

from devstack import kwok
from devstack.system import FabuSystem
from tests.support.releases import DEMO, finished, prepare, release
from tests.support.stack import StackEnv
from tests.support.wait import eventually

# A hook Job beside the demo's Service and Deployment; the braces build its name, its
# annotations and its pods' labels (``hook`` and ``job_labels`` are set in front).
HOOK = """
---
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ service ~ "-" ~ job }}
  annotations: {{ hook }}
spec:
  backoffLimit: {{ backoff_limit }}
  template:
    metadata:
      labels: {{ job_labels }}
    spec:
      restartPolicy: Never
      nodeSelector: {{ node_selector }}
      containers:
      - name: {{ job }}
        image: {{ image }}
"""


def hooked(
    job: str,
    when: str,
    job_labels: str = "{}",
    policy: str | None = None,
    backoff_limit: int = 0,
    node_selector: dict[str, str] | None = None,
) -> str:
    """A hook Job named ``<service>-<job>`` run ``when``, its pods labelled by the
    expression ``job_labels`` and placed by ``node_selector``, with the delete
    ``policy`` given."""
    hook = {"fabu.io/hook": when} | ({"fabu.io/hook-delete-policy": policy} if policy else {})
    sets = (
        f"{{% set job = {job!r} %}}{{% set hook = {hook!r} %}}"
        f"{{% set job_labels = {job_labels} %}}{{% set backoff_limit = {backoff_limit} %}}"
        f"{{% set node_selector = {node_selector or {}!r} %}}"
    )
    return sets + HOOK


CRASH_LOOP = repr({kwok.FAULT_LABEL: kwok.CRASH_LOOP})


def _at(body: dict[str, Any], state: str) -> datetime:
    return datetime.fromisoformat(next(e["at"] for e in body["events"] if e["state"] == state))


async def _jobs(kube: client.ApiClient, namespace: str) -> list[str]:
    found = await client.BatchV1Api(kube).list_namespaced_job(namespace)
    return sorted(job.metadata.name for job in found.items)


async def test_a_crash_looping_migration_fails_early_shown_on_the_release_and_is_deleted(
    api: httpx.AsyncClient,
    stack_env: StackEnv,
    fabu: FabuSystem,
    namespace: str,
    kube: client.ApiClient,
) -> None:
    template = DEMO + hooked("migrate", "pre-rollout", CRASH_LOOP, backoff_limit=2)
    service, environment = await prepare(
        api, stack_env, namespace, template=template, rollout_timeout_s=120, auto_rollback=True
    )
    release_id = await release(api, service, environment, "1.0.0")
    job = f"{service}-migrate"

    # While the hook runs, the release shows its pods and why they cannot finish.
    async def crash_looping_shown() -> list[dict[str, Any]] | None:
        body = (await api.get(f"/releases/{release_id}")).json()
        pods = [p for p in body["pods"] if p["cause"].startswith("CrashLoopBackOff")]
        return pods if body["state"] == "rendered" and pods else None

    [pod] = await eventually(crash_looping_shown, "the hook's crash-looping pod shown")
    assert pod["name"].startswith(f"{job}-")
    running = (await api.get(f"/releases/{release_id}")).json()["hook"]
    assert running is not None
    assert (running["job"], running["when"], running["timeout_s"]) == (job, "pre-rollout", 120)
    assert running["cause"].startswith("CrashLoopBackOff: container migrate exited 1")
    async with httpx.AsyncClient(base_url=fabu.api_url, headers=api.headers) as ui:

        async def page_shows_the_hook() -> str | None:
            page = (await ui.get(f"/releases/{release_id}")).text
            return page if 'id="hook-clock"' in page else None

        # The hook's phase, with its countdown and its pods' cause.
        page = await eventually(page_shows_the_hook, "the page to show the running hook")
    assert f"<code>{job}</code>" in page
    assert 'id="hook-cause">CrashLoopBackOff: container migrate exited 1' in page

    body = await finished(api, release_id, within=90)
    ended = (await api.get(f"/releases/{release_id}")).json()["hook"]

    assert body["state"] == "failed"
    reason = body["reason"]
    assert reason.startswith(
        f'pre-rollout hook Job "{job}" failed: CrashLoopBackOff: container migrate exited 1, '
    ), reason
    assert "more than the Job's backoffLimit of 2" in reason
    assert reason.endswith(
        "Nothing else of the release was applied: the cluster's workloads were not changed, "
        "so no rollback is needed (which is why no automatic rollback was started)."
    ), reason
    # Failed on the cause, long before the 120 s timeout.
    assert (_at(body, "failed") - _at(body, "rendered")).total_seconds() < 60
    assert ended is not None
    assert (ended["state"], ended["finished_at"] is not None) == ("failed", True)
    assert any(p["name"].startswith(f"{job}-") for p in body["pods"])
    assert body["diagnosis"]["summary"].startswith("CrashLoopBackOff")
    texts = [line["text"] for line in body["transcript"]]
    assert any(t.startswith("cause: CrashLoopBackOff") and job in t for t in texts), texts
    assert any(t.startswith(f'deleted the pre-rollout hook Job "{job}"') for t in texts), texts

    # Its Job, and so its pods, do not go on crash-looping.
    async def gone() -> bool:
        pods = await client.CoreV1Api(kube).list_namespaced_pod(
            namespace, label_selector=f"job-name={job}"
        )
        return not await _jobs(kube, namespace) and not pods.items

    await eventually(gone, "the failed hook's Job and pods to be deleted")
    apps = client.AppsV1Api(kube)
    assert (await apps.list_namespaced_deployment(namespace)).items == []


@pytest.mark.parametrize(
    ("job_labels", "node_selector", "cause"),
    [
        (repr({kwok.FAULT_LABEL: kwok.PULL_FAIL}), None, "ImagePullBackOff"),
        ("{}", {"fabu.dev/no-such-node": "anywhere"}, "Unschedulable: 0/"),
    ],
)
async def test_a_hook_whose_pod_cannot_run_fails_at_once_with_the_cause(
    api: httpx.AsyncClient,
    stack_env: StackEnv,
    namespace: str,
    kube: client.ApiClient,
    job_labels: str,
    node_selector: dict[str, str] | None,
    cause: str,
) -> None:
    template = DEMO + hooked("migrate", "pre-rollout", job_labels, node_selector=node_selector)
    service, environment = await prepare(
        api, stack_env, namespace, template=template, rollout_timeout_s=120
    )

    body = await finished(api, await release(api, service, environment, "1.0.0"), within=90)

    assert body["state"] == "failed"
    assert body["reason"].startswith(f'pre-rollout hook Job "{service}-migrate" failed: {cause}'), (
        body["reason"]
    )
    assert (_at(body, "failed") - _at(body, "rendered")).total_seconds() < 60
    assert await _jobs(kube, namespace) == []


async def test_a_hook_is_deleted_once_it_succeeded_only_when_its_policy_says_so(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    template = (
        DEMO
        + hooked("seed", "pre-rollout", policy="hook-succeeded")
        + hooked("migrate", "pre-rollout")
    )
    service, environment = await prepare(api, stack_env, namespace, template=template)

    body = await finished(api, await release(api, service, environment, "1.0.0"), within=90)

    assert body["state"] == "succeeded", body["reason"]
    texts = [line["text"] for line in body["transcript"]]
    deleted = f'deleted the pre-rollout hook Job "{service}-seed" once it succeeded'
    assert any(t.startswith(deleted) for t in texts), texts
    # The default policy keeps a Job that succeeded until the next release replaces it.
    assert await _jobs(kube, namespace) == [f"{service}-migrate"]


async def test_an_unknown_delete_policy_is_refused_naming_the_job_and_the_value(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    template = DEMO + hooked("migrate", "pre-rollout", policy="hook-sucess")
    created = await api.post("/templates", json={"name": "typo", "content": template})
    template_id = created.json()["id"]

    refused = await api.put(
        f"/services/{service}/config/{environment}", json={"template_id": template_id}
    )

    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"]
    assert f"Job '{service}-migrate': fabu.io/hook-delete-policy 'hook-sucess'" in detail, detail
    assert "unknown policy 'hook-sucess'" in detail


async def test_a_failing_post_rollout_check_rolls_the_release_back(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    failing = repr({kwok.FAULT_LABEL: kwok.JOB_FAIL})
    labels = f'{failing} if version == "2.0.0" else {{}}'
    template = DEMO + hooked("check", "post-rollout", labels)
    service, environment = await prepare(
        api, stack_env, namespace, template=template, auto_rollback=True
    )
    first = await finished(api, await release(api, service, environment, "1.0.0"), within=90)
    assert first["state"] == "succeeded", first["reason"]

    second_id = await release(api, service, environment, "2.0.0")
    second = await finished(api, second_id, within=90)

    assert second["state"] == "failed"
    assert second["reason"].startswith(
        f'post-rollout hook Job "{service}-check" failed: BackoffLimitExceeded'
    ), second["reason"]
    assert second["reason"].endswith(
        "The release's workloads had already rolled out; they are rolled back automatically."
    )

    async def rolled_back() -> str | None:
        body = (await api.get(f"/releases/{second_id}")).json()
        return str(body["rolled_back_by"]) if body.get("rolled_back_by") else None

    rollback_id = await eventually(rolled_back, "the automatic rollback to start")
    rollback = await finished(api, rollback_id, within=90)
    assert (rollback["kind"], rollback["version"], rollback["state"]) == (
        "rollback",
        "1.0.0",
        "succeeded",
    ), rollback["reason"]
    deployment = await client.AppsV1Api(kube).read_namespaced_deployment(service, namespace)
    assert deployment.spec.template.spec.containers[0].image.endswith(":1.0.0")
