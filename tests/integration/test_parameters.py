"""Templates declare their parameters (a JSON Schema): configs checked against it, defaults
filled in, secrets sealed and masked everywhere, and a new version's reach."""

import base64
import json
from pathlib import Path
from typing import Any

import httpx
from kubernetes_asyncio import client
from pymongo import AsyncMongoClient

from devstack.system import FabuSystem
from shared.secrets import MASK
from tests.conftest import unique
from tests.integration.test_templates import HOOK, configure, sync_error, version_of
from tests.support.git import git, repository
from tests.support.gitlab import FakeGitLab
from tests.support.releases import finished, prepare, release
from tests.support.stack import StackEnv

# A test's secret, looked for where it must not be.
SECRET = "hunter2-" + "x7Qp9Lr"
TEMPLATE = """\
apiVersion: v1
kind: Secret
metadata:
  name: {{ service ~ "-db" }}
stringData:
  password: {{ db_password }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ service }}
  annotations:
    example.com/owner: {{ owner }}
spec:
  replicas: {{ replicas }}
  selector:
    matchLabels: {{ {"app": service} }}
  template:
    metadata:
      labels: {{ {"app": service} }}
    spec:
      containers:
      - name: app
        image: {{ image }}
        args: {{ args }}
        env:
        - name: DB_PASSWORD
          valueFrom:
            secretKeyRef:
              name: {{ service ~ "-db" }}
              key: password
"""
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "owner": {"type": "string", "description": "The team that answers for it"},
        "replicas": {"type": "integer", "minimum": 0, "default": 2},
        "args": {"type": "array", "items": {"type": "string"}, "default": []},
        "ingress": {"type": "object", "properties": {"host": {"type": "string"}}},
        "db_password": {"type": "string", "writeOnly": True},
    },
    "required": ["owner", "db_password"],
}


async def template_with(
    api: httpx.AsyncClient, content: str = TEMPLATE, parameters: dict[str, Any] | None = None
) -> str:
    created = await api.post(
        "/templates",
        json={"name": "declared", "content": content, "parameters": parameters or SCHEMA},
    )
    assert created.status_code == 201, created.text
    assert created.json()["parameters"] == (parameters or SCHEMA)
    template_id: str = created.json()["id"]
    return template_id


async def raw_documents(stack_env: StackEnv, fabu: FabuSystem, service: str) -> str:
    """Every stored document about ``service``, as text."""
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack_env.mongo_url)
    try:
        db = mongo[fabu.env["FABU_MONGO_DB"]]
        found = []
        for name in ("service_configs", "service_config_versions", "releases", "audit"):
            found += [d async for d in db[name].find({})]
    finally:
        await mongo.close()
    return "\n".join(str(d) for d in found if service in str(d))


async def test_declared_parameters_render_with_defaults_and_a_secret_shows_nowhere(
    api: httpx.AsyncClient,
    stack_env: StackEnv,
    namespace: str,
    kube: client.ApiClient,
    fabu: FabuSystem,
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    template_id = await template_with(api)

    # Values that do not fit: 422 naming each path, and nothing stored.
    missing = await configure(api, service, environment, template_id)
    assert missing.status_code == 422
    assert missing.json()["errors"] == {
        "params.db_password": "required",
        "params.owner": "required",
    }
    wrong = await configure(
        api, service, environment, template_id, owner=5, db_password=SECRET, ingress={"host": 3}
    )
    assert wrong.status_code == 422
    assert "params.ingress.host: not a string" in wrong.json()["detail"]
    assert wrong.json()["errors"]["params.owner"] == "not a string"
    typo = await configure(
        api, service, environment, template_id, owner="payments", db_password=SECRET, replcas=3
    )
    assert typo.json()["errors"] == {"params.replcas": "not a parameter of this template"}
    assert SECRET not in wrong.text + typo.text
    assert (await api.get(f"/services/{service}/config/{environment}")).json()["version"] == 1

    saved = await configure(
        api,
        service,
        environment,
        template_id,
        owner="payments",
        args=["--port=8080", "--verbose"],
        db_password=SECRET,
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["params"]["db_password"] == MASK
    view = (await api.get(f"/services/{service}/config/{environment}")).json()
    assert view["effective"] == {
        "owner": "payments",
        "replicas": 2,
        "args": ["--port=8080", "--verbose"],
        "db_password": MASK,
    }
    assert (
        view["parameters"]["properties"]["owner"]["description"] == "The team that answers for it"
    )
    assert view["problems"] == {}

    first = await finished(api, await release(api, service, environment, "1.0.0"))
    assert first["state"] == "succeeded", first["reason"]
    deployment = await client.AppsV1Api(kube).read_namespaced_deployment(service, namespace)
    assert deployment.spec.replicas == 2  # the schema's default
    assert deployment.metadata.annotations["example.com/owner"] == "payments"
    assert deployment.spec.template.spec.containers[0].args == ["--port=8080", "--verbose"]
    secret = await client.CoreV1Api(kube).read_namespaced_secret(f"{service}-db", namespace)
    assert base64.b64decode(secret.data["password"]).decode() == SECRET
    assert f"password: {MASK}" in first["manifest"]

    # Saved again with the mask: the secret is kept; only the real change is listed.
    again = await configure(
        api, service, environment, template_id, owner="payments", replicas=3, db_password=MASK
    )
    assert again.status_code == 200, again.text
    assert again.json()["change"] == ['args: ["--port=8080", "--verbose"] → []', "replicas: 2 → 3"]
    second = await finished(api, await release(api, service, environment, "1.0.1"))
    assert second["state"] == "succeeded", second["reason"]
    secret = await client.CoreV1Api(kube).read_namespaced_secret(f"{service}-db", namespace)
    assert base64.b64decode(secret.data["password"]).decode() == SECRET
    changed = await configure(
        api, service, environment, template_id, owner="payments", db_password=SECRET + "-new"
    )
    assert "db_password: changed (holds a secret)" in changed.json()["change"]

    # Nowhere to be read: answers, diffs, the audit log, the database, the logs.
    encoded = base64.b64encode(SECRET.encode()).decode()
    answers = [
        await api.get(f"/releases/{first['id']}"),
        await api.get(f"/services/{service}/config/{environment}/versions"),
        await api.get(
            f"/services/{service}/preview", params={"environment": environment, "version": "1.0.1"}
        ),
        await api.get(f"/releases/{first['id']}/rollback/preview"),
        await api.get(f"/services/{service}/state", params={"environment": environment}),
        await api.get("/audit", params={"target": f"config/{service}/{environment}"}),
        await api.get(f"/templates/{template_id}/impact"),
    ]
    for answer in answers:
        assert answer.status_code == 200, (answer.url, answer.text)
        assert SECRET not in answer.text, answer.url
        assert encoded not in answer.text, answer.url
    stored = await raw_documents(stack_env, fabu, service)
    assert "fernet:" in stored
    assert SECRET not in stored
    assert encoded not in stored
    for stage in ("api", "renderer", "deployer", "tracker", "notifier"):
        assert SECRET not in fabu.log(stage)


async def test_a_schema_cannot_redefine_what_fabu_fills_in_and_must_be_one(
    api: httpx.AsyncClient,
) -> None:
    cases = {
        "image": {"type": "object", "properties": {"image": {"type": "string"}}},
        "canary": {"type": "object", "properties": {"canary": {"type": "array"}}},
        "type": {"type": "objekt"},
        "default": {"type": "object", "properties": {"n": {"type": "integer", "default": "x"}}},
        "secret": {"type": "object", "properties": {"k": {"type": "integer", "writeOnly": True}}},
    }
    for what, parameters in cases.items():
        refused = await api.post(
            "/templates", json={"name": "bad", "content": "a: 1", "parameters": parameters}
        )
        assert refused.status_code == 422, what
        assert refused.json()["field"] == "parameters", what
        assert refused.json()["detail"].startswith("parameters"), what
    assert (
        "release parameter"
        in (
            await api.post(
                "/templates",
                json={"name": "bad", "content": "a: 1", "parameters": cases["image"]},
            )
        ).json()["detail"]
    )


async def test_a_version_that_breaks_configs_shows_them_and_their_releases_are_refused(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    template_id = await template_with(api)
    assert (
        await configure(api, service, environment, template_id, owner="core", db_password=SECRET)
    ).status_code == 200
    first = await finished(api, await release(api, service, environment, "1.0.0"))
    assert first["state"] == "succeeded", first["reason"]
    second = await finished(api, await release(api, service, environment, "1.0.1"))
    assert second["state"] == "succeeded", second["reason"]

    stricter = json.loads(json.dumps(SCHEMA))
    stricter["properties"]["cost_center"] = {"type": "string"}
    stricter["required"].append("cost_center")
    stricter["properties"]["owner"] = {"type": "integer"}
    changed = await api.put(
        f"/templates/{template_id}",
        json={
            "content": TEMPLATE.replace("{{ owner }}", "{{ owner | string }}"),
            "parameters": stricter,
        },
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["version"] == 2

    impact = (await api.get(f"/templates/{template_id}/impact")).json()
    [reached] = [s for s in impact["services"] if s["service"] == service]
    assert reached["problems"] == {
        "params.cost_center": "required",
        "params.owner": "not an integer",
    }
    assert "releasing it is refused" in reached["error"]
    view = (await api.get(f"/services/{service}/config/{environment}")).json()
    assert view["problems"] == reached["problems"]

    refused = await api.post(
        "/releases", json={"service": service, "environment": environment, "version": "1.0.0"}
    )
    assert refused.status_code == 422
    assert "params.cost_center: required" in refused.json()["detail"]
    assert refused.json()["errors"] == reached["problems"]
    queued = (await api.post(f"/templates/{template_id}/release")).json()
    [mine] = [q for q in queued if q["service"] == service]
    assert mine["release_id"] is None
    assert "params.cost_center: required" in mine["error"]
    redeploy = await api.post(f"/releases/{second['id']}/redeploy")
    assert redeploy.status_code == 422

    # A rollback (to an earlier release: not to what runs) restores the values with the
    # template version they fitted.
    rollback = await api.post(f"/releases/{first['id']}/rollback")
    assert rollback.status_code == 202, rollback.text
    restored = await finished(api, rollback.json()["id"])
    assert restored["state"] == "succeeded", restored["reason"]
    assert (restored["template_version"], restored["params"]["owner"]) == (1, "core")

    fixed = await configure(
        api, service, environment, template_id, owner=7, cost_center="cc-1", db_password=MASK
    )
    assert fixed.status_code == 200, fixed.text
    again = await finished(api, await release(api, service, environment, "1.0.2"))
    assert again["state"] == "succeeded", again["reason"]
    assert again["template_version"] == 2


async def test_a_gitlab_template_syncs_its_schema_file_with_it(
    api: httpx.AsyncClient, gitlab: FakeGitLab
) -> None:
    project = f"platform/{unique('tpl')}"
    path = "templates/web.yaml.j2"
    gitlab.push(project, {path: TEMPLATE, path + ".schema.json": json.dumps(SCHEMA)})
    created = await api.post(
        "/templates",
        json={"name": "web", "source": {"type": "gitlab", "project": project, "path": path}},
    )
    assert created.status_code == 201, created.text
    template_id = created.json()["id"]
    assert created.json()["parameters"] == SCHEMA

    # A push changing only the schema file is a new version of the template.
    wider = {**SCHEMA, "properties": {**SCHEMA["properties"], "tier": {"enum": ["gold", "silver"]}}}
    payload = gitlab.push(project, {path + ".schema.json": json.dumps(wider)})
    answer = await api.post(
        "/webhooks/gitlab", json=payload, headers={**HOOK, "X-Gitlab-Event": "Push Hook"}
    )
    assert answer.status_code == 202, answer.text
    body = await version_of(api, template_id, 2)
    assert body["parameters"]["properties"]["tier"] == {"enum": ["gold", "silver"]}
    assert body["commit_sha"] == payload["after"]
    assert body["content"] == TEMPLATE

    # A schema that is not one keeps version 2 in use and says why.
    broken = gitlab.push(project, {path + ".schema.json": '{"type": "object", "properties": 3}'})
    assert (await api.post("/webhooks/gitlab", json=broken, headers=HOOK)).status_code == 202
    recorded = await sync_error(api, template_id)
    assert recorded["version"] == 2
    assert "web.yaml.j2.schema.json" in recorded["error"]
    # Read from a source, a template declares its parameters there.
    declared = await api.post(
        "/templates",
        json={
            "name": "web",
            "source": {"type": "gitlab", "project": project, "path": path},
            "parameters": SCHEMA,
        },
    )
    assert declared.status_code == 422


async def test_a_git_template_reads_its_schema_file_at_the_same_commit(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    remote, work = repository(tmp_path, TEMPLATE)
    (work / "web.yaml.j2.schema.json").write_text(json.dumps(SCHEMA))
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "schema", cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    source = {"type": "git", "url": remote.as_uri(), "path": "web.yaml.j2", "ref": "main"}
    created = await api.post("/templates", json={"name": "web", "source": source})
    assert created.status_code == 201, created.text
    assert created.json()["parameters"] == SCHEMA
    assert created.json()["commit_sha"] == git("rev-parse", "HEAD", cwd=work).strip()
