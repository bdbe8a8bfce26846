"""Templates from GitLab (the tests' stand-in) and Git, versioned configs, preview, diff, blast radius."""

from pathlib import Path
from typing import Any

import httpx

from tests.conftest import unique
from tests.support import gitlab as gitlab_support
from tests.support.git import git, repository
from tests.support.gitlab import FakeGitLab
from tests.support.releases import DEMO, finished, prepare, release
from tests.support.stack import StackEnv
from tests.support.wait import eventually

HOOK = {"X-Gitlab-Token": gitlab_support.WEBHOOK_SECRET}


async def gitlab_template(
    api: httpx.AsyncClient, gitlab: FakeGitLab, content: str = DEMO
) -> tuple[str, str, dict[str, Any]]:
    """A GitLab project holding one template file, and the template read from it."""
    project = f"platform/{unique('tpl')}"
    gitlab.push(project, {"templates/web.yaml.j2": content})
    created = await api.post(
        "/templates",
        json={
            "name": "web",
            "source": {"type": "gitlab", "project": project, "path": "templates/web.yaml.j2"},
        },
    )
    assert created.status_code == 201, created.text
    template: dict[str, Any] = created.json()
    return project, template["id"], template


async def configure(
    api: httpx.AsyncClient, service: str, environment: str, template_id: str, **params: Any
) -> httpx.Response:
    return await api.put(
        f"/services/{service}/config/{environment}",
        json={"template_id": template_id, "params": params},
    )


async def sync_error(api: httpx.AsyncClient, template_id: str) -> dict[str, Any]:
    """The template once a sync that could not be used is recorded on it."""

    async def failed() -> dict[str, Any] | None:
        body: dict[str, Any] = (await api.get(f"/templates/{template_id}")).json()
        return body if body["error"] else None

    return await eventually(failed, f"a sync error recorded on template {template_id}")


async def version_of(api: httpx.AsyncClient, template_id: str, version: int) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        body: dict[str, Any] = (await api.get(f"/templates/{template_id}")).json()
        return body if body["version"] == version else None

    return await eventually(probe, f"template {template_id} version {version}")


async def test_a_gitlab_push_stores_a_new_version_and_previews_follow_it(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, gitlab: FakeGitLab
) -> None:
    project, template_id, template = await gitlab_template(api, gitlab)
    assert template["version"] == 1
    assert template["commit_sha"] == gitlab.project(project).branches["main"]
    service, environment = await prepare(api, stack_env, namespace, replicas=2)
    assert (await configure(api, service, environment, template_id, replicas=2)).status_code == 200
    before = (
        await api.get(
            f"/services/{service}/preview", params={"environment": environment, "version": "1.0.0"}
        )
    ).json()
    assert "minReadySeconds" not in before["manifest"]
    assert before["template_version"] == 1

    changed = DEMO.replace(
        "  replicas: {{ replicas }}", "  replicas: {{ replicas }}\n  minReadySeconds: 5"
    )
    payload = gitlab.push(project, {"templates/web.yaml.j2": changed, "README.md": "docs"})
    answer = await api.post(
        "/webhooks/gitlab", json=payload, headers={**HOOK, "X-Gitlab-Event": "Push Hook"}
    )

    assert answer.status_code == 202, answer.text
    assert answer.json()["paths"] == ["README.md", "templates/web.yaml.j2"]
    body = await version_of(api, template_id, 2)
    assert body["commit_sha"] == payload["after"]
    assert body["content"] == changed
    versions = (await api.get(f"/templates/{template_id}/versions")).json()
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[1]["content"] == DEMO
    after = (
        await api.get(
            f"/services/{service}/preview", params={"environment": environment, "version": "1.0.0"}
        )
    ).json()
    assert "minReadySeconds: 5" in after["manifest"]
    assert after["template_version"] == 2
    # The same push delivered again adds nothing.
    again = await api.post("/webhooks/gitlab", json=payload, headers=HOOK)
    assert again.status_code == 202
    merged = gitlab.merged(project, {"templates/web.yaml.j2": changed.replace("5", "6")})
    assert (await api.post("/webhooks/gitlab", json=merged, headers=HOOK)).status_code == 202
    assert "minReadySeconds: 6" in (await version_of(api, template_id, 3))["content"]


async def test_a_wrong_or_missing_webhook_token_is_refused_and_changes_nothing(
    api: httpx.AsyncClient, gitlab: FakeGitLab
) -> None:
    project, template_id, _ = await gitlab_template(api, gitlab)
    payload = gitlab.push(project, {"templates/web.yaml.j2": DEMO + "# changed\n"})

    for headers in ({"X-Gitlab-Token": "wrong"}, {}, {"X-Gitlab-Token": ""}):
        answer = await api.post("/webhooks/gitlab", json=payload, headers=headers)
        assert answer.status_code == 401
        assert "X-Gitlab-Token" in answer.json()["detail"]

    assert (await api.get(f"/templates/{template_id}")).json()["version"] == 1
    opened = gitlab.merged(project, {})
    opened["object_attributes"].update(state="opened", action="open")
    ignored = await api.post("/webhooks/gitlab", json=opened, headers=HOOK)
    assert ignored.json()["accepted"] is False
    assert (await api.post("/webhooks/gitlab", content=b"{", headers=HOOK)).status_code == 422


async def test_a_template_that_does_not_parse_keeps_the_old_version_and_records_why(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, gitlab: FakeGitLab
) -> None:
    project, template_id, _ = await gitlab_template(api, gitlab)
    service, environment = await prepare(api, stack_env, namespace)
    assert (await configure(api, service, environment, template_id)).status_code == 200
    broken = DEMO.replace("  replicas: {{ replicas }}", "  replicas: {{ replicas }\n")
    line = broken.splitlines().index("  replicas: {{ replicas }") + 1
    payload = gitlab.push(project, {"templates/web.yaml.j2": broken})

    assert (await api.post("/webhooks/gitlab", json=payload, headers=HOOK)).status_code == 202

    body = await sync_error(api, template_id)
    assert body["version"] == 1
    assert body["content"] == DEMO
    assert f"line {line}" in body["error"]
    assert body["error_sha"] == payload["after"]
    done = await finished(api, await release(api, service, environment, "1.0.0"))
    assert done["state"] == "succeeded", done["reason"]
    assert done["template_version"] == 1


async def test_config_validation_names_the_template_line_and_versions_keep_the_changes(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    needs_team = DEMO.replace(
        "  labels: {{ dict(labels, app=service) }}\n  annotations:",
        "  labels: {{ dict(labels, app=service, team=labels.team) }}\n  annotations:",
    )
    line = (
        needs_team.splitlines().index("  labels: {{ dict(labels, app=service, team=labels.team) }}")
        + 1
    )
    template_id = (
        await api.post("/templates", json={"name": "team", "content": needs_team})
    ).json()["id"]

    refused = await configure(api, service, environment, template_id)
    assert refused.status_code == 422
    assert refused.json()["detail"].startswith("params: template 'team' version 1 does not render")
    assert f"line {line}" in refused.json()["detail"]
    assert "team" in refused.json()["detail"]
    saved = await configure(
        api, service, environment, template_id, labels={"team": "core"}, replicas=3
    )
    assert saved.status_code == 200, saved.text

    versions = (await api.get(f"/services/{service}/config/{environment}/versions")).json()
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["author"] == "admin"
    assert versions[0]["template_id"] == template_id
    assert "replicas: 1 → 3" in versions[0]["change"]
    assert 'labels: {} → {"team": "core"}' in versions[0]["change"]
    first = (await api.get(f"/services/{service}/config/{environment}/versions/1")).json()
    # Saved without replicas: the template's default, filled in where it is rendered.
    assert "replicas" not in first["params"]
    assert first["effective"]["replicas"] == 1
    assert (
        await api.get(f"/services/{service}/config/{environment}/versions/9")
    ).status_code == 404
    bad = await api.post("/templates", json={"name": "bad", "content": "a: {{ x "})
    assert bad.status_code == 422
    assert "line 1" in bad.json()["detail"]


def changed_lines(diff: str) -> list[str]:
    return [
        line
        for line in diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


async def test_the_preview_diff_against_live_shows_exactly_the_changed_fields(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace, replicas=2)
    done = await finished(api, await release(api, service, environment, "1.0.0"))
    assert done["state"] == "succeeded", done["reason"]
    await configure(api, service, environment, done["template_id"], replicas=3)

    answer = await api.get(
        f"/services/{service}/preview", params={"environment": environment, "version": "1.1.0"}
    )

    assert answer.status_code == 200, answer.text
    objects = {o["kind"]: o for o in answer.json()["diff"]["objects"]}
    assert objects["Service"]["action"] == "unchanged"
    assert objects["Service"]["diff"] == ""
    assert objects["Deployment"]["action"] == "update"
    lines = changed_lines(objects["Deployment"]["diff"])
    image = f"/team/{service}"
    assert sorted(lines) == sorted(
        [
            f"-    fabu.dev/release-id: {done['id']}",
            "+    fabu.dev/release-id: preview",
            "-  replicas: 2",
            "+  replicas: 3",
            *(line for line in lines if image in line),
        ]
    )
    assert [line[0] for line in lines if image in line] == ["-", "+"]
    assert any(line.endswith(":1.1.0") for line in lines if line.startswith("+"))
    missing = await api.get(
        f"/services/{unique('svc')}/preview", params={"environment": environment, "version": "1"}
    )
    assert missing.status_code == 404


async def test_blast_radius_lists_the_services_using_a_template_and_can_release_them(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    shared = (await api.post("/templates", json={"name": "shared", "content": DEMO})).json()["id"]
    first, env_one = await prepare(api, stack_env, namespace)
    second, env_two = await prepare(api, stack_env, namespace)
    other, _ = await prepare(api, stack_env, namespace)
    for service, environment in ((first, env_one), (second, env_two)):
        assert (await configure(api, service, environment, shared, replicas=1)).status_code == 200
    done = await finished(api, await release(api, first, env_one, "1.0.0"))
    assert done["state"] == "succeeded", done["reason"]

    changed = DEMO.replace(
        "  replicas: {{ replicas }}", "  replicas: {{ replicas }}\n  minReadySeconds: 1"
    )
    updated = await api.put(f"/templates/{shared}", json={"content": changed})
    assert updated.json()["version"] == 2
    impact = (await api.get(f"/templates/{shared}/impact")).json()

    assert (impact["from_version"], impact["to_version"]) == (1, 2)
    reached = {(s["service"], s["environment"]): s for s in impact["services"]}
    assert set(reached) == {(first, env_one), (second, env_two)}
    assert reached[(first, env_one)]["version"] == "1.0.0"
    assert reached[(second, env_two)]["version"] is None
    for entry in reached.values():
        assert "+  minReadySeconds: 1" in entry["diff"].splitlines()
        assert len(changed_lines(entry["diff"])) == 1

    queued = (await api.post(f"/templates/{shared}/release")).json()
    by_service = {q["service"]: q for q in queued}
    assert by_service[second]["release_id"] is None
    assert "never released" in by_service[second]["error"]
    body = await finished(api, by_service[first]["release_id"])
    assert body["state"] == "succeeded", body["reason"]
    assert (body["version"], body["template_version"]) == ("1.0.0", 2)
    assert "minReadySeconds: 1" in body["manifest"]
    assert other not in by_service


async def test_a_plain_git_repository_is_a_source_too(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    remote, work = repository(tmp_path, DEMO)
    source = {"type": "git", "url": remote.as_uri(), "path": "web.yaml.j2", "ref": "main"}

    created = await api.post("/templates", json={"name": "web", "source": source})
    assert created.status_code == 201, created.text
    template_id = created.json()["id"]
    assert created.json()["commit_sha"] == git("rev-parse", "HEAD", cwd=work).strip()
    (work / "web.yaml.j2").write_text(DEMO + "# second\n")
    git("commit", "--quiet", "-am", "second", cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    assert (await api.post("/templates/sync")).status_code == 202

    body = await version_of(api, template_id, 2)
    assert body["content"].endswith("# second\n")
    assert body["commit_sha"] == git("rev-parse", "HEAD", cwd=work).strip()
    missing = await api.post(
        "/templates", json={"name": "x", "source": {**source, "path": "nope.j2"}}
    )
    assert missing.status_code == 422
    assert "nope.j2" in missing.json()["detail"]
