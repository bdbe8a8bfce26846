"""A template reaches only its own namespace, within its render budget, under its
environment's Pod Security level, and its secrets never come back in words: each
attack tried against the real stack, with its side effect checked."""

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from devstack.system import FabuSystem
from shared.secrets import MASK
from tests.conftest import unique
from tests.integration.test_parameters import template_with
from tests.integration.test_records import read_events
from tests.integration.test_templates import configure
from tests.support.releases import DEMO, emailed, finished, prepare, push, release
from tests.support.smtp import Inbox
from tests.support.stack import StackEnv

BILLION_STEPS = "{% for i in range(100000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"


def at_release(text: str) -> str:
    """``text`` only when a release renders, not when a save or a preview checks."""
    return "{% if release_id != 'preview' %}" + text + "{% endif %}"


@pytest.fixture
async def victim(kube: client.ApiClient) -> AsyncIterator[str]:
    """Another namespace, with a ConfigMap and a Secret, that no template of the test's
    environment may touch."""
    core = client.CoreV1Api(kube)
    name = unique("victim")
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    await core.create_namespaced_config_map(
        name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings"))
    )
    await core.create_namespaced_secret(
        name, client.V1Secret(metadata=client.V1ObjectMeta(name="keys"), string_data={"k": "v"})
    )
    yield name
    await core.delete_namespace(name)


async def intact(kube: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube)
    found = await core.read_namespace(namespace)
    assert found.status.phase == "Active"
    assert found.metadata.deletion_timestamp is None
    await core.read_namespaced_config_map("settings", namespace)
    await core.read_namespaced_secret("keys", namespace)


async def new_version(api: httpx.AsyncClient, service: str, environment: str, content: str) -> None:
    """The service's template's next version (not checked against its configs)."""
    config = (await api.get(f"/services/{service}/config/{environment}")).json()
    answer = await api.put(f"/templates/{config['template_id']}", json={"content": content})
    assert answer.status_code == 200, answer.text


async def test_a_hook_named_to_leave_its_namespace_is_refused_and_the_victim_stays(
    api: httpx.AsyncClient,
    stack_env: StackEnv,
    namespace: str,
    kube: client.ApiClient,
    victim: str,
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    traversal = f"../../../../../../api/v1/namespaces/{victim}"
    hook = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ service }}\n"
        "---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {{ hook_name }}\n"
        "  annotations: {fabu.io/hook: pre-rollout}\nspec:\n  template:\n    spec:\n"
        "      restartPolicy: Never\n      containers: [{name: m, image: '{{ image }}'}]\n"
    )
    schema = {"type": "object", "properties": {"hook_name": {"type": "string"}}}
    template_id = await template_with(api, hook, schema)

    # At save: the name is refused by the rule it breaks, naming the object.
    saved = await configure(api, service, environment, template_id, hook_name=traversal)
    assert saved.status_code == 422, saved.text
    assert f"Job '{traversal}': metadata.name must be a DNS-1123 subdomain" in saved.text
    for hostile in ("..", "a/b", "%2e%2e", "a?b", "a b", "\u0430pp"):
        refused = await configure(api, service, environment, template_id, hook_name=hostile)
        assert refused.status_code == 422, (hostile, refused.text)
    saved = await configure(api, service, environment, template_id, hook_name="migrate")
    assert saved.status_code == 200, saved.text

    # The same name that only a release renders: the release fails before anything is
    # read, deleted or applied.
    at_release_only = "{{ hook_name if release_id == 'preview' else '" + traversal + "' }}"
    await new_version(api, service, environment, hook.replace("{{ hook_name }}", at_release_only))
    body = await finished(api, await release(api, service, environment, "1.0"))
    assert body["state"] == "failed"
    assert f"Job '{traversal}': metadata.name must be a DNS-1123 subdomain" in body["reason"]
    assert [e["state"] for e in body["events"]] == ["failed"]
    await intact(kube, victim)
    maps = await client.CoreV1Api(kube).list_namespaced_config_map(namespace)
    assert service not in {m.metadata.name for m in maps.items}


async def test_a_billion_step_render_is_stopped_at_its_budget_and_health_answers_meanwhile(
    api: httpx.AsyncClient, fabu: FabuSystem, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    await new_version(api, service, environment, DEMO + BILLION_STEPS)
    config = (await api.get(f"/services/{service}/config/{environment}")).json()
    slowest = 0.0

    async def health_while(work: "asyncio.Future[httpx.Response]") -> None:
        nonlocal slowest
        async with httpx.AsyncClient(base_url=fabu.api_url, timeout=10) as http:
            while not work.done():
                started = time.monotonic()
                assert (await http.get("/healthz")).status_code == 200
                slowest = max(slowest, time.monotonic() - started)

    save = asyncio.ensure_future(
        configure(api, service, environment, config["template_id"], replicas=1)
    )
    await asyncio.gather(health_while(save), save)
    saved = save.result()
    assert saved.status_code == 422, saved.text
    assert "render budget of 2 s of CPU time" in saved.json()["detail"]
    assert slowest < 1.0, f"/healthz took {slowest:.2f}s while the template rendered"
    preview = await api.get(
        f"/services/{service}/preview", params={"environment": environment, "version": "1.0"}
    )
    assert preview.status_code == 422
    assert "render budget" in preview.text

    # Only at release: the release fails with the budget as its reason, and the
    # service's lock is free at once for the next one.
    await new_version(api, service, environment, DEMO + at_release(BILLION_STEPS))
    body = await finished(api, await release(api, service, environment, "1.0"), within=120)
    assert body["state"] == "failed"
    assert "render budget of 2 s of CPU time" in body["reason"]
    await new_version(api, service, environment, DEMO)
    after = await finished(api, await release(api, service, environment, "1.0"))
    assert after["state"] == "succeeded", after["reason"]


async def test_a_render_error_at_release_fails_the_release_with_its_line_and_frees_the_lock(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    for error, words in (("{{ 1/0 }}", "division by zero"), ("{{ 'a' + 1 }}", "concatenate")):
        await new_version(api, service, environment, "a: 1\n" + at_release(error) + DEMO)
        body = await finished(api, await release(api, service, environment, "1.0"))
        assert body["state"] == "failed"
        assert body["reason"].startswith("template error at line 2: "), body["reason"]
        assert words in body["reason"]
        assert [e["state"] for e in body["events"]] == ["failed"]
    await new_version(api, service, environment, DEMO)
    after = await finished(api, await release(api, service, environment, "1.0"))
    assert after["state"] == "succeeded", after["reason"]


PRIVILEGED = """
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ service ~ "-agent" }}
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      hostPID: true
      containers:
      - name: agent
        image: {{ image }}
        securityContext: {privileged: true}
"""
ADMIN_BINDING = """
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ service ~ "-admin" }}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: default, namespace: {{ namespace }}}]
"""


async def test_privileged_pods_and_a_cluster_admin_binding_are_refused_under_baseline(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    env = (await api.get(f"/environments/{environment}")).json()
    assert (env["pod_security"], env["allow_rbac"]) == ("baseline", False)
    config = (await api.get(f"/services/{service}/config/{environment}")).json()

    await new_version(api, service, environment, DEMO + PRIVILEGED)
    saved = await configure(api, service, environment, config["template_id"])
    assert saved.status_code == 422, saved.text
    detail = saved.json()["detail"]
    assert (
        f"Deployment '{service}-agent': spec.template.spec.containers[agent].securityContext."
        "privileged is true" in detail
    )
    assert "(Privileged Containers)" in detail
    assert "(Host Namespaces)" in detail

    await new_version(api, service, environment, DEMO + ADMIN_BINDING)
    saved = await configure(api, service, environment, config["template_id"])
    assert saved.status_code == 422, saved.text
    assert f"RoleBinding '{service}-admin'" in saved.json()["detail"]
    assert "cluster-admin" in saved.json()["detail"]

    # What only a release renders is refused by the deployer before its first object.
    await new_version(api, service, environment, DEMO + at_release(PRIVILEGED + ADMIN_BINDING))
    body = await finished(api, await release(api, service, environment, "1.0"))
    assert body["state"] == "failed"
    assert "(Privileged Containers)" in body["reason"]
    assert "cluster-admin" in body["reason"]
    assert (await client.AppsV1Api(kube).list_namespaced_deployment(namespace)).items == []
    bindings = await client.RbacAuthorizationV1Api(kube).list_namespaced_role_binding(namespace)
    assert bindings.items == []

    # An environment that asks for it takes privileged pods; a cluster-admin binding, never.
    answer = await api.put(
        f"/environments/{environment}", json={**env, "pod_security": "privileged"}
    )
    assert answer.status_code == 200, answer.text
    await new_version(api, service, environment, DEMO + PRIVILEGED)
    assert (await configure(api, service, environment, config["template_id"])).status_code == 200
    answer = await api.put(
        f"/environments/{environment}",
        json={**env, "pod_security": "privileged", "allow_rbac": True},
    )
    assert answer.status_code == 200, answer.text
    await new_version(api, service, environment, DEMO + ADMIN_BINDING)
    saved = await configure(api, service, environment, config["template_id"])
    assert saved.status_code == 422
    assert "cluster-admin" in saved.json()["detail"]


async def test_a_kind_the_cluster_keeps_outside_namespaces_is_refused_at_save(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    config = (await api.get(f"/services/{service}/config/{environment}")).json()
    # A kind no list of Fabu's names: the cluster's discovery says it is cluster-scoped.
    cidr = (
        "---\napiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\n"
        'metadata:\n  name: {{ service ~ "-cidr" }}\nspec:\n  cidrs: [10.250.0.0/24]\n'
    )
    await new_version(api, service, environment, DEMO + cidr)
    saved = await configure(api, service, environment, config["template_id"])
    assert saved.status_code == 422
    assert f"ServiceCIDR '{service}-cidr' is cluster-scoped" in saved.json()["detail"]
    unknown = "---\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n"
    await new_version(api, service, environment, DEMO + unknown)
    saved = await configure(api, service, environment, config["template_id"])
    assert saved.status_code == 422
    assert "the cluster does not serve Widget in example.com/v1" in saved.json()["detail"]


SECRET = "hunter2 x7Qp9Lr!"
LABELLED = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ service }}
spec:
  replicas: 1
  selector:
    matchLabels: {{ {"app": service} }}
  template:
    metadata:
      labels: {{ {"app": service, "token": db_password} }}
    spec:
      containers:
      - name: app
        image: {{ image }}
"""


async def test_a_sealed_value_quoted_back_by_the_api_server_shows_nowhere(
    api: httpx.AsyncClient,
    fabu: FabuSystem,
    stack_env: StackEnv,
    namespace: str,
    inbox: Inbox,
) -> None:
    service, environment = await prepare(
        api, stack_env, namespace, notify_emails=["team@example.com"]
    )
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"db_password": {"type": "string", "writeOnly": True}},
    }
    template_id = await template_with(api, LABELLED, schema)
    saved = await configure(api, service, environment, template_id, db_password=SECRET)
    assert saved.status_code == 200, saved.text
    await push(api, service, "1.0")

    # The API server refuses the label and quotes it: in the preview, the mask.
    preview = await api.get(
        f"/services/{service}/preview", params={"environment": environment, "version": "1.0"}
    )
    assert preview.status_code >= 400
    assert "Invalid value" in preview.text
    assert f'Invalid value: \\"{MASK}\\"' in preview.text, preview.text

    release_id = await release(api, service, environment, "1.0")
    body = await finished(api, release_id)
    assert body["state"] == "failed"
    assert "Invalid value" in body["reason"], body["reason"]
    await emailed(api, release_id, "failed")

    encoded = base64.b64encode(SECRET.encode()).decode()
    ui = str(api.base_url).removesuffix("/api/v1/").removesuffix("/api/v1")
    texts = {
        "record": (await api.get(f"/releases/{release_id}")).text,
        "list": (await api.get("/releases", params={"service": service})).text,
        "events": repr(await asyncio.wait_for(read_events(api, release_id), 30)),
        "page": (await api.get(f"{ui}/releases/{release_id}")).text,
        "releases page": (await api.get(f"{ui}/releases", params={"service": service})).text,
        "mail": "\n".join(m.as_string() for m in inbox.about(release_id)),
        "preview": preview.text,
    }
    for stage in ("api", "renderer", "deployer", "tracker", "notifier"):
        texts[f"{stage}.log"] = fabu.log(stage)
    assert texts["mail"], "the failure mail was sent"
    for where, text in texts.items():
        assert SECRET not in text, where
        assert encoded not in text, where
        assert SECRET.replace("!", "\\u0021") not in text, where


async def test_objects_per_manifest_are_capped(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, kube: client.ApiClient
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    many = (
        "{% for i in range(1000) %}---\napiVersion: v1\nkind: ConfigMap\n"
        'metadata:\n  name: {{ "c" ~ i }}\n{% endfor %}'
    )
    await new_version(api, service, environment, DEMO + at_release(many))
    body = await finished(api, await release(api, service, environment, "1.0"))
    assert body["state"] == "failed"
    assert "the manifest holds 1,002 objects; at most 250" in body["reason"]
    maps = await client.CoreV1Api(kube).list_namespaced_config_map(namespace)
    assert not {m.metadata.name for m in maps.items} & {"c0", "c999"}
    with pytest.raises(ApiException):
        await client.CoreV1Api(kube).read_namespaced_config_map("c0", namespace)
