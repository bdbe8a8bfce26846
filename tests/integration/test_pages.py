"""The pages say why: a refused form shows its reason where the person looks, with the
link to fix it; an environment is saved only once its cluster has the namespace and lets
Fabu release there; the lists name releases and grants in words."""

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import yaml
from kubernetes_asyncio import client

from devstack.system import FabuSystem
from tests.conftest import unique
from tests.integration.test_cli import fabu_cli
from tests.support.releases import DEMO, prepare, push
from tests.support.stack import StackEnv
from tests.support.users import make_user, token_for


@asynccontextmanager
async def pages(fabu: FabuSystem, token: str) -> AsyncIterator[httpx.AsyncClient]:
    """The web UI as the holder of ``token`` (a bearer token needs no CSRF token)."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=fabu.api_url, headers=headers, timeout=60) as http:
        yield http


async def _namespace_gone(kube: client.ApiClient, name: str) -> None:
    try:
        await client.CoreV1Api(kube).delete_namespace(name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


async def test_an_environment_on_a_missing_namespace_is_refused_until_an_admin_asks_to_create_it(
    api: httpx.AsyncClient, stack_env: StackEnv, kube: client.ApiClient
) -> None:
    name, missing = unique("e"), unique("ns")
    body = {"name": name, "namespace": missing, "kubeconfig": stack_env.kubeconfig.name}
    try:
        refused = await api.post("/environments", json=body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == "namespace"
        assert refused.json()["detail"] == (
            f'namespace: namespace "{missing}" does not exist in the cluster of environment '
            f"{name}: ask a cluster admin to create it, or tick 'create it'"
        )
        assert (await api.get(f"/environments/{name}")).status_code == 404

        made = await api.post("/environments", json={**body, "create_namespace": True})
        assert made.status_code == 201, made.text
        assert "create_namespace" not in made.json()
        found = await client.CoreV1Api(kube).read_namespace(missing)
        assert found.metadata.name == missing
        audited = await api.get("/audit", params={"action": "namespace.create"})
        assert [e for e in audited.json()["items"] if e["target"] == f"environment/{name}"]

        # Moved to another missing namespace: refused again, and the saved one stays.
        other = unique("ns")
        moved = await api.put(f"/environments/{name}", json={**made.json(), "namespace": other})
        assert (moved.status_code, moved.json()["field"]) == (422, "namespace"), moved.text
        assert (await api.get(f"/environments/{name}")).json()["namespace"] == missing
    finally:
        await _namespace_gone(kube, missing)


async def test_the_environment_form_shows_the_missing_namespace_and_creates_it_when_ticked(
    api: httpx.AsyncClient,
    fabu: FabuSystem,
    admin_token: str,
    stack_env: StackEnv,
    kube: client.ApiClient,
) -> None:
    name, missing = unique("e"), unique("ns")
    form = {"name": name, "namespace": missing, "kubeconfig": stack_env.kubeconfig.name}
    try:
        async with pages(fabu, admin_token) as http:
            refused = await http.post("/environments", data=form)
            assert refused.status_code == 422
            assert f"namespace &#34;{missing}&#34; does not exist" in refused.text
            assert "create_namespace" in refused.text  # the box to tick is on the form
            made = await http.post(
                "/environments", data={**form, "create_namespace": "on"}, follow_redirects=False
            )
            assert made.status_code == 303, made.text
        assert (await api.get(f"/environments/{name}")).json()["namespace"] == missing
        assert (await client.CoreV1Api(kube).read_namespace(missing)).metadata.name == missing
    finally:
        await _namespace_gone(kube, missing)


async def test_the_cli_creates_a_missing_namespace_when_asked(
    fabu: FabuSystem,
    admin_token: str,
    stack_env: StackEnv,
    kube: client.ApiClient,
    tmp_path: Path,
) -> None:
    env = {"FABU_URL": fabu.api_url, "FABU_TOKEN": admin_token, "XDG_CONFIG_HOME": str(tmp_path)}
    name, missing = unique("e"), unique("ns")
    command = ("environment", "create", name, "--namespace", missing)
    where = ("--kubeconfig", stack_env.kubeconfig.name)
    try:
        code, out, err = await fabu_cli(*command, *where, env=env)
        assert code != 0
        assert f'namespace "{missing}" does not exist' in out + err
        code, out, err = await fabu_cli(*command, *where, "--create-namespace", env=env)
        assert code == 0, out + err
        assert (await client.CoreV1Api(kube).read_namespace(missing)).metadata.name == missing
    finally:
        await _namespace_gone(kube, missing)


@asynccontextmanager
async def kubeconfig_of_an_account_with_no_rights(
    stack_env: StackEnv, kube: client.ApiClient, namespace: str
) -> AsyncIterator[str]:
    """A kubeconfig (its name in the kubeconfig directory) of a service account that may
    read its namespace and nothing else."""
    core, rbac = client.CoreV1Api(kube), client.RbacAuthorizationV1Api(kube)
    account = "fabu-nothing"
    sa = cast(client.V1ServiceAccount, {"metadata": {"name": account}})
    await core.create_namespaced_service_account(namespace, sa)
    role: dict[str, Any] = {
        "metadata": {"name": account},
        "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}],
    }
    await rbac.create_namespaced_role(namespace, cast(client.V1Role, role))
    binding: dict[str, Any] = {
        "metadata": {"name": account},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }
    await rbac.create_namespaced_role_binding(namespace, cast(client.V1RoleBinding, binding))
    request = cast(client.AuthenticationV1TokenRequest, {"spec": {"expirationSeconds": 3600}})
    token = await core.create_namespaced_service_account_token(account, namespace, request)
    config = yaml.safe_load(stack_env.kubeconfig.read_text())
    config["users"] = [{"name": "admin", "user": {"token": token.status.token}}]
    path = stack_env.kubeconfig.parent / f"nothing-{namespace}.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        yield path.name
    finally:
        path.unlink()


async def test_a_namespace_fabu_may_not_release_to_is_refused_naming_what_was_denied(
    api: httpx.AsyncClient, stack_env: StackEnv, kube: client.ApiClient, namespace: str
) -> None:
    async with kubeconfig_of_an_account_with_no_rights(stack_env, kube, namespace) as config:
        name = unique("e")
        body = {"name": name, "namespace": namespace, "kubeconfig": config}
        refused = await api.post("/environments", json=body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "namespace"
    detail = refused.json()["detail"]
    assert f"does not let Fabu release to namespace {namespace!r}" in detail
    for denied in ("create apps/deployments", "patch apps/deployments", "get pods/log"):
        assert denied in detail
    assert (await api.get(f"/environments/{name}")).status_code == 404


async def test_an_unreachable_cluster_is_a_503_naming_it_and_nothing_is_saved(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    dead = stack_env.kubeconfig.parent / f"dead-save-{namespace}.yaml"
    config = stack_env.kubeconfig.read_text()
    port = re.search(r"server: https://127\.0\.0\.1:(\d+)", config)
    assert port is not None
    dead.write_text(config.replace(port.group(1), "1"))  # nothing listens on port 1
    try:
        name = unique("e")
        answer = await api.post(
            "/environments", json={"name": name, "namespace": namespace, "kubeconfig": dead.name}
        )
    finally:
        dead.unlink()
    assert answer.status_code == 503, answer.text
    assert f"the cluster of environment {name} cannot be reached" in answer.json()["detail"]
    assert "nothing was saved" in answer.json()["detail"]
    assert (await api.get(f"/environments/{name}")).status_code == 404


async def test_the_new_release_page_says_why_a_config_that_no_longer_fits_is_refused(
    api: httpx.AsyncClient, fabu: FabuSystem, admin_token: str, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    await push(api, service, "1.0")
    config = (await api.get(f"/services/{service}/config/{environment}")).json()
    region = {"type": "object", "properties": {"region": {"type": "string"}}}
    schema = {**region, "required": ["region"]}
    changed = await api.put(
        f"/templates/{config['template_id']}", json={"content": DEMO, "parameters": schema}
    )
    assert changed.status_code == 200, changed.text
    fix = f"/services/{service}/config/{environment}"
    query = {"service": service, "environment": environment, "version": "1.0", "preview": "1"}

    async with pages(fabu, admin_token) as http:
        shown = await http.get("/releases/new", params=query)
        posted = await http.post(
            "/releases/new",
            data={"service": service, "environment": environment, "version": "1.0"},
        )
    for page in (shown, posted):
        assert page.status_code == 422
        assert 'id="error-form"' in page.text
        assert "params.region: required; fix the config" in page.text
        assert f'href="{fix}" id="fix-config"' in page.text


async def test_a_malformed_tag_is_refused_in_words(api: httpx.AsyncClient) -> None:
    answer = await api.post(
        "/releases", json={"service": "any", "environment": "any", "version": "-1.0"}
    )
    assert answer.status_code == 422
    said = str(answer.json()["detail"])
    assert (
        "a tag is 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'" in said
    )
    assert "[A-Za-z0-9_]" not in said


async def test_lists_link_each_release_and_name_grants_and_environment_settings(
    api: httpx.AsyncClient, fabu: FabuSystem, admin_token: str, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    await push(api, service, "1.0")
    started = await api.post(
        "/releases", json={"service": service, "environment": environment, "version": "1.0"}
    )
    assert started.status_code == 202, started.text
    release_id = started.json()["id"]
    env = (await api.get(f"/environments/{environment}")).json()
    updated = await api.put(
        f"/environments/{environment}",
        json={**env, "approval_required": True, "auto_rollback": True},
    )
    assert updated.status_code == 200, updated.text
    scoped = await make_user(api, [{"role": "releaser", "environment": environment}])

    async with pages(fabu, admin_token) as http:
        listed = (await http.get("/releases", params={"service": service})).text
        users = (await http.get("/users")).text
        environments = (await http.get("/environments")).text
        audit = (await http.get("/audit", params={"target": f"release/{release_id}"})).text
        service_page = (await http.get(f"/services/{service}")).text

    assert f'<a href="/releases/{release_id}" class="release-link"' in listed
    assert f'<a href="/services/{service}" class="service-link">{service}</a>' in listed
    row = users[users.index(f'id="user-{scoped}"') :]
    assert f"Releaser: Environment {environment} · Service any" in row[: row.index("</tr>")]
    card = environments[environments.index(f'id="env-{environment}"') :]
    summary = card[: card.index("</p>")]
    assert "Approval required: yes" in summary
    assert "Automatic rollback: yes" in summary
    assert f'<a href="/releases/{release_id}" title="release/{release_id}">' in audit
    assert f"{service} 1.0 → {environment}" in audit
    # The email kind shows recipients only (the stylesheet hides the robots' fields).
    assert 'class="for-robot"' in environments
    assert 'class="for-email"' in environments
    assert "no releases in these weeks" not in service_page  # one release: a real chart


async def test_a_service_with_no_releases_has_charts_that_say_so(
    api: httpx.AsyncClient, fabu: FabuSystem, admin_token: str, stack_env: StackEnv, namespace: str
) -> None:
    service, _ = await prepare(api, stack_env, namespace)
    async with pages(fabu, admin_token) as http:
        page = (await http.get(f"/services/{service}")).text
    assert page.count("Nothing yet: no releases in these weeks.") == 3
    assert 'class="max"' not in page  # no made-up axis


@pytest.mark.parametrize("kind", ["email", "dingtalk"])
async def test_a_channel_keeps_only_the_fields_of_its_kind(
    api: httpx.AsyncClient,
    fabu: FabuSystem,
    admin_token: str,
    stack_env: StackEnv,
    namespace: str,
    kind: str,
) -> None:
    _, environment = await prepare(api, stack_env, namespace)
    form = {
        "channel_add": "1",
        "type": kind,
        "url": "https://robot.example.com/send",
        "secret": "s3cret-value",
        "recipients": "team@example.com",
        "mobiles": "13800000000",
        "event_failed": "on",
    }
    async with pages(fabu, admin_token) as http:
        saved = await http.post(f"/environments/{environment}", data=form)
    assert saved.status_code in (200, 303), saved.text
    channel = (await api.get(f"/environments/{environment}/notifications")).json()[-1]
    assert channel["type"] == kind
    if kind == "email":
        assert (channel["url"], channel["secret"], channel["mobiles"]) == ("", "", [])
        assert channel["recipients"] == ["team@example.com"]
    else:
        assert channel["recipients"] == []
        assert channel["mobiles"] == ["13800000000"]


async def test_a_refused_grant_is_shown_at_that_users_form(
    api: httpx.AsyncClient, fabu: FabuSystem, admin_token: str
) -> None:
    name = await make_user(api, [])
    await token_for(api, name)
    async with pages(fabu, admin_token) as http:
        refused = await http.post(
            f"/users/{name}/grants", data={"role": "viewer", "environment": "production"}
        )
    assert refused.status_code == 422
    row = refused.text[refused.text.index(f'id="user-{name}"') :]
    row = row[: row.index("</tr>")]
    assert "only a releaser grant has a scope" in row
