"""Webhooks, each checked against its own secret (no user logs in to send one).

GitLab's: pushes and merges sync templates; pipelines and jobs register images.

GitLab sends the secret configured on the hook in ``X-Gitlab-Token``; it is
compared in constant time with ``FABU_GITLAB_WEBHOOK_TOKEN``, and a wrong or
missing one is refused (401) before the body is read. A push to a branch, or a
merge request merged into one, publishes ``template.changed`` with the
project, branch, commit and (for a push) the files its commits touched; the
renderer reads the templates that live there again. A successful pipeline or
job registers the image its commit pushed (see ``_built_commit``). Harbor's
``PUSH_ARTIFACT`` registers the pushed image. Images are registered through
``image_service``, as the API's own registrations are: audited, the webhook as actor.
"""

import hmac
import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request

from services.api import image_service
from services.api.deps import ApiDep
from services.api.image_service import BuiltCommit
from shared.errors import Invalid, Unauthorized
from shared.messaging.messages import TemplateChanged

router = APIRouter()
NO_COMMIT = "0" * 40


def check_secret(given: str, expected: str, header: str) -> None:
    """401 unless ``given`` equals the configured secret (none configured: always 401)."""
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized(f"{header} is missing or wrong")


async def read_event(request: Request) -> dict[str, Any]:
    try:
        event = json.loads(await request.body())
    except RecursionError as exc:
        raise Invalid("the body is nested too deeply") from exc
    except ValueError as exc:
        raise Invalid(f"the body is not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise Invalid("the body is not an event object")
    return event


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
    request: Request, api: ApiDep, x_gitlab_token: Annotated[str, Header()] = ""
) -> dict[str, Any]:
    check_secret(x_gitlab_token, api.settings.gitlab_webhook_token, "X-Gitlab-Token")
    event = await read_event(request)
    if event.get("object_kind") in ("pipeline", "build"):
        commit = _built_commit(event)
        made = await image_service.register_commit(api, "gitlab", commit) if commit else []
        found = [{"service": b.service, "tag": b.tag, "digest": b.digest} for b in made]
        return {"accepted": bool(found), "registered": found}
    change = _change(event)
    if isinstance(change, str):
        return {"accepted": False, "detail": f"ignored: {change}"}
    await api.bus.publish(api.bus.subjects.template_changed, change)
    return {"accepted": True, "ref": change.ref, "sha": change.sha, "paths": change.paths}


@router.post("/webhooks/harbor", status_code=202)
async def harbor_webhook(
    request: Request, api: ApiDep, authorization: Annotated[str, Header()] = ""
) -> dict[str, Any]:
    """Harbor's ``PUSH_ARTIFACT`` event; ``Authorization`` must be the policy's auth header."""
    check_secret(authorization, api.settings.harbor_webhook_secret, "Authorization")
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
        digest = str(resource.get("digest", ""))
        try:
            image = await image_service.register_pushed(
                api, "harbor", repository, tag, digest, pushed
            )
        except ValueError as exc:
            raise Invalid(f"event_data.resources: {exc}") from exc
        registered.append({"repository": image.repository, "tag": tag, "digest": image.digest})
    return {"accepted": True, "registered": registered}


def _built_commit(event: dict[str, Any]) -> BuiltCommit | None:
    """The commit a successful GitLab pipeline or job built (None: not a success).

    Its image is looked for under the tags CI commonly gives: the Git tag of a tag
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
        return None
    return BuiltCommit(
        projects=ids,
        sha=sha,
        tags=[t for t in ([ref] if is_tag else []) + [sha[:8], sha] if t],
        pipeline_url=url,
        pushed_at=_gitlab_time(finished),
    )


def _gitlab_time(value: object) -> datetime | None:
    """GitLab writes ``2026-05-01 12:00:00 UTC`` in hooks (and ISO 8601 elsewhere)."""
    if not value:
        return None
    text = str(value).replace(" UTC", "+00:00")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
