"""Setting Fabu up through the API: services and environments changed, archived and
restored; template versions with their own time and author; the release list's paging,
counts and prefix filters; an image registered by its tag alone."""

import httpx

from devstack.system import FabuSystem
from tests.support.releases import finished, prepare, push, release
from tests.support.stack import StackEnv
from tests.support.users import user_with


async def _audited(api: httpx.AsyncClient, action: str, target: str) -> list[dict[str, object]]:
    found = await api.get("/audit", params={"action": action, "target": target})
    assert found.status_code == 200, found.text
    items: list[dict[str, object]] = found.json()["items"]
    return items


async def test_an_archived_service_leaves_the_lists_and_is_released_no_more(
    api: httpx.AsyncClient, fabu: FabuSystem, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    await push(api, service, "1.0")
    before = (await api.get(f"/services/{service}")).json()

    changed = await api.put(
        f"/services/{service}", json={**before, "team": "payments", "gitlab_project": "pay/api"}
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["team"], changed.json()["gitlab_project"]) == ("payments", "pay/api")
    wrong = await api.put(f"/services/{service}", json={**before, "name": "other"})
    assert (wrong.status_code, wrong.json()["field"]) == (422, "name")
    assert await _audited(api, "service.update", f"service/{service}")

    archived = await api.post(f"/services/{service}/archive")
    assert archived.status_code == 200, archived.text
    assert archived.json()["archived_at"]
    assert service not in [s["name"] for s in (await api.get("/services")).json()]
    every = (await api.get("/services", params={"archived": "true"})).json()
    assert service in [s["name"] for s in every]
    # Kept with its history: still readable by name.
    assert (await api.get(f"/services/{service}")).json()["archived_at"]
    refused = await api.post(
        "/releases", json={"service": service, "environment": environment, "version": "1.0"}
    )
    assert refused.status_code == 409, refused.text
    assert f"service {service} is archived" in refused.json()["detail"]
    # Changing its settings does not bring it back.
    again = await api.put(f"/services/{service}", json={**before, "team": "core"})
    assert again.json()["archived_at"] == archived.json()["archived_at"]
    [entry] = await _audited(api, "service.archive", f"service/{service}")
    assert entry["actor"] == "admin"

    restored = await api.post(f"/services/{service}/restore")
    assert restored.json()["archived_at"] is None
    assert await _audited(api, "service.restore", f"service/{service}")
    done = await finished(api, await release(api, service, environment, "1.0"))
    assert done["state"] == "succeeded"


async def test_an_archived_environment_is_refused_and_only_an_admin_archives_it(
    api: httpx.AsyncClient, fabu: FabuSystem, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    await push(api, service, "1.0")
    async with user_with(api, fabu, [{"role": "config_admin"}]) as (_, editor):
        denied = await editor.post(f"/environments/{environment}/archive")
        assert denied.status_code == 403, denied.text
        # A config-admin may archive a service.
        assert (await editor.post(f"/services/{service}/archive")).status_code == 200
        assert (await editor.post(f"/services/{service}/restore")).status_code == 200
    assert (await api.post(f"/environments/{environment}/archive")).status_code == 200
    names = [e["name"] for e in (await api.get("/environments")).json()]
    assert environment not in names
    every = (await api.get("/environments", params={"archived": "true"})).json()
    assert environment in [e["name"] for e in every]
    refused = await api.post(
        "/releases", json={"service": service, "environment": environment, "version": "1.0"}
    )
    assert refused.status_code == 409
    assert f"environment {environment} is archived" in refused.json()["detail"]
    env = next(e for e in every if e["name"] == environment)
    kept = await api.put(f"/environments/{environment}", json={**env, "archived_at": None})
    assert kept.json()["archived_at"] == env["archived_at"]
    assert await _audited(api, "environment.archive", f"environment/{environment}")
    assert (await api.post(f"/environments/{environment}/restore")).status_code == 200
    assert environment in [e["name"] for e in (await api.get("/environments")).json()]


async def test_template_versions_carry_their_own_time_and_author(
    api: httpx.AsyncClient, fabu: FabuSystem
) -> None:
    content = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ service }}\n"
    async with user_with(api, fabu, [{"role": "config_admin"}]) as (editor_name, editor):
        made = await api.post("/templates", json={"name": "cm", "content": content})
        template_id = made.json()["id"]
        changed = await editor.put(
            f"/templates/{template_id}", json={"content": content + "data: {}\n"}
        )
        assert changed.status_code == 200, changed.text
    second, first = (await api.get(f"/templates/{template_id}/versions")).json()
    assert (first["version"], first["author"]) == (1, "admin")
    assert (second["version"], second["author"]) == (2, editor_name)
    assert second["created_at"] > first["created_at"]


async def test_the_release_list_pages_both_ways_with_a_count_and_prefix_filters(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    await push(api, service, "1.0")
    made = []
    for _ in range(5):
        accepted = await api.post(
            "/releases", json={"service": service, "environment": environment, "version": "1.0"}
        )
        assert accepted.status_code == 202, accepted.text
        made.append(accepted.json()["id"])
        await finished(api, made[-1])
    newest_first = made[::-1]
    # Upper case and only the beginning of the names.
    query: dict[str, str | int] = {
        "service": service[:-2].upper(),
        "environment": environment.upper(),
        "prefix": "true",
        "count": "true",
        "limit": 2,
    }
    first = (await api.get("/releases", params=query)).json()
    assert [r["id"] for r in first["items"]] == newest_first[:2]
    assert (first["total"], first["offset"], first["previous_cursor"]) == (5, 0, None)
    second = (await api.get("/releases", params={**query, "cursor": first["next_cursor"]})).json()
    assert [r["id"] for r in second["items"]] == newest_first[2:4]
    assert second["offset"] == 2
    third = (await api.get("/releases", params={**query, "cursor": second["next_cursor"]})).json()
    assert ([r["id"] for r in third["items"]], third["next_cursor"]) == (newest_first[4:], None)
    back = (await api.get("/releases", params={**query, "back": third["previous_cursor"]})).json()
    assert [r["id"] for r in back["items"]] == newest_first[2:4]
    assert back["offset"] == 2
    # Without prefix the names are exact.
    exact = await api.get("/releases", params={"service": service[:-2], "limit": 2})
    assert exact.json()["items"] == []
    both = await api.get("/releases", params={"cursor": made[0], "back": made[1]})
    assert (both.status_code, both.json()["field"]) == (422, "back")


async def test_an_image_registered_by_its_tag_gets_its_repository_and_digest(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, _ = await prepare(api, stack_env, namespace)
    await push(api, service, "4.2")
    registered = await api.post("/images", json={"service": service, "tag": "4.2"})
    assert registered.status_code == 200, registered.text
    image = registered.json()
    repository = (await api.get(f"/services/{service}")).json()["image_repository"]
    assert image["repository"] == repository
    assert image["digest"].startswith("sha256:")
    assert image["tags"] == ["4.2"]
    missing = await api.post("/images", json={"service": service, "tag": "9.9"})
    assert (missing.status_code, missing.json()["field"]) == (422, "tag")
    assert "has no tag '9.9'" in missing.json()["detail"]
    nobody = await api.post("/images", json={"tag": "4.2"})
    assert nobody.status_code == 422


async def test_a_service_goes_back_to_its_environments_default_channels(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    default = [{"type": "email", "recipients": ["team@example.com"]}]
    own = [{"type": "email", "recipients": ["svc@example.com"]}]
    assert (await api.put(f"/environments/{environment}/notifications", json=default)).is_success
    path = f"/services/{service}/notifications/{environment}"
    assert (await api.put(path, json=own)).is_success
    assert (await api.get(path)).json()[0]["recipients"] == ["svc@example.com"]
    reset = await api.delete(path)
    assert reset.status_code == 200, reset.text
    assert reset.json()[0]["recipients"] == ["team@example.com"]
    assert (await api.get(path)).json()[0]["recipients"] == ["team@example.com"]
    [entry] = await _audited(api, "notifications.reset", f"notifications/{service}/{environment}")
    assert entry["actor"] == "admin"
    # Nothing of its own left: resetting again changes nothing and records nothing.
    assert (await api.delete(path)).status_code == 200
    assert (
        len(await _audited(api, "notifications.reset", f"notifications/{service}/{environment}"))
        == 1
    )
