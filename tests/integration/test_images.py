"""Image versions: registration (API, NATS, GitLab, Harbor) and discovery in real registries."""

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import httpx
from nats.aio.client import Client as NatsClient

from devstack.registry import push_image
from devstack.system import FabuSystem
from shared.messaging.messages import ImageBuilt
from shared.messaging.subjects import Subjects
from tests.conftest import HARBOR_SECRET, AuthRegistries, unique
from tests.support import gitlab as gitlab_support
from tests.support.registries import basic_header
from tests.support.releases import prepare
from tests.support.stack import StackEnv
from tests.support.wait import eventually


async def service_in(api: httpx.AsyncClient, registry_host: str, **fields: Any) -> tuple[str, str]:
    name = unique("img")
    repository = f"{registry_host}/apps/{name}"
    created = await api.post(
        "/services", json={"name": name, "image_repository": repository, "team": "t", **fields}
    )
    assert created.status_code == 201, created.text
    return name, repository


async def registered_by(api: httpx.AsyncClient, repository: str, tag: str) -> list[str]:
    """Who the audit log says registered the tag (each registration, newest first)."""
    target = f"image/{repository}:{tag}"
    items = (await api.get("/audit", params={"target": target})).json()["items"]
    assert all(e["action"] == "image.register" for e in items)
    return [e["actor"] for e in items]


def digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


async def test_more_than_a_hundred_tags_across_pages_newest_registered_first(
    api: httpx.AsyncClient, stack_env: StackEnv
) -> None:
    host = stack_env.registry_url.removeprefix("http://")
    name, repository = await service_in(api, host)
    tags = [f"1.0.{i}" for i in range(130)]
    digests = {tag: await push_image(stack_env.registry_url, f"apps/{name}", tag) for tag in tags}
    for tag, pushed in (("1.0.5", "2026-05-01T10:00:00Z"), ("1.0.7", "2026-05-02T10:00:00Z")):
        registered = await api.post(
            "/images",
            json={
                "service": name,
                "repository": repository,
                "tag": tag,
                "digest": digests[tag],
                "commit_sha": "a" * 40,
                "pipeline_url": "https://gitlab.example.com/p/-/pipelines/1",
                "pushed_at": pushed,
            },
        )
        assert registered.status_code == 200, registered.text

    listed = (await api.get(f"/services/{name}/images")).json()

    assert listed["repository"] == repository
    versions = listed["versions"]
    assert sorted(v["tag"] for v in versions) == sorted(tags)
    assert [v["tag"] for v in versions[:2]] == ["1.0.7", "1.0.5"]
    assert versions[0]["registered"] is True
    assert versions[0]["digest"] == digests["1.0.7"]
    assert versions[0]["commit_sha"] == "a" * 40
    assert not any(v["registered"] for v in versions[2:])


async def test_registries_behind_basic_auth_and_a_bearer_token(
    api: httpx.AsyncClient, auth_registries: AuthRegistries
) -> None:
    basic = auth_registries.basic
    name, _ = await service_in(api, basic.host)
    await push_image(basic.url, f"apps/{name}", "2.0.0", headers=basic_header())
    async with httpx.AsyncClient() as raw:
        anonymous = await raw.get(f"{basic.url}/v2/apps/{name}/tags/list")
    assert anonymous.status_code == 401
    listed = (await api.get(f"/services/{name}/images")).json()
    assert [v["tag"] for v in listed["versions"]] == ["2.0.0"]

    token = auth_registries.token
    name, _ = await service_in(api, token.host)
    push_token = auth_registries.tokens.token(f"repository:apps/{name}:pull,push")
    await push_image(token.url, f"apps/{name}", "3.0.0", {"Authorization": f"Bearer {push_token}"})
    async with httpx.AsyncClient() as raw:
        challenge = await raw.get(f"{token.url}/v2/apps/{name}/tags/list")
    assert challenge.status_code == 401
    assert challenge.headers["WWW-Authenticate"].startswith("Bearer realm=")
    issued = auth_registries.tokens.issued
    listed = (await api.get(f"/services/{name}/images")).json()
    assert [v["tag"] for v in listed["versions"]] == ["3.0.0"]
    assert auth_registries.tokens.issued > issued


async def test_a_release_of_a_tag_the_registry_lacks_is_refused(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    repository = (await api.get(f"/services/{service}")).json()["image_repository"]

    answer = await api.post(
        "/releases", json={"service": service, "environment": environment, "version": "9.9.9"}
    )

    assert answer.status_code == 422
    assert answer.json()["detail"] == f"version: the registry has no tag '9.9.9' in {repository}"
    page = (await api.get("/releases", params={"service": service})).json()
    assert page["items"] == []


async def test_the_same_image_registered_twice_is_one_record(
    api: httpx.AsyncClient, stack_env: StackEnv, fabu: FabuSystem, nats_client: NatsClient
) -> None:
    host = stack_env.registry_url.removeprefix("http://")
    name, repository = await service_in(api, host)
    digest = await push_image(stack_env.registry_url, f"apps/{name}", "4.0.0")
    await push_image(stack_env.registry_url, f"apps/{name}", "latest")
    built = ImageBuilt(
        service=name,
        repository=repository,
        tag="4.0.0",
        digest=digest,
        commit_sha="b" * 40,
        pushed_at=datetime(2026, 5, 3, tzinfo=UTC),
    )
    subjects = Subjects(fabu.env["FABU_NATS_PREFIX"])
    js = nats_client.jetstream()
    for event in (built, built, built.model_copy(update={"tag": "latest"})):
        await js.publish(subjects.image_built, event.model_dump_json().encode())
    again = await api.post("/images", json=json.loads(built.model_dump_json()))
    assert again.status_code == 200

    async def registered() -> dict[str, Any] | None:
        versions = (await api.get(f"/services/{name}/images")).json()["versions"]
        known = {v["tag"]: v for v in versions if v["registered"]}
        return known if set(known) == {"4.0.0", "latest"} else None

    known = await eventually(registered, "both tags registered")
    assert known["4.0.0"]["digest"] == known["latest"]["digest"] == digest
    # The message and the API call went through one door: each audited, under who sent it.

    async def audited() -> dict[str, set[str]] | None:
        actors = {tag: set(await registered_by(api, repository, tag)) for tag in known}
        return actors if actors == {"4.0.0": {"admin", "nats"}, "latest": {"nats"}} else None

    await eventually(audited, "the NATS and API registrations audited")
    assert known["4.0.0"]["commit_sha"] == "b" * 40
    mismatch = await api.post(
        "/images", json={**json.loads(built.model_dump_json()), "repository": "elsewhere/x"}
    )
    assert mismatch.status_code == 422
    assert mismatch.json()["detail"].startswith("repository:")
    bad = await api.post("/images", json={"repository": repository, "tag": "1", "digest": "md5:x"})
    assert bad.status_code == 422


async def test_harbor_push_artifact_payload_registers_the_image(
    api: httpx.AsyncClient, stack_env: StackEnv
) -> None:
    host = stack_env.registry_url.removeprefix("http://")
    name, repository = await service_in(api, host)
    digest = await push_image(stack_env.registry_url, f"apps/{name}", "5.1.0")
    # The shape Harbor documents for its PUSH_ARTIFACT webhook.
    payload = {
        "type": "PUSH_ARTIFACT",
        "occur_at": 1777777777,
        "operator": "robot$ci",
        "event_data": {
            "resources": [
                {"digest": digest, "tag": "5.1.0", "resource_url": f"{repository}:5.1.0"}
            ],
            "repository": {
                "date_created": 1777777000,
                "name": name,
                "namespace": "apps",
                "repo_full_name": f"apps/{name}",
                "repo_type": "private",
            },
        },
    }
    refused = await api.post("/webhooks/harbor", json=payload, headers={"Authorization": "nope"})
    assert refused.status_code == 401

    answer = await api.post(
        "/webhooks/harbor", json=payload, headers={"Authorization": HARBOR_SECRET}
    )

    assert answer.status_code == 202, answer.text
    assert answer.json()["registered"] == [
        {"repository": repository, "tag": "5.1.0", "digest": digest}
    ]
    [version] = (await api.get(f"/services/{name}/images")).json()["versions"]
    assert version["registered"] is True
    assert version["pushed_at"] == "2026-05-03T03:09:37Z"
    assert await registered_by(api, repository, "5.1.0") == ["webhook:harbor"]


async def test_a_successful_gitlab_pipeline_registers_the_image_of_its_commit(
    api: httpx.AsyncClient, stack_env: StackEnv
) -> None:
    host = stack_env.registry_url.removeprefix("http://")
    project = f"apps/{unique('proj')}"
    name, _ = await service_in(api, host, gitlab_project=project)
    sha = hashlib.sha1(name.encode()).hexdigest()
    digest = await push_image(stack_env.registry_url, f"apps/{name}", sha[:8])
    pipeline: dict[str, Any] = {
        "object_kind": "pipeline",
        "object_attributes": {
            "id": 31,
            "ref": "main",
            "tag": False,
            "sha": sha,
            "status": "success",
            "finished_at": "2026-05-04 08:00:00 UTC",
            "url": f"https://gitlab.example.com/{project}/-/pipelines/31",
        },
        "project": {
            "id": 77,
            "path_with_namespace": project,
            "web_url": f"https://gitlab.example.com/{project}",
        },
    }
    headers = {"X-Gitlab-Token": gitlab_support.WEBHOOK_SECRET}

    answer = await api.post("/webhooks/gitlab", json=pipeline, headers=headers)

    assert answer.status_code == 202, answer.text
    assert answer.json()["registered"] == [{"service": name, "tag": sha[:8], "digest": digest}]
    [version] = (await api.get(f"/services/{name}/images")).json()["versions"]
    assert (version["commit_sha"], version["pipeline_url"]) == (
        sha,
        pipeline["object_attributes"]["url"],
    )
    assert await registered_by(api, f"{host}/apps/{name}", sha[:8]) == ["webhook:gitlab"]
    running = {
        **pipeline,
        "object_attributes": {**pipeline["object_attributes"], "status": "running"},
    }
    assert (await api.post("/webhooks/gitlab", json=running, headers=headers)).json()[
        "accepted"
    ] is False
