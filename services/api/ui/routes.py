"""The web UI's pages and forms.

Every page asks for the same permission as the JSON route behind it (see
:func:`page`), and every form calls the same service function as that route
(``services.api.*_service``), so the UI and the API cannot disagree about
what is allowed or what a change does. A browser without a session is sent
to /login; a user without the permission gets a 403 page that says whom to
ask. Forms carry the session's CSRF token as ``csrf_token``.
"""

import asyncio
import difflib
import json
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from services.api import (
    catalog_service,
    notification_service,
    release_service,
    state_service,
    template_service,
    user_service,
)
from services.api.access import (
    SESSION_COOKIE,
    Permission,
    Principal,
    authenticate,
    drop_session_cookie,
    set_session_cookie,
)
from services.api.context import Api
from services.api.deps import api_of
from services.api.schemas import (
    ActionIn,
    ConfigIn,
    ConfigView,
    DecisionIn,
    LoginIn,
    Queued,
    ReleaseIn,
    ReleaseSummary,
    TemplateContentIn,
    TemplateIn,
    UserIn,
)
from services.api.ui.charts import charts
from services.api.ui.i18n import LANGUAGES, pick, translator
from shared.errors import FabuError, Invalid, NotFound, Unauthorized
from shared.ids import TemplateId
from shared.live import Health
from shared.models import (
    BaseParams,
    Channel,
    ChannelType,
    Environment,
    FreezeWindow,
    Grant,
    NotifyEvent,
    ReleaseState,
    Role,
    Service,
    TemplateSource,
    User,
    now,
)
from shared.parameters import filled, masked, schema_of, told
from shared.secrets import MASK

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


class NoAccess(Exception):
    """A signed-in user without the page's permission: a 403 page, with the menu."""

    def __init__(self, principal: Principal, permission: Permission) -> None:
        super().__init__(permission)
        self.principal = principal
        self.permission = permission


async def signed_in(request: Request) -> Principal:
    """The page's user, or off to the login page."""
    try:
        return await authenticate(request)
    except Unauthorized as exc:
        then = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginNeeded(then) from exc


def page(permission: Permission) -> Callable[[Request], Awaitable[Principal]]:
    """A page's dependency: its user, holding ``permission`` (else login, or 403)."""

    async def caller(request: Request) -> Principal:
        principal = await signed_in(request)
        if not principal.holds(permission):
            raise NoAccess(principal, permission)
        return principal

    caller.__name__ = f"page_{permission.value}"
    return caller


SignedIn = Annotated[Principal, Depends(page(Permission.SIGNED_IN))]
Viewer = Annotated[Principal, Depends(page(Permission.VIEW))]
Releaser = Annotated[Principal, Depends(page(Permission.RELEASE))]
ConfigAdmin = Annotated[Principal, Depends(page(Permission.EDIT_CONFIG))]
Admin = Annotated[Principal, Depends(page(Permission.ADMIN))]


# What each permission means, in the words of the roles.
NEEDS = {
    Permission.SIGNED_IN: "a login",
    Permission.VIEW: "a role",
    Permission.RELEASE: "a releaser grant",
    Permission.EDIT_CONFIG: "the config-admin role",
    Permission.REGISTER_IMAGE: "a releaser grant or the config-admin role",
    Permission.ADMIN: "the admin role",
}


def no_access(request: Request, exc: NoAccess) -> HTMLResponse:
    principal = exc.principal
    if not principal.user.grants:
        message = "You have no access to Fabu yet: ask an admin to grant you a role."
    else:
        message = (
            f"{principal.name} may not do this: it needs {NEEDS[exc.permission]}. "
            "Ask an admin for a grant."
        )
    return render(request, principal, "error.html", status_code=403, error=message, status=403)


def _state(request: Request) -> Api:
    return api_of(request)


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
    return render(
        request,
        principal,
        "error.html",
        status_code=exc.status,
        error=exc.message,
        status=exc.status,
    )


def validation_errors(exc: ValidationError) -> dict[str, str]:
    """``{field: message}`` from each error's location (data, never its text)."""
    errors: dict[str, str] = {}
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"] if p != "params") or ""
        errors.setdefault(field.split(".")[0], error["msg"])
    return errors


async def form(request: Request) -> dict[str, str]:
    """The form's text fields, with LF line endings (browsers send a textarea's as CRLF)."""
    data = await request.form()
    return {k: v.replace("\r\n", "\n") for k, v in data.items() if isinstance(v, str)}


def _next_page(path: str, filters: dict[str, str], cursor: str | None) -> str:
    """The link to the page after this one, with the same filters ("" on the last)."""
    return f"{path}?{urllib.parse.urlencode({**filters, 'cursor': cursor})}" if cursor else ""


def back(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


@router.get("/favicon.ico")
async def favicon() -> Response:
    """Browsers ask for it on every page: Fabu's icon (the pages link the SVG itself)."""
    return RedirectResponse("/static/favicon.svg", status_code=301)


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
    response = back(then)
    try:
        body = LoginIn(username=data.get("username", ""), password=data.get("password", ""))
        _, secret, session = await user_service.sign_in(
            _state(request), body.username, body.password
        )
        set_session_cookie(response, secret, session.expires_at)
    except (Unauthorized, ValidationError):
        page = await login_page(request, then, "Wrong user name or password")
        page.status_code = 401
        return page
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request, _: SignedIn) -> Response:
    response = back("/login")
    await user_service.sign_out(_state(request), request.cookies.get(SESSION_COOKIE, ""))
    drop_session_cookie(response)
    return response


@router.post("/language")
async def language(request: Request, principal: SignedIn) -> Response:
    chosen = (await form(request)).get("language", "")
    if chosen in ("", *LANGUAGES):
        await _state(request).users.update(principal.name, language=chosen)
    referer = request.headers.get("referer", "/")
    return back(urllib.parse.urlsplit(referer).path or "/")


# The dashboard


async def _dashboard(request: Request, principal: Principal) -> dict[str, Any]:
    api = _state(request)
    running: list[ReleaseSummary] = []
    for state in UNDER_WAY:
        running += (await release_service.page(api, principal, state=state, limit=50)).items
    running.sort(key=lambda r: r.id, reverse=True)
    awaiting = await release_service.page(
        api, principal, state=ReleaseState.AWAITING_APPROVAL, limit=50
    )
    recent = [r for r in (await release_service.page(api, principal, limit=30)).items]
    recent = [r for r in recent if r.state.final][:15]
    states = await state_service.all_states(
        api, principal, await catalog_service.services(api, principal)
    )
    attention = [
        s for _, s in sorted(states.items()) if s.health is not Health.HEALTHY or s.sync != "Synced"
    ]
    return {
        "running": running,
        "awaiting": awaiting.items,
        "recent": recent,
        "attention": attention,
        "healthy": len(states) - len(attention),
    }


@router.get("/")
async def dashboard(request: Request, principal: Viewer) -> Response:
    return render(request, principal, "dashboard.html", **await _dashboard(request, principal))


@router.get("/fragments/dashboard")
async def dashboard_lists(request: Request, principal: Viewer) -> Response:
    context = await _dashboard(request, principal)
    return render(request, principal, "_dashboard_lists.html", **context)


# Services


async def _services_table(request: Request, principal: Principal) -> dict[str, Any]:
    api = _state(request)
    services = await catalog_service.services(api, principal)
    environments = [e.name for e in await catalog_service.environments(api, principal)]
    states = await state_service.all_states(api, principal, services)
    return {"services": services, "environments": environments, "states": states}


@router.get("/services")
async def services(request: Request, principal: Viewer) -> Response:
    return await _services_page(request, principal)


async def _services_page(
    request: Request,
    principal: Principal,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    api = _state(request)
    context = await _services_table(request, principal)
    every = await catalog_service.services(api, principal, archived=True)
    return render(
        request,
        principal,
        "services.html",
        status_code=422 if errors else 200,
        archived=[s for s in every if s.archived_at is not None],
        values=values or {},
        errors=errors or {},
        **context,
    )


def _service_of(values: dict[str, str], name: str | None = None) -> Service:
    return Service(
        name=name or values.get("name", "").strip(),
        team=values.get("team", "").strip(),
        image_repository=values.get("image_repository", "").strip(),
        gitlab_project=values.get("gitlab_project", "").strip(),
    )


@router.post("/services")
async def create_service(request: Request, principal: ConfigAdmin) -> Response:
    values = await form(request)
    try:
        made = await catalog_service.create_service(_state(request), principal, _service_of(values))
    except ValidationError as exc:
        return await _services_page(request, principal, values, validation_errors(exc))
    except FabuError as exc:
        return await _services_page(request, principal, values, {exc.field: exc.message})
    return back(f"/services/{made.name}")


@router.get("/fragments/services")
async def services_fragment(request: Request, principal: Viewer) -> Response:
    context = await _services_table(request, principal)
    return render(request, principal, "_services_table.html", **context)


@router.get("/fragments/services/{name}/state")
async def service_state_fragment(request: Request, name: str, principal: Viewer) -> Response:
    try:
        states = await state_service.service_states(_state(request), principal, name)
    except FabuError as exc:
        return problem(request, principal, exc)
    return render(request, principal, "_service_state.html", states=states.environments)


@router.get("/services/{name}")
async def service(request: Request, name: str, principal: Viewer) -> Response:
    return await _service_page(request, principal, name)


async def _service_page(
    request: Request,
    principal: Principal,
    name: str,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    api = _state(request)
    try:
        found = await catalog_service.service(api, principal, name)
    except FabuError as exc:
        return problem(request, principal, exc)
    history, states, envs = await asyncio.gather(
        release_service.page(api, principal, service=name, limit=200),
        state_service.service_states(api, principal, name),
        catalog_service.environments(api, principal),
    )
    configs = {e.name: await api.catalog.config(name, e.name) for e in envs}
    notifications = {
        e.name: (
            await notification_service.get(api, principal, name, e.name),
            await api.catalog.own_channels(name, e.name),
        )
        for e in envs
    }
    t = translator(pick(principal.user.language, request.headers.get("accept-language", "")))
    return render(
        request,
        principal,
        "service.html",
        status_code=422 if errors else 200,
        service=found,
        states=states.environments,
        environments=[e.name for e in envs],
        configs=configs,
        notifications=notifications,
        channel_types=list(get_args(ChannelType)),
        events=list(get_args(NotifyEvent)),
        history=history.items[:30],
        charts=charts(history.items, t),
        values=values or found.model_dump(),
        errors=errors or {},
    )


@router.post("/services/{name}")
async def change_service(request: Request, name: str, principal: ConfigAdmin) -> Response:
    values = await form(request)
    api = _state(request)
    try:
        if "archive" in values or "restore" in values:
            await catalog_service.archive_service(api, principal, name, "archive" in values)
        else:
            await catalog_service.update_service(api, principal, name, _service_of(values, name))
    except ValidationError as exc:
        return await _service_page(request, principal, name, values, validation_errors(exc))
    except FabuError as exc:
        return await _service_page(request, principal, name, values, {exc.field: exc.message})
    return back(f"/services/{name}")


@router.post("/services/{name}/notifications/{environment}")
async def change_service_channels(
    request: Request, name: str, environment: str, principal: ConfigAdmin
) -> Response:
    values = await form(request)
    try:
        await _change_channels(_state(request), principal, name, environment, values)
    except ValidationError as exc:
        errors = {"notifications": told(validation_errors(exc))}
        return await _service_page(request, principal, name, values, errors)
    except (ValueError, IndexError) as exc:
        errors = {"notifications": str(exc).splitlines()[-1]}
        return await _service_page(request, principal, name, values, errors)
    except FabuError as exc:
        return await _service_page(request, principal, name, values, {"notifications": exc.message})
    return back(f"/services/{name}#notifications-{environment}")


# Release records


PAGE_SIZES = (25, 50, 100)


def _day(text: str, field: str) -> datetime | None:
    """A date from the form's date box, as midnight UTC (None when empty)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError as exc:
        raise Invalid(f"{field}: give a date as YYYY-MM-DD", field=field) from exc


@router.get("/releases")
async def releases(request: Request, principal: Viewer) -> Response:
    q = request.query_params
    api = _state(request)
    names = ("service", "environment", "state", "operator", "since", "until")
    filters = {k: (q.get(k) or "").strip() for k in names}
    size = int(q["size"]) if q.get("size", "").isdigit() else PAGE_SIZES[0]
    size = size if size in PAGE_SIZES else PAGE_SIZES[0]
    try:
        try:
            state = ReleaseState(filters["state"]) if filters["state"] else None
        except ValueError as exc:
            states = ", ".join(ReleaseState)
            raise Invalid(f"state: not one of {states}", field="state") from exc
        since = _day(filters["since"], "since")
        until = _day(filters["until"], "until")
    except FabuError as exc:
        return problem(request, principal, exc)
    found, services, environments, operators = await asyncio.gather(
        release_service.page(
            api,
            principal,
            service=filters["service"] or None,
            environment=filters["environment"] or None,
            state=state,
            operator=filters["operator"] or None,
            since=since,
            # The last day given is in the range.
            until=until + timedelta(days=1) if until else None,
            prefix=True,
            cursor=q.get("cursor") or None,
            back=q.get("back") or None,
            limit=size,
            counted=True,
        ),
        catalog_service.services(api, principal, archived=True),
        catalog_service.environments(api, principal, archived=True),
        release_service.operators(api, principal),
    )
    kept = {k: v for k, v in filters.items() if v}
    if size != PAGE_SIZES[0]:
        kept["size"] = str(size)

    def link(**more: str) -> str:
        return "/releases?" + urllib.parse.urlencode({**kept, **more})

    return render(
        request,
        principal,
        "releases.html",
        page=found,
        filters=filters,
        filtered=any(filters.values()),
        size=size,
        sizes=PAGE_SIZES,
        states=list(ReleaseState),
        services=[s.name for s in services],
        environments=[e.name for e in environments],
        operators=operators,
        next_url=link(cursor=found.next_cursor) if found.next_cursor else "",
        previous_url=link(back=found.previous_cursor) if found.previous_cursor else "",
    )


@router.get("/releases/new")
async def new_release(request: Request, principal: Releaser) -> Response:
    return await _new_release_page(request, principal, dict(request.query_params), {})


async def _new_release_page(
    request: Request, principal: Principal, values: dict[str, str], errors: dict[str, str]
) -> Response:
    api = _state(request)
    services = await catalog_service.services(api, principal)
    environments = await catalog_service.environments(api, principal)
    chosen = next((s for s in services if s.name == values.get("service")), None)
    versions, config, preview = None, None, None
    if chosen is not None:
        try:
            versions = await catalog_service.images(api, principal, chosen.name)
        except FabuError as exc:
            errors.setdefault("version", exc.message)
        if values.get("environment"):
            config = await api.catalog.config(chosen.name, values["environment"])
        if values.get("preview") and values.get("environment") and values.get("version"):
            try:
                preview = await catalog_service.preview(
                    api, principal, chosen.name, values["environment"], values["version"]
                )
            except FabuError as exc:
                errors.setdefault(exc.field, exc.message)
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
        frozen=next(
            (e.frozen_by(now()) for e in environments if e.name == values.get("environment")),
            None,
        ),
    )


@router.post("/releases/new")
async def create_release(request: Request, principal: Releaser) -> Response:
    values = await form(request)
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
        accepted = await release_service.create(_state(request), principal, body)
    except FabuError as exc:
        return await _new_release_page(request, principal, values, {exc.field: exc.message})
    return back(f"/releases/{accepted.id}")


@router.get("/releases/{release_id}")
async def release(request: Request, release_id: str, principal: Viewer) -> Response:
    api = _state(request)
    try:
        found = await release_service.get(api, principal, release_id)
    except FabuError as exc:
        return problem(request, principal, exc)
    actions, good, env = await asyncio.gather(
        release_service.actions(api, principal, found),
        release_service.last_good(api, principal, found),
        api.catalog.environment(found.environment),
    )
    if good is not None and "rollback" not in await release_service.actions(api, principal, good):
        good = None
    timeout_s = found.params.rollout_timeout_s or (env.rollout_timeout_s if env else None)
    waiting = found.state is ReleaseState.AWAITING_APPROVAL
    return render(
        request,
        principal,
        "release.html",
        release=found,
        actions=actions,
        last_good=good,
        timeout_s=timeout_s,
        approvers=await release_service.approvers(api, principal, found) if waiting else [],
        frozen=env.frozen_by(now()) if env else None,
    )


@router.get("/releases/{release_id}/rollback")
async def rollback_page(request: Request, release_id: str, principal: Viewer) -> Response:
    api = _state(request)
    try:
        diff = await release_service.rollback_preview(api, principal, release_id)
        found = await release_service.get(api, principal, release_id)
    except FabuError as exc:
        return problem(request, principal, exc)
    env = await api.catalog.environment(found.environment)
    frozen = env.frozen_by(now()) if env else None
    return render(request, principal, "rollback.html", release=found, diff=diff, frozen=frozen)


@router.post("/releases/{release_id}/{action}")
async def release_action(
    request: Request, release_id: str, action: str, principal: Releaser
) -> Response:
    values = await form(request)
    api = _state(request)
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
                done: Any = await release_service.rollback(api, principal, release_id, act)
            case "redeploy":
                done = await release_service.redeploy(api, principal, release_id, act)
            case "cancel":
                done = await release_service.cancel(api, principal, release_id)
            case "abort":
                done = await release_service.abort(api, principal, release_id)
            case "promote":
                done = await release_service.promote(api, principal, release_id)
            case "approve":
                done = await release_service.approve(api, principal, release_id, decided)
            case "reject":
                done = await release_service.reject(api, principal, release_id, decided)
            case _:
                return problem(request, principal, NotFound(f"no action {action!r}"))
    except FabuError as exc:
        return problem(request, principal, exc)
    return back(f"/releases/{done.id}")


# Templates


@router.get("/templates")
async def templates_page(request: Request, principal: Viewer) -> Response:
    return await _templates_page(request, principal)


async def _templates_page(
    request: Request,
    principal: Principal,
    values: dict[str, str] | None = None,
    error: str = "",
) -> Response:
    found = await template_service.templates(_state(request), principal)
    return render(
        request,
        principal,
        "templates.html",
        status_code=422 if error else 200,
        templates=found,
        values=values or {"kind": "fabu", "ref": "main"},
        error=error,
    )


def _parameters(values: dict[str, str]) -> dict[str, Any] | None:
    """The parameters' JSON Schema from the form (empty: none)."""
    text = values.get("parameters", "").strip()
    try:
        parsed = json.loads(text) if text else None
    except ValueError as exc:
        raise Invalid(f"parameters: not valid JSON: {exc}", field="parameters") from exc
    if parsed is not None and not isinstance(parsed, dict):
        raise Invalid("parameters: give a JSON object (a JSON Schema)", field="parameters")
    return parsed


def _template_in(values: dict[str, str]) -> TemplateIn:
    kind = values.get("kind", "fabu")
    if kind == "fabu":
        return TemplateIn(
            name=values.get("name", "").strip(),
            content=values.get("content") or None,
            parameters=_parameters(values),
        )
    source = TemplateSource.model_validate(
        {
            "type": kind,
            "project": values.get("project", "").strip(),
            "url": values.get("url", "").strip(),
            "path": values.get("path", "").strip(),
            "ref": values.get("ref", "").strip() or "main",
        }
    )
    return TemplateIn(name=values.get("name", "").strip(), source=source)


@router.post("/templates")
async def create_template(request: Request, principal: ConfigAdmin) -> Response:
    values = await form(request)
    try:
        made = await template_service.create(_state(request), principal, _template_in(values))
    except ValidationError as exc:
        return await _templates_page(request, principal, values, told(validation_errors(exc)))
    except FabuError as exc:
        return await _templates_page(request, principal, values, exc.message)
    return back(f"/templates/{made.id}")


@router.get("/templates/{template_id}")
async def template_page(request: Request, template_id: str, principal: Viewer) -> Response:
    return await _template_page(request, principal, template_id)


async def _template_page(
    request: Request,
    principal: Principal,
    template_id: str,
    error: str = "",
    queued: list[Queued] | None = None,
) -> Response:
    api = _state(request)
    q = request.query_params
    try:
        current = await template_service.found(api.catalog, template_id)
        versions = await template_service.versions(api, principal, template_id)
        to_version = int(q.get("to") or current.version)
        from_version = int(q.get("from") or max(to_version - 1, 1))
        impact = await template_service.impact(
            api, principal, template_id, from_version, to_version
        )
        old = await template_service.found(api.catalog, template_id, from_version)
        new = await template_service.found(api.catalog, template_id, to_version)
    except ValueError:
        return problem(request, principal, Invalid("from, to: template versions are numbers"))
    except FabuError as exc:
        return problem(request, principal, exc)
    at = now()
    frozen = any(
        e.frozen_by(at)
        for e in await api.catalog.environments()
        if e.name in {s.environment for s in impact.services}
    )
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
        parameters_text=json.dumps(current.parameters, indent=2, ensure_ascii=False)
        if current.parameters is not None
        else "",
        versions=versions,
        impact=impact,
        diff=diff,
        error=error,
        queued=queued,
        frozen=frozen,
    )


@router.post("/templates/{template_id}/release")
async def release_template(request: Request, template_id: str, principal: Releaser) -> Response:
    """Release the template's current version to every service using it (the blast radius)."""
    values = await form(request)
    body = ActionIn(
        description=values.get("description", ""),
        override_reason=values.get("override_reason", ""),
    )
    try:
        queued = await template_service.release_all(_state(request), principal, template_id, body)
    except FabuError as exc:
        return await _template_page(request, principal, template_id, exc.message)
    return await _template_page(request, principal, template_id, queued=queued)


@router.post("/templates/{template_id}")
async def change_template(request: Request, template_id: str, principal: ConfigAdmin) -> Response:
    values = await form(request)
    try:
        body = TemplateContentIn(content=values.get("content", ""), parameters=_parameters(values))
        await template_service.change(_state(request), principal, template_id, body)
    except ValidationError as exc:
        message = str(exc.errors()[0]["msg"])
        return await _template_page(request, principal, template_id, message)
    except FabuError as exc:
        return await _template_page(request, principal, template_id, exc.message)
    return back(f"/templates/{template_id}")


# Release configs


# The words the config form's script writes, in the page's language.
FORM_WORDS = ("Add", "Remove", "key", "value", "default", "unchanged", "not valid JSON")


def _script_json(value: Any) -> str:
    """JSON to place inside a <script type="application/json">: no text in it can end it."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _settings(values: dict[str, str]) -> dict[str, Any]:
    """Fabu's own settings from the config form."""
    weights = values.get("canary", "").replace(" ", "").split(",")
    timeout = values.get("rollout_timeout_s", "").strip()
    auto = values.get("auto_rollback", "")
    return {
        "rollout_timeout_s": timeout or None,
        "auto_rollback": {"on": True, "off": False}.get(auto),
        "canary": [{"weight": w} for w in weights if w],
    }


def _values(values: dict[str, str]) -> dict[str, Any]:
    """The template's parameter values from the form's JSON (which its script keeps)."""
    try:
        parsed = json.loads(values.get("values") or "{}")
    except ValueError as exc:
        raise Invalid(f"values: not valid JSON: {exc}", field="values") from exc
    if not isinstance(parsed, dict):
        raise Invalid("values: give a JSON object of the template's parameters", field="values")
    return parsed


@router.get("/services/{name}/config/{environment}")
async def config_page(request: Request, name: str, environment: str, principal: Viewer) -> Response:
    return await _config_page(request, principal, name, environment)


async def _config_page(
    request: Request,
    principal: Principal,
    name: str,
    environment: str,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    api = _state(request)
    try:
        await catalog_service.service(api, principal, name)
        await catalog_service.environment(api, principal, environment)
        current: ConfigView | None = await catalog_service.config(api, principal, name, environment)
    except NotFound as exc:
        if "no release config" not in exc.message:
            return problem(request, principal, exc)
        current = None
    except FabuError as exc:
        return problem(request, principal, exc)
    versions = await catalog_service.config_versions(api, principal, name, environment)
    choices = await api.catalog.templates()
    q = request.query_params
    chosen = (values or {}).get("template_id") or q.get("template") or ""
    if not chosen:
        chosen = current.template_id if current else (choices[0].id if choices else "")
    template = await api.catalog.template(TemplateId(chosen)) if chosen else None
    diff = ""
    if q.get("from") and q.get("to"):
        if not (q["from"].isdigit() and q["to"].isdigit()):
            return problem(request, principal, Invalid("from, to: config versions are numbers"))
        old = await api.catalog.config(name, environment, int(q["from"]))
        new = await api.catalog.config(name, environment, int(q["to"]))
        if old and new:
            before, after = (
                json.dumps(c.params.model_dump(mode="json"), indent=2).splitlines(keepends=True)
                for c in (old, new)
            )
            diff = "".join(
                difflib.unified_diff(
                    before, after, f"version {old.version}", f"version {new.version}"
                )
            )
    params = current.params if current else BaseParams()
    auto = "" if params.auto_rollback is None else "on" if params.auto_rollback else "off"
    shown = values or {
        "values": json.dumps(masked(params.template_values()), indent=2, ensure_ascii=False),
        "rollout_timeout_s": str(params.rollout_timeout_s or ""),
        "auto_rollback": auto,
        "canary": ",".join(str(s.weight) for s in params.canary),
        "note": "",
    }
    same = current is not None and template is not None and template.id == current.template_id
    if current is not None and (same or template is None):
        schema, effective = current.parameters, current.effective
    else:
        declared = template.parameters if template else None
        schema = schema_of(declared)
        effective = masked(filled(declared, params.template_values()))
    errors = errors if errors is not None else {}
    t = translator(pick(principal.user.language, request.headers.get("accept-language", "")))
    return render(
        request,
        principal,
        "config.html",
        status_code=422 if errors else 200,
        service=name,
        environment=environment,
        config=current,
        template=template,
        templates=choices,
        versions=versions,
        values=shown,
        errors=errors,
        param_errors={k: v for k, v in errors.items() if k.startswith("params")},
        schema_json=_script_json(schema),
        errors_json=_script_json(errors),
        words_json=json.dumps({w: t(w) for w in FORM_WORDS}, ensure_ascii=False),
        mask=MASK,
        effective=json.dumps(effective, indent=2, ensure_ascii=False),
        diff=diff,
    )


@router.post("/services/{name}/config/{environment}")
async def save_config(
    request: Request, name: str, environment: str, principal: ConfigAdmin
) -> Response:
    values = await form(request)
    api = _state(request)
    current = await api.catalog.config(name, environment)
    chosen = values.get("template_id") or (current.template_id if current else "")
    try:
        if not chosen:
            raise Invalid("template_id: choose a template", field="template_id")
        body = ConfigIn(
            template_id=TemplateId(chosen),
            params=BaseParams.model_validate({**_values(values), **_settings(values)}),
            note=values.get("note", ""),
        )
        await catalog_service.put_config(api, principal, name, environment, body)
    except ValidationError as exc:
        errors = validation_errors(exc)
        return await _config_page(request, principal, name, environment, values, errors)
    except FabuError as exc:
        errors = exc.errors or {exc.field: exc.message}
        return await _config_page(request, principal, name, environment, values, errors)
    return back(f"/services/{name}/config/{environment}")


# Users, environments, audit (admins)


@router.get("/users")
async def users_page(request: Request, principal: Admin) -> Response:
    return await _users_page(request, principal)


async def _users_page(request: Request, principal: Principal, error: str = "") -> Response:
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
        await user_service.create_user(_state(request), principal, user, body.password)
    except ValidationError as exc:
        return await _users_page(request, principal, "; ".join(str(e["msg"]) for e in exc.errors()))
    except ValueError:
        return await _users_page(request, principal, f"role: not one of {', '.join(Role)}")
    except FabuError as exc:
        return await _users_page(request, principal, exc.message)
    return back("/users")


@router.post("/users/{name}/grants")
async def change_grants(request: Request, name: str, principal: Admin) -> Response:
    values = await form(request)
    api = _state(request)
    user = await api.users.get(name)
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
        await user_service.set_grants(api, principal, name, grants)
    except (ValidationError, ValueError, IndexError) as exc:
        return await _users_page(request, principal, str(exc).splitlines()[-1])
    except FabuError as exc:
        return await _users_page(request, principal, exc.message)
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
) -> Response:
    api = _state(request)
    every = await catalog_service.environments(api, principal, archived=True)
    channels = {e.name: await notification_service.get(api, principal, None, e.name) for e in every}
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
        now=now(),
    )


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
        }
    )


@router.post("/environments")
async def create_environment(request: Request, principal: Admin) -> Response:
    values = await form(request)
    try:
        await catalog_service.create_environment(
            _state(request), principal, _environment_of(values)
        )
    except ValidationError as exc:
        return await _environments_page(
            request, principal, values=values, errors=validation_errors(exc)
        )
    except FabuError as exc:
        return await _environments_page(
            request, principal, values=values, errors={exc.field: exc.message}
        )
    return back("/environments")


def _channel_of(values: dict[str, str]) -> Channel:
    def listed(name: str) -> list[str]:
        return [v.strip() for v in values.get(name, "").replace("\n", ",").split(",") if v.strip()]

    return Channel.model_validate(
        {
            "type": values.get("type", ""),
            "url": values.get("url", "").strip(),
            "recipients": listed("recipients"),
            "mobiles": listed("mobiles"),
            "secret": values.get("secret", "").strip(),
            "events": [e for e in get_args(NotifyEvent) if values.get(f"event_{e}") == "on"],
            "language": values.get("channel_language") or "en",
        }
    )


async def _change_channels(
    api: Api, principal: Principal, service: str | None, environment: str, values: dict[str, str]
) -> None:
    """Add the form's channel to those in force (a service's own, else the environment's
    default), remove one, or (for a service) go back to the default. The stored ones are
    opened in memory to be sealed again, never shown."""
    if "channel_reset" in values and service is not None:
        await notification_service.reset(api, principal, service, environment)
        return
    stored = await api.catalog.channels(service or "*", environment) or []
    plain = [
        c.model_copy(update={"url": api.secrets.open(c.url), "secret": api.secrets.open(c.secret)})
        for c in stored
    ]
    if "channel_remove" in values:
        plain.pop(int(values["channel_remove"]))
    else:
        plain.append(_channel_of(values))
    await notification_service.put(api, principal, service, environment, plain)


@router.post("/environments/{name}")
async def change_environment(request: Request, name: str, principal: Admin) -> Response:
    values = await form(request)
    api = _state(request)
    env = await api.catalog.environment(name)
    if env is None:
        return problem(request, principal, NotFound(f"environment {name!r} not found"))
    windows = list(env.freeze_windows)
    try:
        if "archive" in values or "restore" in values:
            await catalog_service.archive_environment(api, principal, name, "archive" in values)
            return back("/environments")
        if "channel_add" in values or "channel_remove" in values:
            await _change_channels(api, principal, None, name, values)
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
        await catalog_service.update_environment(api, principal, name, updated)
    except ValidationError as exc:
        errors = validation_errors(exc)
        return await _environments_page(request, principal, told(errors), values)
    except (ValueError, IndexError) as exc:
        return await _environments_page(request, principal, str(exc).splitlines()[-1])
    except FabuError as exc:
        return await _environments_page(request, principal, exc.message)
    return back(f"/environments#env-{name}")


@router.get("/audit")
async def audit_page(request: Request, principal: Admin) -> Response:
    q = request.query_params
    filters = {k: q.get(k) or None for k in ("actor", "action", "target")}
    found = await user_service.audit_log(
        _state(request),
        principal,
        actor=filters["actor"],
        action=filters["action"],
        target=filters["target"],
        cursor=q.get("cursor") or None,
        limit=50,
    )
    next_url = _next_page("/audit", {k: v for k, v in filters.items() if v}, found.next_cursor)
    return render(request, principal, "audit.html", page=found, filters=filters, next_url=next_url)
