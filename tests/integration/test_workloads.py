"""Whole services: several Deployments, a StatefulSet and a DaemonSet in one release, each
followed with kubectl's rules for its kind, on the real stack (KWOK runs their pods)."""

import httpx
from kubernetes_asyncio import client

from devstack import kwok
from shared.release.hook_jobs import STOPPED as HOOK_STOPPED
from tests.support.releases import DEMO, WORKER, finished, prepare, push, release
from tests.support.stack import StackEnv
from tests.support.wait import eventually

# Beside the demo's Service and web Deployment: a migration run first, a worker, a
# database, a node agent and their settings. Names are built inside the braces.
SERVICE = (
    DEMO
    + WORKER
    + """
---
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ service ~ "-migrate-" ~ version }}
  annotations: {fabu.io/hook: pre-rollout}
spec:
  backoffLimit: 0
  template:
    metadata:
      labels: {{ job_labels }}
    spec:
      restartPolicy: Never
      containers:
      - name: migrate
        image: {{ image }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ service ~ "-settings" }}
data:
  mode: fast
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ service ~ "-db" }}
spec:
  serviceName: {{ service ~ "-db" }}
  replicas: 2
  selector:
    matchLabels: {{ {"app": service ~ "-db"} }}
  template:
    metadata:
      labels: {{ dict(db_labels, app=service ~ "-db") }}
    spec:
      containers:
      - name: db
        image: {{ image }}
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {{ service ~ "-agent" }}
spec:
  selector:
    matchLabels: {{ {"app": service ~ "-agent"} }}
  template:
    metadata:
      labels: {{ {"app": service ~ "-agent"} }}
    spec:
      containers:
      - name: agent
        image: {{ image }}
"""
)


def service_with(db_labels: dict[str, str], job_labels: dict[str, str] | None = None) -> str:
    """The six-object service, its database pods labelled ``db_labels`` and its
    migration's ``job_labels``."""
    sets = f"{{% set db_labels = {db_labels!r} %}}{{% set job_labels = {job_labels or {}!r} %}}"
    return sets + SERVICE


async def test_every_workload_of_a_service_is_followed_to_its_end(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    service, environment = await prepare(
        api, stack_env, namespace, template=service_with({}), replicas=2
    )

    body = await finished(api, await release(api, service, environment, "1.0.0"), within=120)

    assert body["state"] == "succeeded", body["reason"]
    lines = [line["text"] for line in body["transcript"]]
    assert f"running the pre-rollout hooks: {service}-migrate-1.0.0" in lines
    jobs = client.BatchV1Api(kube)
    migration = await jobs.read_namespaced_job(f"{service}-migrate-1.0.0", namespace)
    assert migration.status.succeeded == 1
    assert [(w["kind"], w["name"]) for w in body["workloads"]] == [
        ("Deployment", service),
        ("Deployment", f"{service}-worker"),
        ("StatefulSet", f"{service}-db"),
        ("DaemonSet", f"{service}-agent"),
    ]
    assert all(w["generation"] >= 1 for w in body["workloads"])
    lines = [line["text"] for line in body["transcript"]]
    for final in (
        f'deployment "{service}" successfully rolled out',
        f'deployment "{service}-worker" successfully rolled out',
        f'statefulset "{service}-db": partitioned roll out complete: 2 new pods have been '
        "updated...",
        f'daemon set "{service}-agent" successfully rolled out',
    ):
        assert final in lines, lines
    # The ReplicaSets of both Deployments; the pods of every workload.
    assert {c["name"].rsplit("-", 1)[0] for c in body["replica_sets"]} == {
        service,
        f"{service}-worker",
    }
    pods = {p["name"] for p in body["pods"]}
    assert {f"{service}-db-0", f"{service}-db-1"} <= pods
    assert any(p.startswith(f"{service}-agent-") for p in pods)
    apps = client.AppsV1Api(kube)
    db = await apps.read_namespaced_stateful_set(f"{service}-db", namespace)
    assert db.status.ready_replicas == 2
    settings = await client.CoreV1Api(kube).read_namespaced_config_map(
        f"{service}-settings", namespace
    )
    assert settings.data == {"mode": "fast"}


async def test_a_crash_looping_stateful_set_fails_with_its_own_pods_diagnosed(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    template = service_with({kwok.FAULT_LABEL: kwok.CRASH_LOOP})
    service, environment = await prepare(api, stack_env, namespace, template=template)
    await api.put(
        f"/environments/{environment}",
        json={
            "name": environment,
            "namespace": namespace,
            "kubeconfig": str(stack_env.kubeconfig),
            # Long enough for KWOK to take a pod through its first restarts.
            "rollout_timeout_s": 20,
        },
    )

    body = await finished(api, await release(api, service, environment, "1.0.0"), within=120)

    assert body["state"] == "failed"
    assert body["reason"].startswith("rollout not finished within 20s: "), body["reason"]
    assert f'statefulset "{service}-db": Waiting for ' in body["reason"]
    diagnosis = body["diagnosis"]
    assert diagnosis["pods"], diagnosis
    assert {p["name"] for p in diagnosis["pods"]} <= {f"{service}-db-0", f"{service}-db-1"}
    # Caught at any point of its loop: backing off, or started again after exiting 1.
    assert any(
        c["restart_count"] > 0
        and ("CrashLoopBackOff" in c["state"] or "(exit code 1)" in c["last_state"])
        for p in diagnosis["pods"]
        for c in p["containers"]
    ), diagnosis["pods"]
    assert any(c["previous_log"] for p in diagnosis["pods"] for c in p["containers"])


async def test_what_a_new_version_drops_is_pruned_and_a_rollback_brings_it_back(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    kept = (
        "\n---\napiVersion: v1\nkind: Secret\nmetadata:\n"
        '  name: {{ service ~ "-token" }}\n  annotations: {fabu.io/prune: "false"}\n'
        "stringData: {token: x}\n"
    )
    first = service_with({}) + kept
    service, environment = await prepare(api, stack_env, namespace, template=first)
    one = await finished(api, await release(api, service, environment, "1.0.0"), within=120)
    assert one["state"] == "succeeded", one["reason"]
    assert one["pruned"] == []
    # The next version has no worker, no settings and no token.
    config = (await api.get(f"/services/{service}/config/{environment}")).json()
    second = service_with({})
    for name in ("-settings", "-worker"):
        start = second.index(f'  name: {{{{ service ~ "{name}" }}}}')
        begin = second.rindex("---", 0, start)
        end = second.find("---", start)
        second = second[:begin] + second[end:]
    changed = await api.put(f"/templates/{config['template_id']}", json={"content": second})
    assert changed.status_code == 200, changed.text

    await push(api, service, "1.1.0")
    preview = (
        await api.get(
            f"/services/{service}/preview", params={"environment": environment, "version": "1.1.0"}
        )
    ).json()
    # The migration of 1.0.0 goes too: 1.1.0 runs its own.
    dropped = [
        f"ConfigMap/{service}-settings",
        f"Deployment/{service}-worker",
        f"Job/{service}-migrate-1.0.0",
    ]
    assert preview["diff"]["prune"] == dropped
    impact = (await api.get(f"/templates/{config['template_id']}/impact")).json()
    [mine] = [s for s in impact["services"] if s["service"] == service]
    assert mine["prune"] == [f"ConfigMap/{service}-settings", f"Deployment/{service}-worker"]

    two = await finished(api, await release(api, service, environment, "1.1.0"), within=120)
    assert two["state"] == "succeeded", two["reason"]
    assert two["pruned"] == dropped
    assert any(
        line["text"].startswith("pruned what this release no longer has: ")
        for line in two["transcript"]
    )
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)

    async def gone() -> bool:
        names = {d.metadata.name for d in (await apps.list_namespaced_deployment(namespace)).items}
        maps = {m.metadata.name for m in (await core.list_namespaced_config_map(namespace)).items}
        return f"{service}-worker" not in names and f"{service}-settings" not in maps

    await eventually(gone, "the worker and the settings deleted")
    assert (await core.read_namespaced_secret(f"{service}-token", namespace)).metadata.name

    # A rollback to the first release restores what it had.
    back = (await api.get(f"/releases/{one['id']}/rollback/preview")).json()
    assert {(o["kind"], o["name"], o["action"]) for o in back["objects"]} >= {
        ("Deployment", f"{service}-worker", "create"),
        ("ConfigMap", f"{service}-settings", "create"),
    }
    rolled = await api.post(f"/releases/{one['id']}/rollback", json={})
    assert rolled.status_code == 202, rolled.text
    three = await finished(api, rolled.json()["id"], within=120)
    assert three["state"] == "succeeded", three["reason"]
    assert three["pruned"] == [f"Job/{service}-migrate-1.1.0"]
    await apps.read_namespaced_deployment(f"{service}-worker", namespace)
    await core.read_namespaced_config_map(f"{service}-settings", namespace)


async def test_a_failing_migration_stops_the_release_before_any_workload_changes(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    template = service_with({}, {kwok.FAULT_LABEL: kwok.JOB_FAIL})
    service, environment = await prepare(api, stack_env, namespace, template=template)

    body = await finished(api, await release(api, service, environment, "1.0.0"), within=90)

    assert body["state"] == "failed"
    assert body["reason"].startswith(
        f'pre-rollout hook Job "{service}-migrate-1.0.0" failed: BackoffLimitExceeded'
    ), body["reason"]
    assert [e["state"] for e in body["events"]] == ["rendered", "failed"]
    [pod] = body["diagnosis"]["pods"]
    assert pod["name"].startswith(f"{service}-migrate-1.0.0-")
    assert pod["phase"] == "Failed"
    assert pod["containers"][0]["log"]  # the Job's pod log
    apps = client.AppsV1Api(kube)
    assert (await apps.list_namespaced_deployment(namespace)).items == []
    assert (await apps.list_namespaced_stateful_set(namespace)).items == []


async def test_a_cancel_stops_the_wait_on_a_hook_and_nothing_else_is_applied(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    """A migration that never ends: the release is cancelled while it waits, and the
    deployer lets it go without applying the rest."""
    template = service_with({}, {kwok.FAULT_LABEL: kwok.NEVER_READY})
    service, environment = await prepare(api, stack_env, namespace, template=template)
    release_id = await release(api, service, environment, "1.0.0")

    async def migrating() -> bool:
        body = (await api.get(f"/releases/{release_id}")).json()
        return any(
            line["text"].startswith("running the pre-rollout") for line in body["transcript"]
        )

    await eventually(migrating, "the migration to start")
    cancelled = await api.post(f"/releases/{release_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["was"] == "rendered"

    # The deployer stops waiting within a poll and applies nothing more.
    async def stopped() -> bool:
        body = (await api.get(f"/releases/{release_id}")).json()
        return HOOK_STOPPED in [line["text"] for line in body["transcript"]]

    await eventually(stopped, "the deployer to stop waiting on the hook")
    apps = client.AppsV1Api(kube)
    assert (await apps.list_namespaced_deployment(namespace)).items == []
    assert (await apps.list_namespaced_stateful_set(namespace)).items == []
