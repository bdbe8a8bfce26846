"""Webhooks, each checked against its own secret (no user logs in to send one).

GitLab's: pushes and merges sync templates; pipelines and jobs register images.

GitLab sends the secret configured on the hook in ``X-Gitlab-Token``; it is
compared in constant time with ``FABU_GITLAB_WEBHOOK_TOKEN``, and a wrong or
missing one is refused (401) before the body is read. A push to a branch, or a
merge request merged into one, publishes ``template.changed`` with the
project, branch, commit and (for a push) the files its commits touched; the
renderer reads the templates that live there again. A successful pipeline or
job registers the image its commit pushed (see ``register_from_gitlab``).
Harbor's ``PUSH_ARTIFACT`` registers the pushed image.
"""

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request

from services.api.deps import BusDep, CatalogDep, ImagesDep, RegistriesDep, SettingsDep
from services.api.hooks import check_secret, read_event
from shared.errors import FabuError, Invalid, Unavailable
from shared.messaging.messages import ImageBuilt, TemplateChanged
from shared.outside.registry import Registries
from shared.store.catalog import Catalog
from shared.store.images import Images

router = APIRouter()
NO_COMMIT = "0" * 40


def _change(event: dict[str, Any]) -> TemplateChanged | str:
    """The change a GitLab event announces, or why it is not one."""
    project = event.get("project") or {}
    where = {
        "project_id": str(project.get("id", "")),
        "project_path": str(project.get("path_with_namespace", "")),
    }
    kind = event.get("object_kind")
    if kind == "push":
        if event.get("after") == NO_COMMIT:
            return "a deleted branch"
        commits = event.get("commits") or []
        paths: list[str] | None = sorted(
            {p for c in commits for key in ("added", "modified", "removed") for p in c.get(key, [])}
        )
        # GitLab lists at most 20 commits: beyond that, read every template there.
        if int(event.get("total_commits_count") or 0) > len(commits):
            paths = None
        return TemplateChanged(
            **where,
            ref=str(event.get("ref", "")).removeprefix("refs/heads/"),
            sha=str(event.get("after", "")),
            paths=paths,
        )
    if kind == "merge_request":
        attributes = event.get("object_attributes") or {}
        if attributes.get("action") != "merge" and attributes.get("state") != "merged":
            return f"a merge request event ({attributes.get('action') or 'no action'}), not a merge"
        sha = attributes.get("merge_commit_sha") or (attributes.get("last_commit") or {}).get("id")
        return TemplateChanged(
            **where, ref=str(attributes.get("target_branch", "")), sha=str(sha or "")
        )
    return f"{kind or 'unknown'} events are not used"


@router.post("/webhooks/gitlab", status_code=202)
async def gitlab_webhook(
    request: Request,
    bus: BusDep,
    settings: SettingsDep,
    catalog: CatalogDep,
    images: ImagesDep,
    registries: RegistriesDep,
    x_gitlab_token: Annotated[str, Header()] = "",
) -> dict[str, Any]:
    check_secret(x_gitlab_token, settings.gitlab_webhook_token, "X-Gitlab-Token")
    event = await read_event(request)
    if event.get("object_kind") in ("pipeline", "build"):
        found = await register_from_gitlab(event, catalog, images, registries)
        return {"accepted": bool(found), "registered": found}
    change = _change(event)
    if isinstance(change, str):
        return {"accepted": False, "detail": f"ignored: {change}"}
    await bus.publish(bus.subjects.template_changed, change)
    return {"accepted": True, "ref": change.ref, "sha": change.sha, "paths": change.paths}


async def _services_of(catalog: Catalog, repository: str) -> list[str]:
    return [s.name for s in await catalog.services() if s.image_repository == repository]


@router.post("/webhooks/harbor", status_code=202)
async def harbor_webhook(
    request: Request,
    catalog: CatalogDep,
    images: ImagesDep,
    settings: SettingsDep,
    authorization: Annotated[str, Header()] = "",
) -> dict[str, Any]:
    """Harbor's ``PUSH_ARTIFACT`` event; ``Authorization`` must be the policy's auth header."""
    check_secret(authorization, settings.harbor_webhook_secret, "Authorization")
    event = await read_event(request)
    if event.get("type") != "PUSH_ARTIFACT":
        return {"accepted": False, "detail": f"ignored: {event.get('type')} events are not used"}
    data = event.get("event_data") or {}
    pushed = datetime.fromtimestamp(int(event.get("occur_at") or 0), UTC)
    registered = []
    for resource in data.get("resources") or []:
        url = str(resource.get("resource_url", ""))
        tag = str(resource.get("tag") or "")
        repository = url.rsplit("@", 1)[0]
        if tag and repository.endswith(f":{tag}"):
            repository = repository.removesuffix(f":{tag}")
        services = await _services_of(catalog, repository) or [""]
        try:
            built = ImageBuilt(
                service=services[0],
                repository=repository,
                tag=tag,
                digest=str(resource.get("digest", "")),
                pushed_at=pushed,
            )
        except ValueError as exc:
            raise Invalid(f"event_data.resources: {exc}") from exc
        image = await images.register(built, "harbor")
        registered.append({"repository": image.repository, "tag": tag, "digest": image.digest})
    return {"accepted": True, "registered": registered}


async def register_from_gitlab(
    event: dict[str, Any], catalog: Catalog, images: Images, registries: Registries
) -> list[dict[str, str]]:
    """A successful GitLab pipeline or job: register the image its commit pushed.

    The services built by that project (``gitlab_project``) are looked up in
    the registry under the tags CI commonly gives: the Git tag of a tag
    pipeline, the short commit sha (``$CI_COMMIT_SHORT_SHA``) and the full one.
    """
    project = event.get("project") or {}
    ids = {str(project.get("id", "")), str(project.get("path_with_namespace", ""))}
    if event.get("object_kind") == "pipeline":
        attributes = event.get("object_attributes") or {}
        sha, ref = str(attributes.get("sha", "")), str(attributes.get("ref", ""))
        is_tag, status = bool(attributes.get("tag")), attributes.get("status")
        url = str(
            attributes.get("url")
            or f"{project.get('web_url', '')}/-/pipelines/{attributes.get('id')}"
        )
        finished = attributes.get("finished_at")
    else:  # a job ("build") event
        ids.add(str(event.get("project_id", "")))
        sha, ref = str(event.get("sha", "")), str(event.get("ref", ""))
        is_tag, status = bool(event.get("tag")), event.get("build_status")
        homepage = (event.get("repository") or {}).get("homepage", "")
        url = f"{homepage}/-/pipelines/{event.get('pipeline_id')}"
        finished = event.get("build_finished_at")
    if status != "success" or not sha:
        return []
    candidates = [t for t in ([ref] if is_tag else []) + [sha[:8], sha] if t]
    pushed = _gitlab_time(finished)
    found = []
    for service in await catalog.services():
        if not service.gitlab_project or service.gitlab_project not in ids:
            continue
        for tag in candidates:
            try:
                digest = await registries.digest(service.image_repository, tag, fresh=True)
            except FabuError as exc:
                raise Unavailable(f"registry of {service.name!r}: {exc.message}") from exc
            if digest:
                built = ImageBuilt(
                    service=service.name,
                    repository=service.image_repository,
                    tag=tag,
                    digest=digest,
                    commit_sha=sha,
                    pipeline_url=url,
                    pushed_at=pushed,
                )
                await images.register(built, "gitlab")
                found.append({"service": service.name, "tag": tag, "digest": digest})
    return found


def _gitlab_time(value: object) -> datetime | None:
    """GitLab writes ``2026-05-01 12:00:00 UTC`` in hooks (and ISO 8601 elsewhere)."""
    if not value:
        return None
    text = str(value).replace(" UTC", "+00:00")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
