"""The web UI's pages and forms.

Every page reads through the stores, and every form calls the JSON API's own
route function, so the UI and the API cannot disagree about what is allowed
or what a change does. Pages need a browser session (else they send the
browser to /login); forms carry the session's CSRF token as ``csrf_token``.
"""

import difflib
import json
import secrets
import urllib.parse
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from services.api import (
    auth_routes,
    catalog_routes,
    image_routes,
    release_routes,
    template_routes,
    user_routes,
)
from services.api.access import Permission, Principal, authenticate
from services.api.releasing import Starter
from services.api.schemas import ActionIn, ConfigIn, DecisionIn, ReleaseIn, TemplateContentIn
from services.api.ui.charts import charts
from services.api.ui.i18n import LANGUAGES, pick, translator
from shared.errors import FabuError, Forbidden, Invalid, NotFound, Unauthorized
from shared.ids import TemplateId
from shared.models import (
    BaseParams,
    CanaryStep,
    Environment,
    FreezeWindow,
    Grant,
    Release,
    ReleaseState,
    Role,
)

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
STATIC = Path(__file__).parent / "static"
LOGIN_CSRF_COOKIE = "fabu_login"
UNDER_WAY = [
    ReleaseState.REQUESTED,
    ReleaseState.RENDERED,
    ReleaseState.APPLIED,
    ReleaseState.PAUSED,
]


class LoginNeeded(Exception):
    def __init__(self, then: str) -> None:
        super().__init__(then)
        self.then = then


async def signed_in(request: Request) -> Principal:
    """The page's user, or off to the login page."""
    try:
        return await authenticate(request)
    except Unauthorized as exc:
        then = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginNeeded(then) from exc


def _state(request: Request) -> Any:
    return request.app.state


def _starter(request: Request, principal: Principal) -> Starter:
    state = _state(request)
    return Starter(state.releases, state.bus, state.audit, principal)


def render(
    request: Request,
    principal: Principal | None,
    name: str,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    preference = principal.user.language if principal else ""
    language = pick(preference, request.headers.get("accept-language", ""))
    return templates.TemplateResponse(
        request,
        name,
        {
            "me": principal,
            "t": translator(language),
            "language": language,
            "languages": LANGUAGES,
            "csrf": getattr(request.state, "csrf", ""),
            "can": (lambda p: principal is not None and principal.holds(p)),
            "Permission": Permission,
            **context,
        },
        status_code=status_code,
    )


def problem(request: Request, principal: Principal | None, exc: FabuError) -> HTMLResponse:
    """A page for a refusal or an error the page itself cannot show."""
    return render(request, principal, "error.html", status_code=exc.status, error=exc.message)


def field_errors(message: str, fields: list[str]) -> dict[str, str]:
    """``{field: message}`` when the message names one of the form's fields, else ``{"": …}``."""
    head = message.split(":", 1)[0].strip()
    return {head if head in fields else "": message}


def validation_errors(exc: ValidationError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"] if p != "params") or ""
        errors.setdefault(field.split(".")[0], error["msg"])
    return errors


async def form(request: Request) -> dict[str, str]:
    data = await request.form()
    return {k: v for k, v in data.items() if isinstance(v, str)}


def _next_page(path: str, filters: dict[str, str], cursor: str | None) -> str:
    """The link to the page after this one, with the same filters ("" on the last)."""
    return f"{path}?{urllib.parse.urlencode({**filters, 'cursor': cursor})}" if cursor else ""


def back(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# Logging in and out, and the language


@router.get("/login")
async def login_page(request: Request, then: str = "/", error: str = "") -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        None,
        "login.html",
        then=then,
        login_csrf=token,
        error=error,
        oidc=_state(request).oauth is not None,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, max_age=600, httponly=True, secure=True, samesite="strict"
    )
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    data = await form(request)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    then = data.get("then", "/")
    if not then.startswith("/") or then.startswith("//"):
        then = "/"
    if not cookie or not secrets.compare_digest(cookie, data.get("login_csrf", "")):
        return await login_page(request, then, "the login form expired; try again")
    state = _state(request)
    response = back(then)
    try:
        body = auth_routes.LoginIn(
            username=data.get("username", ""), password=data.get("password", "")
        )
        await auth_routes.login(body, response, state.users, state.settings, state.audit)
    except (Unauthorized, ValidationError):
        page = await login_page(request, then, "Wrong user name or password")
        page.status_code = 401
        return page
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    await signed_in(request)
    response = back("/login")
    await auth_routes.logout(request, response, _state(request).users)
    return response


@router.post("/language")
async def language(request: Request) -> Response:
    principal = await signed_in(request)
    chosen = (await form(request)).get("language", "")
    if chosen in ("", *LANGUAGES):
        await _state(request).users.update(principal.name, language=chosen)
    referer = request.headers.get("referer", "/")
    return back(urllib.parse.urlsplit(referer).path or "/")


# The dashboard


async def _dashboard(request: Request) -> dict[str, Any]:
    releases = _state(request).releases
    running: list[Release] = []
    for state in UNDER_WAY:
        running += await releases.page(state=state, limit=50)
    running.sort(key=lambda r: r.id, reverse=True)
    awaiting = await releases.page(state=ReleaseState.AWAITING_APPROVAL, limit=50)
    recent = [r for r in await releases.page(limit=30) if r.state.final][:15]
    return {"running": running, "awaiting": awaiting, "recent": recent}


@router.get("/")
async def dashboard(request: Request) -> Response:
    principal = await signed_in(request)
    return render(request, principal, "dashboard.html", **await _dashboard(request))


@router.get("/fragments/dashboard")
async def dashboard_lists(request: Request) -> Response:
    principal = await signed_in(request)
    return render(request, principal, "_dashboard_lists.html", **await _dashboard(request))


# Services


async def _current(request: Request, service: str) -> dict[str, Release | None]:
    """The latest succeeded release of ``service`` in each environment."""
    state = _state(request)
    current: dict[str, Release | None] = {}
    for env in await state.catalog.environments():
        page = await state.releases.page(
            service=service, environment=env.name, state=ReleaseState.SUCCEEDED, limit=1
        )
        current[env.name] = page[0] if page else None
    return current


@router.get("/services")
async def services(request: Request) -> Response:
    principal = await signed_in(request)
    state = _state(request)
    rows = [(s, await _current(request, s.name)) for s in await state.catalog.services()]
    environments = [e.name for e in await state.catalog.environments()]
    return render(request, principal, "services.html", rows=rows, environments=environments)


@router.get("/services/{name}")
async def service(request: Request, name: str) -> Response:
    principal = await signed_in(request)
    state = _state(request)
    found = await state.catalog.service(name)
    if found is None:
        return problem(request, principal, NotFound(f"service {name!r} not found"))
    history = await state.releases.page(service=name, limit=200)
    t = translator(pick(principal.user.language, request.headers.get("accept-language", "")))
    return render(
        request,
        principal,
        "service.html",
        service=found,
        current=await _current(request, name),
        history=history[:30],
        charts=charts(history, t),
    )


# Release records


@router.get("/releases")
async def releases(request: Request) -> Response:
    principal = await signed_in(request)
    q = request.query_params
    filters = {k: q.get(k) or None for k in ("service", "environment", "state", "operator")}
    try:
        page = await release_routes.list_releases(
            _state(request).releases,
            service=filters["service"],
            environment=filters["environment"],
            state=ReleaseState(filters["state"]) if filters["state"] else None,
            operator=filters["operator"],
            cursor=q.get("cursor") or None,
            limit=25,
        )
    except (FabuError, ValueError) as exc:
        return problem(request, principal, Invalid(str(exc)))
    more = {k: v for k, v in filters.items() if v}
    next_url = _next_page("/releases", more, page.next_cursor)
    return render(
        request,
        principal,
        "releases.html",
        page=page,
        filters=filters,
        states=list(ReleaseState),
        next_url=next_url,
        first_url="/releases?" + urllib.parse.urlencode(more) if q.get("cursor") else "",
    )


@router.get("/releases/new")
async def new_release(request: Request) -> Response:
    principal = await signed_in(request)
    return await _new_release_page(request, principal, dict(request.query_params), {})


async def _new_release_page(
    request: Request, principal: Principal, values: dict[str, str], errors: dict[str, str]
) -> Response:
    state = _state(request)
    services = await state.catalog.services()
    environments = await state.catalog.environments()
    chosen = next((s for s in services if s.name == values.get("service")), None)
    versions, config, preview = None, None, None
    if chosen is not None:
        try:
            versions = await image_routes.list_images(
                chosen.name, state.catalog, state.images, state.registries
            )
        except FabuError as exc:
            errors.setdefault("version", exc.message)
        if values.get("environment"):
            config = await state.catalog.config(chosen.name, values["environment"])
        if values.get("preview") and values.get("environment") and values.get("version"):
            try:
                preview = await catalog_routes.preview(
                    chosen.name,
                    values["environment"],
                    values["version"],
                    state.catalog,
                    state.clusters,
                )
            except FabuError as exc:
                errors.setdefault("", exc.message)
    return render(
        request,
        principal,
        "release_new.html",
        status_code=422 if errors else 200,
        services=services,
        environments=environments,
        values=values,
        versions=versions,
        config=config,
        preview=preview,
        errors=errors,
    )


@router.post("/releases/new")
async def create_release(request: Request) -> Response:
    principal = await signed_in(request)
    values = await form(request)
    state = _state(request)
    try:
        body = ReleaseIn(
            service=values.get("service", ""),
            environment=values.get("environment", ""),
            version=values.get("version", ""),
            description=values.get("description", ""),
            override_reason=values.get("override_reason", ""),
        )
    except ValidationError as exc:
        return await _new_release_page(request, principal, values, validation_errors(exc))
    try:
        accepted = await release_routes.create_release(
            body, state.catalog, state.registries, _starter(request, principal)
        )
    except FabuError as exc:
        fields = ["service", "environment", "version", "description", "override_reason"]
        return await _new_release_page(
            request, principal, values, field_errors(exc.message, fields)
        )
    return back(f"/releases/{accepted.id}")


@router.get("/releases/{release_id}")
async def release(request: Request, release_id: str) -> Response:
    principal = await signed_in(request)
    state = _state(request)
    found = await state.releases.detail(release_id)
    if found is None:
        return problem(request, principal, NotFound(f"release {release_id!r} not found"))
    service = await state.catalog.service(found.service)
    may = service is not None and principal.can_release(found.environment, service)
    latest = await state.releases.latest(found.service, found.environment)
    actions = []
    if may:
        if found.manifest:
            actions.append("rollback")
        if latest is not None and latest.id == found.id and found.state.final:
            actions.append("redeploy")
        if found.state is ReleaseState.PAUSED:
            actions.append("promote")
        if found.in_canary and not found.state.final and found.manifest:
            actions.append("abort")
        elif not found.state.final:
            actions.append("cancel")
        if found.state is ReleaseState.AWAITING_APPROVAL and found.operator != principal.name:
            actions += ["approve", "reject"]
    return render(request, principal, "release.html", release=found, actions=actions)


@router.get("/releases/{release_id}/rollback")
async def rollback_page(request: Request, release_id: str) -> Response:
    principal = await signed_in(request)
    state = _state(request)
    try:
        diff = await release_routes.rollback_preview(
            release_id, state.catalog, state.releases, state.clusters
        )
    except FabuError as exc:
        return problem(request, principal, exc)
    found = await state.releases.get(release_id)
    return render(request, principal, "rollback.html", release=found, diff=diff)


@router.post("/releases/{release_id}/{action}")
async def release_action(request: Request, release_id: str, action: str) -> Response:
    principal = await signed_in(request)
    values = await form(request)
    state = _state(request)
    starter = _starter(request, principal)
    if not principal.holds(Permission.RELEASE):
        return problem(request, principal, Forbidden(f"{principal.name} may not {action}"))
    act = ActionIn(
        description=values.get("description", ""),
        override_reason=values.get("override_reason", ""),
    )
    decided = DecisionIn(
        comment=values.get("comment", ""), override_reason=values.get("override_reason", "")
    )
    try:
        match action:
            case "rollback":
                done: Any = await release_routes.rollback(
                    release_id, state.catalog, state.releases, starter, act
                )
            case "redeploy":
                done = await release_routes.redeploy(
                    release_id, state.catalog, state.releases, starter, act
                )
            case "cancel":
                done = await release_routes.cancel(
                    release_id, state.catalog, state.releases, state.clusters, starter
                )
            case "abort":
                done = await release_routes.abort(
                    release_id, state.catalog, state.releases, state.clusters, starter
                )
            case "promote":
                done = await release_routes.promote_release(
                    release_id, state.catalog, state.releases, starter
                )
            case "approve":
                done = await release_routes.approve(
                    release_id, state.catalog, state.releases, starter, decided
                )
            case "reject":
                done = await release_routes.reject(
                    release_id, state.catalog, state.releases, starter, decided
                )
            case _:
                return problem(request, principal, NotFound(f"no action {action!r}"))
    except FabuError as exc:
        return problem(request, principal, exc)
    return back(f"/releases/{done.id}")


# Templates


@router.get("/templates")
async def templates_page(request: Request) -> Response:
    principal = await signed_in(request)
    found = await _state(request).catalog.templates()
    return render(request, principal, "templates.html", templates=found)


@router.get("/templates/{template_id}")
async def template_page(request: Request, template_id: str, error: str = "") -> Response:
    principal = await signed_in(request)
    state = _state(request)
    q = request.query_params
    try:
        current = await template_routes._found(state.catalog, template_id)
        versions = await state.catalog.template_versions(TemplateId(template_id))
        to_version = int(q.get("to") or current.version)
        from_version = int(q.get("from") or max(to_version - 1, 1))
        impact = await template_routes.impact(
            template_id, state.catalog, state.releases, from_version, to_version
        )
        old = await template_routes._found(state.catalog, template_id, from_version)
        new = await template_routes._found(state.catalog, template_id, to_version)
    except (FabuError, ValueError) as exc:
        return problem(request, principal, Invalid(str(exc)))
    diff = "".join(
        difflib.unified_diff(
            old.content.splitlines(keepends=True),
            new.content.splitlines(keepends=True),
            f"version {old.version}",
            f"version {new.version}",
        )
    )
    return render(
        request,
        principal,
        "template.html",
        status_code=422 if error else 200,
        template=current,
        versions=versions,
        impact=impact,
        diff=diff,
        error=error,
    )


@router.post("/templates/{template_id}")
async def change_template(request: Request, template_id: str) -> Response:
    principal = await signed_in(request)
    if not principal.holds(Permission.EDIT_CONFIG):
        return problem(request, principal, Forbidden("only a config-admin can change templates"))
    state = _state(request)
    try:
        body = TemplateContentIn(content=(await form(request)).get("content", ""))
        await template_routes.change_template(
            template_id, body, state.catalog, state.audit, principal
        )
    except ValidationError as exc:
        return await template_page(request, template_id, str(exc.errors()[0]["msg"]))
    except FabuError as exc:
        return await template_page(request, template_id, exc.message)
    return back(f"/templates/{template_id}")


# Release configs


def _lines(mapping: dict[str, str]) -> str:
    return "\n".join(f"{k}={v}" for k, v in mapping.items())


def _mapping(text: str, field: str) -> dict[str, str]:
    pairs = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise Invalid(f"{field}: line {number} is not key=value")
        pairs[key.strip()] = value.strip()
    return pairs


def _params(values: dict[str, str], base: BaseParams) -> BaseParams:
    """Base parameters from the config form (what it does not show is kept)."""
    canary = [
        CanaryStep(weight=int(w)) for w in values.get("canary", "").replace(" ", "").split(",") if w
    ]
    timeout = values.get("rollout_timeout_s", "").strip()
    return BaseParams.model_validate(
        {
            **base.model_dump(),
            "replicas": values.get("replicas", ""),
            "container_port": values.get("container_port", ""),
            "health_path": values.get("health_path", ""),
            "labels": _mapping(values.get("labels", ""), "labels"),
            "env": _mapping(values.get("env", ""), "env"),
            "rollout_timeout_s": int(timeout) if timeout else None,
            "canary": [c.model_dump() for c in canary],
        }
    )


@router.get("/services/{name}/config/{environment}")
async def config_page(
    request: Request,
    name: str,
    environment: str,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    principal = await signed_in(request)
    state = _state(request)
    current = await state.catalog.config(name, environment)
    if current is None:
        return problem(request, principal, NotFound(f"{name} has no config in {environment}"))
    versions = await state.catalog.config_versions(name, environment)
    q = request.query_params
    diff = ""
    if q.get("from") and q.get("to"):
        old = await state.catalog.config(name, environment, int(q["from"]))
        new = await state.catalog.config(name, environment, int(q["to"]))
        if old and new:
            before, after = (
                json.dumps(c.params.model_dump(), indent=2).splitlines(keepends=True)
                for c in (old, new)
            )
            diff = "".join(
                difflib.unified_diff(
                    before, after, f"version {old.version}", f"version {new.version}"
                )
            )
    params = current.params
    shown = values or {
        "replicas": str(params.replicas),
        "container_port": str(params.container_port),
        "health_path": params.health_path,
        "labels": _lines(params.labels),
        "env": _lines(params.env),
        "rollout_timeout_s": str(params.rollout_timeout_s or ""),
        "canary": ",".join(str(s.weight) for s in params.canary),
        "note": "",
    }
    return render(
        request,
        principal,
        "config.html",
        status_code=422 if errors else 200,
        service=name,
        environment=environment,
        config=current,
        versions=versions,
        values=shown,
        errors=errors or {},
        diff=diff,
    )


@router.post("/services/{name}/config/{environment}")
async def save_config(request: Request, name: str, environment: str) -> Response:
    principal = await signed_in(request)
    values = await form(request)
    if not principal.holds(Permission.EDIT_CONFIG):
        return problem(
            request, principal, Forbidden("Only a config-admin can change base parameters.")
        )
    state = _state(request)
    current = await state.catalog.config(name, environment)
    if current is None:
        return problem(request, principal, NotFound(f"{name} has no config in {environment}"))
    fields = ["replicas", "container_port", "health_path", "labels", "env", "canary"]
    try:
        body = ConfigIn(
            template_id=current.template_id,
            params=_params(values, current.params),
            note=values.get("note", ""),
        )
        await catalog_routes.put_config(
            name, environment, body, state.catalog, state.audit, principal
        )
    except ValidationError as exc:
        return await config_page(request, name, environment, values, validation_errors(exc))
    except ValueError as exc:
        return await config_page(request, name, environment, values, {"canary": str(exc)})
    except FabuError as exc:
        errors = field_errors(exc.message, fields)
        if exc.message.startswith("params:"):
            errors = {"": exc.message}
        return await config_page(request, name, environment, values, errors)
    return back(f"/services/{name}/config/{environment}")


# Users, environments, audit (admins)


async def _admin(request: Request) -> Principal:
    principal = await signed_in(request)
    if not principal.has(Role.ADMIN):
        raise Forbidden(f"{principal.name} is not an admin")
    return principal


@router.get("/users")
async def users_page(request: Request, error: str = "") -> Response:
    principal = await _admin(request)
    found = await _state(request).users.all()
    return render(
        request,
        principal,
        "users.html",
        status_code=422 if error else 200,
        users=found,
        roles=list(Role),
        error=error,
    )


@router.post("/users")
async def create_user(request: Request) -> Response:
    principal = await _admin(request)
    values = await form(request)
    state = _state(request)
    try:
        body = user_routes.UserIn(
            name=values.get("name", ""),
            password=values.get("password") or None,
            display_name=values.get("display_name", ""),
            grants=[Grant(role=Role(values.get("role", "viewer")))],
        )
        await user_routes.create_user(body, state.users, state.audit, principal)
    except ValidationError as exc:
        return await users_page(request, "; ".join(str(e["msg"]) for e in exc.errors()))
    except FabuError as exc:
        return await users_page(request, exc.message)
    return back("/users")


@router.post("/users/{name}/grants")
async def change_grants(request: Request, name: str) -> Response:
    principal = await _admin(request)
    values = await form(request)
    state = _state(request)
    user = await state.users.get(name)
    if user is None:
        return problem(request, principal, NotFound(f"user {name!r} not found"))
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
        await user_routes.set_grants(name, grants, state.users, state.audit, principal)
    except (ValidationError, ValueError, IndexError) as exc:
        return await users_page(request, str(exc).splitlines()[-1])
    except FabuError as exc:
        return await users_page(request, exc.message)
    return back("/users")


@router.get("/environments")
async def environments_page(request: Request, error: str = "") -> Response:
    principal = await signed_in(request)
    found = await _state(request).catalog.environments()
    return render(
        request,
        principal,
        "environments.html",
        status_code=422 if error else 200,
        environments=found,
        error=error,
    )


@router.post("/environments/{name}")
async def change_environment(request: Request, name: str) -> Response:
    principal = await _admin(request)
    values = await form(request)
    state = _state(request)
    env = await state.catalog.environment(name)
    if env is None:
        return problem(request, principal, NotFound(f"environment {name!r} not found"))
    windows = list(env.freeze_windows)
    try:
        if "remove" in values:
            windows.pop(int(values["remove"]))
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
            {
                **env.model_dump(),
                "approval_required": values.get("approval_required") == "on"
                if "approval" in values
                else env.approval_required,
                "freeze_windows": [w.model_dump() for w in windows],
            }
        )
        await catalog_routes.update_environment(
            name, updated, state.catalog, state.audit, state.settings, principal
        )
    except (ValidationError, ValueError, IndexError) as exc:
        return await environments_page(request, str(exc).splitlines()[-1])
    except FabuError as exc:
        return await environments_page(request, exc.message)
    return back("/environments")


@router.get("/audit")
async def audit_page(request: Request) -> Response:
    principal = await _admin(request)
    q = request.query_params
    filters = {k: q.get(k) or None for k in ("actor", "action", "target")}
    page = await user_routes.audit_log(
        _state(request).audit,
        principal,
        actor=filters["actor"],
        action=filters["action"],
        target=filters["target"],
        cursor=q.get("cursor") or None,
        limit=50,
    )
    next_url = _next_page("/audit", {k: v for k, v in filters.items() if v}, page.next_cursor)
    return render(request, principal, "audit.html", page=page, filters=filters, next_url=next_url)
