"""GitLab's webhook: pushes and merges sync templates; pipelines and jobs register images.

GitLab sends the secret configured on the hook in ``X-Gitlab-Token``; it is
compared in constant time with ``FABU_GITLAB_WEBHOOK_TOKEN``, and a wrong or
missing one is refused (401) before the body is read. A push to a branch, or a
merge request merged into one, publishes ``template.changed`` with the
project, branch, commit and (for a push) the files its commits touched; the
renderer reads the templates that live there again. A successful pipeline or
job registers the image its commit pushed (see ``register_from_gitlab``).
"""

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request

from services.api.deps import BusDep, CatalogDep, ImagesDep, RegistriesDep, SettingsDep
from services.api.hooks import check_secret, read_event
from services.api.image_routes import register_from_gitlab
from shared.messages import TemplateChanged

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
