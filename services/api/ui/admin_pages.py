"""Users, environments and the audit log."""

import asyncio
from typing import get_args

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from services.api import (
    catalog_service,
    notification_service,
    release_service,
    template_service,
    user_service,
)
from services.api.access import Admin, Principal, Viewer
from services.api.context import Api
from services.api.deps import api_of
from services.api.schemas import UserIn
from services.api.ui.channels import change_channels
from services.api.ui.pages import back, form, form_error, form_errors, next_page, problem, render
from shared.errors import FabuError, NotFound
from shared.models.base import now
from shared.models.catalog import Environment, FreezeWindow
from shared.models.notifications import ChannelType, NotifyEvent
from shared.models.users import Grant, Role, User

router = APIRouter(include_in_schema=False)

# Users, environments, audit (admins)


@router.get("/users")
async def users_page(request: Request, principal: Admin) -> Response:
    return await _users_page(request, principal)


async def _users_page(
    request: Request, principal: Principal, error: str = "", failed: str = ""
) -> Response:
    """The users; a refused form's reason above them and at that form (``failed``: the
    user whose grants it changed, "+new" for the new user's)."""
    found = await user_service.users(api_of(request), principal)
    return render(
        request,
        principal,
        "users.html",
        status_code=422 if error else 200,
        users=found,
        roles=list(Role),
        error=error,
        failed=failed,
    )


@router.post("/users")
async def create_user(request: Request, principal: Admin) -> Response:
    values = await form(request)
    try:
        body = UserIn(
            name=values.get("name", ""),
            password=values.get("password") or None,
            display_name=values.get("display_name", ""),
            grants=[Grant(role=Role(values.get("role", "viewer")))],
        )
        user = User(name=body.name, display_name=body.display_name, grants=body.grants)
        await user_service.create_user(api_of(request), principal, user, body.password)
    except ValidationError as exc:
        return await _users_page(request, principal, form_error(exc), "+new")
    except ValueError:
        return await _users_page(request, principal, f"role: not one of {', '.join(Role)}", "+new")
    except FabuError as exc:
        return await _users_page(request, principal, exc.message, "+new")
    return back("/users")


@router.post("/users/{name}/grants")
async def change_grants(request: Request, name: str, principal: Admin) -> Response:
    values = await form(request)
    api = api_of(request)
    try:
        user = await user_service.account(api, principal, name)
    except FabuError as exc:
        return problem(request, principal, exc)
    grants = list(user.grants)
    try:
        if "remove" in values:
            grants.pop(int(values["remove"]))
        else:
            grants.append(
                Grant(
                    role=Role(values.get("role", "viewer")),
                    environment=values.get("environment") or "*",
                    service=values.get("service") or "*",
                    team=values.get("team") or "*",
                )
            )
        await user_service.set_grants(api, principal, name, grants)
    except ValidationError as exc:
        return await _users_page(request, principal, form_error(exc), name)
    except (ValueError, IndexError) as exc:
        return await _users_page(request, principal, str(exc).splitlines()[-1], name)
    except FabuError as exc:
        return await _users_page(request, principal, exc.message, name)
    return back("/users")


@router.get("/environments")
async def environments_page(request: Request, principal: Viewer) -> Response:
    return await _environments_page(request, principal)


async def _environments_page(
    request: Request,
    principal: Principal,
    error: str = "",
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    failed: str = "",
) -> Response:
    """The environments; a refused form's reason shown at that form (``failed``: the
    environment whose form it was, else the new environment's)."""
    api = api_of(request)
    every = await catalog_service.environments(api, principal, archived=True)
    defaults = await asyncio.gather(
        *(notification_service.get(api, principal, None, e.name) for e in every)
    )
    channels = dict(zip((e.name for e in every), defaults, strict=True))
    return render(
        request,
        principal,
        "environments.html",
        status_code=422 if error or errors else 200,
        environments=[e for e in every if e.archived_at is None],
        archived=[e for e in every if e.archived_at is not None],
        channels=channels,
        channel_types=list(get_args(ChannelType)),
        events=list(get_args(NotifyEvent)),
        error=error,
        values=values or {},
        errors=errors or {},
        failed=failed,
        now=now(),
    )


def _create_namespace(values: dict[str, str]) -> bool:
    """Whether the form's admin ticked "create it" for a namespace the cluster lacks."""
    return values.get("create_namespace") == "on"


def _environment_of(values: dict[str, str], current: Environment | None = None) -> Environment:
    """An environment from the form (its name and freeze windows: the current one's)."""
    kubeconfig = values.get("kubeconfig", "").strip()
    base = current.model_dump() if current else {"name": values.get("name", "").strip()}
    return Environment.model_validate(
        {
            **base,
            "namespace": values.get("namespace", "").strip(),
            "kubeconfig": kubeconfig or None,
            "in_cluster": values.get("in_cluster") == "on",
            "rollout_timeout_s": values.get("rollout_timeout_s", "").strip() or 300,
            "approval_required": values.get("approval_required") == "on",
            "auto_rollback": values.get("auto_rollback") == "on",
            "pod_security": values.get("pod_security", "baseline"),
            "allow_rbac": values.get("allow_rbac") == "on",
            "requires_success_in": values.get("requires_success_in", "").strip() or None,
        }
    )


@router.post("/environments")
async def create_environment(request: Request, principal: Admin) -> Response:
    values = await form(request)
    try:
        await catalog_service.create_environment(
            api_of(request), principal, _environment_of(values), _create_namespace(values)
        )
    except (ValidationError, FabuError) as exc:
        return await _environments_page(request, principal, values=values, errors=form_errors(exc))
    return back("/environments")


@router.post("/environments/{name}")
async def change_environment(request: Request, name: str, principal: Admin) -> Response:
    values = await form(request)
    api = api_of(request)
    try:
        env = await catalog_service.environment(api, principal, name)
    except FabuError as exc:
        return problem(request, principal, exc)
    windows = list(env.freeze_windows)
    try:
        if "archive" in values or "restore" in values:
            await catalog_service.archive_environment(api, principal, name, "archive" in values)
            return back("/environments")
        if "channel_add" in values or "channel_remove" in values:
            await change_channels(api, principal, None, name, values)
            return back(f"/environments#env-{name}")
        if "remove" in values:
            windows.pop(int(values["remove"]))
            updated = env.model_copy(update={"freeze_windows": windows})
        elif values.get("window_name"):
            windows.append(
                FreezeWindow(
                    name=values["window_name"],
                    start=values.get("start", ""),
                    end=values.get("end", ""),
                    reason=values.get("reason", ""),
                )
            )
            updated = Environment.model_validate(
                {**env.model_dump(), "freeze_windows": [w.model_dump() for w in windows]}
            )
        else:
            updated = _environment_of(values, env)
        await catalog_service.update_environment(
            api, principal, name, updated, _create_namespace(values)
        )
    except (ValidationError, FabuError) as exc:
        return await _environments_page(request, principal, form_error(exc), values, failed=name)
    except (ValueError, IndexError) as exc:
        return await _environments_page(request, principal, str(exc).splitlines()[-1], failed=name)
    return back(f"/environments#env-{name}")


@router.get("/audit")
async def audit_page(request: Request, principal: Admin) -> Response:
    q = request.query_params
    filters = {k: q.get(k) or None for k in ("actor", "action", "target")}
    found = await user_service.audit_log(
        api_of(request),
        principal,
        actor=filters["actor"],
        action=filters["action"],
        target=filters["target"],
        cursor=q.get("cursor") or None,
        limit=50,
    )
    next_url = next_page("/audit", {k: v for k, v in filters.items() if v}, found.next_cursor)
    targets = await _targets(api_of(request), principal, {e.target for e in found.items})
    return render(
        request,
        principal,
        "audit.html",
        page=found,
        filters=filters,
        next_url=next_url,
        targets=targets,
    )


async def _targets(api: Api, principal: Principal, targets: set[str]) -> dict[str, tuple[str, str]]:
    """What each audited target is, in words, with its page: a release by its service,
    version and environment, a template by its name (others are words already)."""
    kinds = {t: t.partition("/")[::2] for t in targets}
    releases = await release_service.summaries(
        api, principal, [key for kind, key in kinds.values() if kind == "release"]
    )

    async def named(target: str) -> tuple[str, tuple[str, str] | None]:
        kind, key = kinds[target]
        if kind == "release" and key in releases:
            found = releases[key]
            words = f"{found.service} {found.version} → {found.environment}"
            return target, (words, f"/releases/{key}")
        if kind == "template":
            try:
                template = await template_service.template(api, principal, key)
            except NotFound:
                return target, None
            return target, (f"template {template.name}", f"/templates/{key}")
        if kind == "service" and key:
            return target, (target, f"/services/{key}")
        if kind == "config" and key.count("/") == 1:
            return target, (target, f"/services/{key.replace('/', '/config/', 1)}")
        return target, None

    answers = await asyncio.gather(*(named(t) for t in targets))
    return {target: shown for target, shown in answers if shown is not None}
