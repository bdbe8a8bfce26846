"""A release end to end through the five real services, on the real stack."""

import hashlib
import json
import re
from pathlib import Path

import httpx
from kubernetes_asyncio import client

from devstack import kwok
from devstack.system import FabuSystem
from tests.conftest import unique
from tests.support.releases import DEMO, delivery, emailed, finished, prepare, push, release
from tests.support.smtp import Inbox
from tests.support.stack import StackEnv
from tests.support.wait import eventually


async def test_release_succeeds_end_to_end(
    api: httpx.AsyncClient,
    stack_env: StackEnv,
    namespace: str,
    kube: client.ApiClient,
    inbox: Inbox,
) -> None:
    service, environment = await prepare(
        api, stack_env, namespace, replicas=2, notify_emails=["team@example.com"]
    )

    release_id = await release(api, service, environment, "1.0.0")
    body = await finished(api, release_id)

    assert body["state"] == "succeeded", body["reason"]
    live = await client.AppsV1Api(kube).read_namespaced_deployment(service, namespace)
    assert live.spec.template.spec.containers[0].image.endswith(f"/team/{service}:1.0.0")
    assert live.status.available_replicas == 2
    lines = [line["text"] for line in body["transcript"]]
    assert all(line.startswith("Waiting for deployment") for line in lines[:-1])
    progress = re.compile(
        rf'^Waiting for deployment "{service}" rollout to finish: \d+ (of|out of) 2 '
    )
    assert any(progress.match(line) for line in lines), lines
    assert lines[-1] == f'deployment "{service}" successfully rolled out'
    assert [e["state"] for e in body["events"]] == ["rendered", "applied", "succeeded"]
    assert body["manifest_sha256"] == hashlib.sha256(body["manifest"].encode()).hexdigest()
    assert body["generation"] >= 1
    assert body["revision"] == "1"
    [replica_set] = body["replica_sets"]
    assert replica_set["new"]
    assert replica_set["revision"] == "1"
    assert (replica_set["desired"], replica_set["ready"], replica_set["available"]) == (2, 2, 2)
    assert len(body["pods"]) == 2
    for pod in body["pods"]:
        assert pod["new"]
        assert pod["replica_set"] == replica_set["name"]
        assert pod["node"]
        assert pod["created_at"] <= pod["scheduled_at"] <= pod["ready_at"]
        assert pod["terminated_at"] is None
    assert body["diagnosis"] is None
    assert body["duration_s"] > 0

    body = await emailed(api, release_id, "succeeded")
    [mail] = inbox.about(release_id)
    assert mail["To"] == "team@example.com"
    assert mail["Subject"] == f"[Fabu] {service} 1.0.0 to {environment} succeeded"

    listed = (await api.get("/releases", params={"service": service})).json()
    assert [r["id"] for r in listed["items"]] == [release_id]
    assert listed["items"][0]["state"] == "succeeded"


async def test_never_ready_pods_fail_after_the_timeout(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, inbox: Inbox
) -> None:
    service, environment = await prepare(
        api,
        stack_env,
        namespace,
        labels={kwok.FAULT_LABEL: kwok.NEVER_READY},
        rollout_timeout_s=3,
        notify_emails=["oncall@example.com"],
    )

    release_id = await release(api, service, environment, "2.0.0")
    body = await finished(api, release_id)

    assert body["state"] == "failed"
    waiting = f'Waiting for deployment "{service}" rollout to finish: 0 of 1 updated replicas are available...'
    assert body["reason"] == f"rollout not finished within 3s: {waiting}"
    assert waiting in [line["text"] for line in body["transcript"]]
    await emailed(api, release_id, "failed")
    [mail] = inbox.about(release_id)
    assert "FAILED" in mail["Subject"]
    assert "rollout not finished within 3s" in mail.get_payload()


async def test_template_error_fails_at_render_with_the_line(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    # Configs are checked when saved; a later version of the template is not
    # checked against every config using it, so a release can meet the error.
    template_id = (await api.get(f"/services/{service}/config/{environment}")).json()["template_id"]
    broken = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ service }}\ndata: {{ nothing }}\n"
    )
    assert (await api.put(f"/templates/{template_id}", json={"content": broken})).status_code == 200

    body = await finished(api, await release(api, service, environment, "1.0"))

    assert body["state"] == "failed"
    assert re.search(r"template error at line 5: 'nothing' is undefined", body["reason"]), body[
        "reason"
    ]
    assert body["template_version"] == 2
    assert [e["state"] for e in body["events"]] == ["failed"]
    deployments = await client.AppsV1Api(kube).list_namespaced_deployment(namespace)
    assert deployments.items == []


async def test_object_the_api_server_rejects_fails_with_its_message(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    rejected = DEMO.replace("  replicas: {{ replicas }}", "  replicas: -1")
    service, environment = await prepare(api, stack_env, namespace, template=rejected)

    body = await finished(api, await release(api, service, environment, "1.0"))

    assert body["state"] == "failed"
    assert body["reason"].startswith(f"Deployment '{service}' rejected:")
    assert "must be greater than or equal to 0" in body["reason"]
    assert [e["state"] for e in body["events"]] == ["rendered", "failed"]


async def test_a_cluster_scoped_object_fails_the_release_before_anything_is_applied(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    """A kind the cluster serves cluster-wide is refused by the deployer, which asks the
    cluster before it applies any object (here one that only a release renders: a config
    save asks too, see test_containment)."""
    cluster_wide = (
        "{% if release_id != 'preview' %}"
        "---\napiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\n"
        'metadata:\n  name: {{ service ~ "-cidr" }}\nspec:\n  cidrs: [10.250.0.0/24]\n'
        "{% endif %}"
        '---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ service ~ "-settings" }}\n'
    )
    service, environment = await prepare(api, stack_env, namespace, template=DEMO + cluster_wide)

    body = await finished(api, await release(api, service, environment, "1.0"))

    assert body["state"] == "failed"
    assert body["reason"] == (
        f"ServiceCIDR '{service}-cidr' is cluster-scoped: a release holds only objects of its "
        "environment's namespace"
    )
    maps = (await client.CoreV1Api(kube).list_namespaced_config_map(namespace)).items
    assert f"{service}-settings" not in {m.metadata.name for m in maps}
    assert (await client.AppsV1Api(kube).list_namespaced_deployment(namespace)).items == []


async def test_one_unfinished_release_per_service_and_environment(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(
        api, stack_env, namespace, labels={kwok.FAULT_LABEL: kwok.NEVER_READY}, rollout_timeout_s=2
    )
    first = await release(api, service, environment, "1.0")
    await push(api, service, "1.1")

    second = await api.post(
        "/releases", json={"service": service, "environment": environment, "version": "1.1"}
    )

    assert second.status_code == 409
    assert first in second.json()["detail"]
    await finished(api, first)
    third = await release(api, service, environment, "1.2")
    assert third != first


async def test_unknown_names_are_refused_and_nothing_is_written(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    unconfigured = unique("svc")
    registry = stack_env.registry_url.removeprefix("http://")
    created = await api.post(
        "/services",
        json={"name": unconfigured, "image_repository": f"{registry}/r/x", "team": "core"},
    )
    assert created.status_code == 201, created.text
    elsewhere = await api.post(
        "/services", json={"name": unique("svc"), "image_repository": "r/x", "team": "core"}
    )
    assert elsewhere.status_code == 422
    assert "registry-1.docker.io is not configured in FABU_REGISTRIES" in elsewhere.text

    cases = [
        ({"service": "nope", "environment": environment}, 404, "service 'nope' not found"),
        ({"service": service, "environment": "nowhere"}, 404, "environment 'nowhere' not found"),
        (
            {"service": unconfigured, "environment": environment},
            422,
            f"service {unconfigured!r} has no release config for environment {environment!r}",
        ),
    ]
    for body, status, detail in cases:
        answer = await api.post("/releases", json={**body, "version": "1.0"})
        assert answer.status_code == status
        assert answer.json()["detail"] == detail
    bad_version = await api.post(
        "/releases", json={"service": service, "environment": environment, "version": "a b"}
    )
    assert bad_version.status_code == 422
    assert bad_version.json()["detail"][0]["loc"] == ["body", "version"]
    for name in (service, unconfigured, "nope"):
        listed = (await api.get("/releases", params={"service": name})).json()
        assert listed["items"] == []


async def test_a_killed_tracker_is_replaced_and_the_release_finishes_once(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, fabu: FabuSystem, inbox: Inbox
) -> None:
    slow = DEMO.replace(
        "  replicas: {{ replicas }}", "  replicas: {{ replicas }}\n  minReadySeconds: 3"
    )
    service, environment = await prepare(
        api, stack_env, namespace, template=slow, notify_emails=["team@example.com"]
    )
    release_id = await release(api, service, environment, "3.0")

    async def tracking() -> bool:
        body = (await api.get(f"/releases/{release_id}")).json()
        return body["state"] == "applied" and bool(body["transcript"])

    await eventually(tracking, "the tracker to hold the release")
    fabu.kill("tracker")
    fabu.start("tracker")

    body = await finished(api, release_id)
    assert body["state"] == "succeeded", body["reason"]
    await emailed(api, release_id, "succeeded")
    assert len(inbox.about(release_id)) == 1
    lines = [line["text"] for line in body["transcript"]]
    assert lines[-1] == f'deployment "{service}" successfully rolled out'


async def test_stages_serve_health_and_metrics_and_stop_cleanly(
    fabu: FabuSystem, tmp_path: Path
) -> None:
    # A second renderer replica on the same database and stream.
    extra = FabuSystem({}, tmp_path, smtp_port=0, extra_env=fabu.env)
    extra.start("renderer")

    async def health_url() -> str | None:
        for line in extra.log("renderer").splitlines():
            event = json.loads(line)
            if event.get("event") == "started":
                return str(event["health"])
        return None

    url = await eventually(health_url, "the renderer to start")
    async with httpx.AsyncClient() as http:
        assert (await http.get(url)).json() == {"ok": True}
        metrics = (await http.get(url.replace("/healthz", "/metrics"))).text
        api_metrics = (await http.get(fabu.api_url + "/metrics/")).text
    assert "fabu_messages_total" in metrics
    assert "python_info" in api_metrics
    # What each process costs the database, by command and collection: every process
    # makes its indexes as it starts.
    made = 'fabu_database_commands_total{collection="releases",command="createIndexes"}'
    assert made in metrics
    assert made in api_metrics

    assert extra.stop() == {"renderer": 0}
    assert "stopping" in extra.log("renderer")


async def test_transient_smtp_refusal_is_retried_and_recorded(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, inbox: Inbox
) -> None:
    inbox.refuse["flaky@example.com"] = 1
    service, environment = await prepare(
        api, stack_env, namespace, notify_emails=["flaky@example.com"]
    )

    release_id = await release(api, service, environment, "1.0")
    body = await emailed(api, release_id, "succeeded")

    sent = delivery(body, "succeeded", "email")
    assert sent is not None
    assert sent["attempts"] == 2
    assert [a["outcome"] for a in sent["history"]][-1] == "sent"
    assert sent["history"][0]["outcome"].startswith("email: SMTP 4")
    assert len(inbox.about(release_id)) == 1


async def test_unreachable_cluster_fails_the_release_with_the_cause(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, tmp_path: Path
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    # Both in the kubeconfig directory, and good when the environments are saved (a
    # save checks the cluster): then one names a port nothing listens on, the other
    # is removed.
    dead = stack_env.kubeconfig.parent / f"dead-{namespace}.yaml"
    gone = stack_env.kubeconfig.parent / f"gone-{namespace}.yaml"
    config = stack_env.kubeconfig.read_text()
    port = re.search(r"server: https://127\.0\.0\.1:(\d+)", config)
    assert port is not None
    dead.write_text(config)
    gone.write_text(config)
    broken = await api.post(
        "/environments",
        json={"name": unique("e"), "namespace": namespace, "kubeconfig": dead.name},
    )
    missing = await api.post(
        "/environments",
        json={"name": unique("e"), "namespace": namespace, "kubeconfig": gone.name},
    )
    assert (broken.status_code, missing.status_code) == (201, 201), broken.text + missing.text
    dead.write_text(config.replace(port.group(1), "1"))  # nothing listens on port 1
    gone.unlink()
    for env in (broken.json()["name"], missing.json()["name"]):
        template = (await api.get(f"/services/{service}/config/{environment}")).json()
        put = await api.put(
            f"/services/{service}/config/{env}", json={"template_id": template["template_id"]}
        )
        assert put.status_code == 200

    unreachable = await finished(api, await release(api, service, broken.json()["name"], "1.0"))
    no_file = await finished(api, await release(api, service, missing.json()["name"], "1.0"))
    dead.unlink()

    assert unreachable["state"] == "failed"
    assert unreachable["reason"].startswith("gave up after 9 attempts over 8s: cluster unreachable")
    assert no_file["state"] == "failed"
    assert no_file["reason"].endswith(
        f"kubeconfig '{gone.name}' is not a file in the kubeconfig directory"
    )


async def test_a_tracker_at_its_limit_takes_the_next_release_when_one_ends(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, fabu: FabuSystem
) -> None:
    fabu.kill("tracker")
    fabu.start("tracker", {"FABU_MAX_IN_FLIGHT": "1"})
    try:
        first = await prepare(api, stack_env, namespace)
        second = await prepare(api, stack_env, namespace)
        ids = [await release(api, s, e, "1.0") for s, e in (first, second)]
        bodies = [await finished(api, release_id) for release_id in ids]
        assert [b["state"] for b in bodies] == ["succeeded", "succeeded"]
    finally:
        fabu.kill("tracker")
        fabu.start("tracker")


async def test_openapi_describes_the_json_api(fabu: FabuSystem, admin_token: str) -> None:
    async with httpx.AsyncClient(base_url=fabu.api_url) as http:
        assert (await http.get("/openapi.json")).status_code == 401
        answer = await http.get("/openapi.json", headers={"Authorization": f"Bearer {admin_token}"})
    paths = answer.json()["paths"]
    assert {"post", "get"} <= set(paths["/api/v1/releases"])
    assert "put" in paths["/api/v1/services/{name}/config/{environment}"]
    assert "202" in paths["/api/v1/releases"]["post"]["responses"]
