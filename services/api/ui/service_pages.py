"""Services: the list, a service's page, settings and notification channels, and its
release configs."""

import asyncio
import difflib
import json
from typing import Any, get_args

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from services.api import (
    catalog_service,
    notification_service,
    release_service,
    state_service,
    template_service,
)
from services.api.access import ConfigAdmin, Principal, Viewer
from services.api.context import Api
from services.api.deps import api_of
from services.api.schemas import ConfigIn, ConfigView
from services.api.ui.channels import change_channels
from services.api.ui.charts import charts
from services.api.ui.i18n import pick, translator
from services.api.ui.pages import back, form, form_error, form_errors, problem, render
from shared.errors import FabuError, Invalid, NotFound
from shared.ids import TemplateId
from shared.models.catalog import BaseParams, Service, Template
from shared.models.notifications import ChannelType, NotifyEvent
from shared.models.parameters import filled, masked, schema_of
from shared.secrets import MASK
from shared.store.releases import ReleaseFilter

router = APIRouter(include_in_schema=False)

# Services


async def _services_table(request: Request, principal: Principal) -> dict[str, Any]:
    """The services in use with what runs of each, and the archived ones."""
    api = api_of(request)
    every = await catalog_service.services(api, principal, archived=True)
    services = [s for s in every if s.archived_at is None]
    environments = [e.name for e in await catalog_service.environments(api, principal)]
    states = await state_service.all_states(api, principal, services)
    return {
        "services": services,
        "archived": [s for s in every if s.archived_at is not None],
        "environments": environments,
        "states": states,
    }


@router.get("/services")
async def services(request: Request, principal: Viewer) -> Response:
    return await _services_page(request, principal)


async def _services_page(
    request: Request,
    principal: Principal,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    context = await _services_table(request, principal)
    return render(
        request,
        principal,
        "services.html",
        status_code=422 if errors else 200,
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
        made = await catalog_service.create_service(api_of(request), principal, _service_of(values))
    except (ValidationError, FabuError) as exc:
        return await _services_page(request, principal, values, form_errors(exc))
    return back(f"/services/{made.name}")


@router.get("/fragments/services")
async def services_fragment(request: Request, principal: Viewer) -> Response:
    context = await _services_table(request, principal)
    return render(request, principal, "_services_table.html", **context)


@router.get("/fragments/services/{name}/state")
async def service_state_fragment(request: Request, name: str, principal: Viewer) -> Response:
    try:
        states = await state_service.service_states(api_of(request), principal, name)
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
    api = api_of(request)
    try:
        found = await catalog_service.service(api, principal, name)
    except FabuError as exc:
        return problem(request, principal, exc)
    history, states, envs = await asyncio.gather(
        release_service.page(api, principal, ReleaseFilter(service=name), limit=200),
        state_service.service_states(api, principal, name),
        catalog_service.environments(api, principal),
    )
    # Per environment, read at once: its config, the channels in force, and whose.
    found_per_env = await asyncio.gather(
        *(
            asyncio.gather(
                catalog_service.stored_config(api, principal, name, e.name),
                notification_service.get(api, principal, name, e.name),
                notification_service.own(api, principal, name, e.name),
            )
            for e in envs
        )
    )
    configs = {e.name: got[0] for e, got in zip(envs, found_per_env, strict=True)}
    notifications = {e.name: got[1:] for e, got in zip(envs, found_per_env, strict=True)}
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
    api = api_of(request)
    try:
        if "archive" in values or "restore" in values:
            await catalog_service.archive_service(api, principal, name, "archive" in values)
        else:
            await catalog_service.update_service(api, principal, name, _service_of(values, name))
    except (ValidationError, FabuError) as exc:
        return await _service_page(request, principal, name, values, form_errors(exc))
    return back(f"/services/{name}")


@router.post("/services/{name}/notifications/{environment}")
async def change_service_channels(
    request: Request, name: str, environment: str, principal: ConfigAdmin
) -> Response:
    values = await form(request)
    try:
        await change_channels(api_of(request), principal, name, environment, values)
    except (ValidationError, FabuError) as exc:
        errors = {"notifications": form_error(exc)}
        return await _service_page(request, principal, name, values, errors)
    except (ValueError, IndexError) as exc:
        errors = {"notifications": str(exc).splitlines()[-1]}
        return await _service_page(request, principal, name, values, errors)
    return back(f"/services/{name}#notifications-{environment}")


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
    api = api_of(request)
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
    choices = await template_service.templates(api, principal)
    q = request.query_params
    chosen = (values or {}).get("template_id") or q.get("template") or ""
    if not chosen:
        chosen = current.template_id if current else (choices[0].id if choices else "")
    template = await _template(api, principal, chosen) if chosen else None
    diff = ""
    if q.get("from") and q.get("to"):
        if not (q["from"].isdigit() and q["to"].isdigit()):
            return problem(request, principal, Invalid("from, to: config versions are numbers"))
        old = await catalog_service.stored_config(api, principal, name, environment, int(q["from"]))
        new = await catalog_service.stored_config(api, principal, name, environment, int(q["to"]))
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


async def _template(api: Api, principal: Principal, template_id: str) -> Template | None:
    """The template chosen on the form (None: there is no such template)."""
    try:
        return await template_service.template(api, principal, template_id)
    except NotFound:
        return None


@router.post("/services/{name}/config/{environment}")
async def save_config(
    request: Request, name: str, environment: str, principal: ConfigAdmin
) -> Response:
    values = await form(request)
    api = api_of(request)
    current = await catalog_service.stored_config(api, principal, name, environment)
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
    except (ValidationError, FabuError) as exc:
        errors = _at_fields(form_errors(exc))
        return await _config_page(request, principal, name, environment, values, errors)
    return back(f"/services/{name}/config/{environment}")


# The config form's fields that show their own errors (and each ``params.…`` path).
CONFIG_FIELDS = ("template_id", "values", "rollout_timeout_s", "canary", "auto_rollback")


def _at_fields(errors: dict[str, str]) -> dict[str, str]:
    """Each error at its field of the config form; any other above the form, never lost."""
    shown = {k: v for k, v in errors.items() if k in CONFIG_FIELDS or k.startswith("params.")}
    above = [
        v if not k or v.startswith(f"{k}:") else f"{k}: {v}"
        for k, v in errors.items()
        if k not in shown
    ]
    if above:
        shown[""] = "; ".join(above)
    return shown
