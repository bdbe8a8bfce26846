"""Services: the list, a service's page, settings and notification channels, and its
release configs."""

import asyncio
import difflib
import json
import re
from typing import Any, get_args

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from services.api import (
    analysis_service,
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
from services.api.ui.pages import (
    at_row,
    back,
    form,
    form_error,
    form_errors,
    problem,
    render,
)
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


# Rows of canary steps the config form offers beyond those set (more with "More steps"),
# and the most a config holds.
STEP_ROWS = 2
MAX_STEPS = 10


def _step_rows(values: dict[str, str], at_least: int = STEP_ROWS) -> int:
    asked = values.get("steps", "")
    return min(int(asked) if asked.isdigit() and int(asked) > 0 else at_least, MAX_STEPS)


def _names(text: str) -> list[str]:
    """Analysis template names, comma-separated."""
    return [n.strip() for n in text.split(",") if n.strip()]


def canary_steps(values: dict[str, str]) -> tuple[list[dict[str, Any]], list[int]]:
    """The canary steps from the form's rows (a row left empty is no step), and the row
    each came from."""
    steps, filled = [], []
    for n in range(_step_rows(values)):
        weight, pause, analysis = (
            values.get(f"step-{n}-{f}", "").strip() for f in ("weight", "pause_s", "analysis")
        )
        if weight or pause or analysis:
            steps.append({"weight": weight, "pause_s": pause or None, "analysis": _names(analysis)})
            filled.append(n)
    return steps, filled


def fabu_settings(values: dict[str, str]) -> dict[str, Any]:
    """Fabu's own settings from the config form."""
    timeout = values.get("rollout_timeout_s", "").strip()
    auto = values.get("auto_rollback", "")
    blue_green = None
    if values.get("blue_green") == "on":
        delay = values.get("bg-scale_down_delay_s", "").strip()
        blue_green = {
            "analysis": _names(values.get("bg-analysis", "")),
            "pause_s": values.get("bg-pause_s", "").strip() or None,
            **({"scale_down_delay_s": delay} if delay else {}),
        }
    return {
        "rollout_timeout_s": timeout or None,
        "auto_rollback": {"on": True, "off": False}.get(auto),
        "canary": canary_steps(values)[0],
        "blue_green": blue_green,
    }


def _shown_settings(params: BaseParams) -> dict[str, str]:
    """The config form's fields for Fabu's own settings, as stored."""
    auto = "" if params.auto_rollback is None else "on" if params.auto_rollback else "off"
    shown = {
        "rollout_timeout_s": str(params.rollout_timeout_s or ""),
        "auto_rollback": auto,
        "steps": str(min(len(params.canary) + STEP_ROWS, MAX_STEPS)),
    }
    for n, step in enumerate(params.canary):
        shown[f"step-{n}-weight"] = str(step.weight)
        shown[f"step-{n}-pause_s"] = "" if step.pause_s is None else str(step.pause_s)
        shown[f"step-{n}-analysis"] = ", ".join(step.analysis)
    if params.blue_green is not None:
        bg = params.blue_green
        shown |= {
            "blue_green": "on",
            "bg-analysis": ", ".join(bg.analysis),
            "bg-pause_s": "" if bg.pause_s is None else str(bg.pause_s),
            "bg-scale_down_delay_s": str(bg.scale_down_delay_s),
        }
    return shown


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
    shown = values or {
        "values": json.dumps(masked(params.template_values()), indent=2, ensure_ascii=False),
        **_shown_settings(params),
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
        steps=_step_rows(shown),
        max_steps=MAX_STEPS,
        analyses=[a.name for a in await analysis_service.templates(api, principal)],
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
    if values.get("more_steps"):  # more rows of steps, what was filled in kept
        more = values | {"steps": str(_step_rows(values) + 3)}
        return await _config_page(request, principal, name, environment, more)
    current = await catalog_service.stored_config(api, principal, name, environment)
    chosen = values.get("template_id") or (current.template_id if current else "")
    try:
        if not chosen:
            raise Invalid("template_id: choose a template", field="template_id")
        body = ConfigIn(
            template_id=TemplateId(chosen),
            params=BaseParams.model_validate({**_values(values), **fabu_settings(values)}),
            note=values.get("note", ""),
        )
        await catalog_service.put_config(api, principal, name, environment, body)
    except (ValidationError, FabuError) as exc:
        errors = config_errors(exc, canary_steps(values)[1])
        return await _config_page(request, principal, name, environment, values, errors)
    return back(f"/services/{name}/config/{environment}")


# The config form's fields that show their own errors (and each ``params.…`` path).
CONFIG_FIELDS = (
    "template_id",
    "values",
    "rollout_timeout_s",
    "canary",
    "blue_green",
    "auto_rollback",
)
STEP_PATH = re.compile(r"^canary\[(\d+)\]\.?(\w*)")


def _config_errors(exc: ValidationError | FabuError) -> dict[str, str]:
    """As :func:`form_errors`, but a canary step's errors by their whole path
    (``canary[1].weight``) and the settings' own rules at the setting they name."""
    if isinstance(exc, FabuError):
        return form_errors(exc)
    errors: dict[str, str] = {}
    for error in exc.errors():
        loc = [p for p in error["loc"] if p != "params"]
        why = str(error["msg"]).removeprefix("Value error, ")
        if len(loc) > 1 and loc[0] == "canary":
            where = f"canary[{loc[1]}]" + "".join(f".{p}" for p in loc[2:])
        elif loc[:1] == ["blue_green"]:
            where = ".".join(str(p) for p in loc)
        elif loc:
            where = str(loc[0])
        else:
            # A rule over the settings as a whole names the one it is about.
            named = why.partition(":")[0]
            where = named if named in CONFIG_FIELDS else ""
        errors.setdefault(where, why)
    return errors


def config_errors(exc: ValidationError | FabuError, steps: list[int]) -> dict[str, str]:
    """Each error at its field of the config form: a canary step's at its row
    (``step-<n>``; ``steps``: the row each step came from), the blue-green settings'
    at them; any other above the form, never lost."""
    shown: dict[str, str] = {}
    for key, why in _config_errors(exc).items():
        step = STEP_PATH.match(key)
        if step and int(step.group(1)) < len(steps):
            where, said = f"step-{steps[int(step.group(1))]}", at_row(key, step.group(2), why)
        elif key.partition(".")[0] == "blue_green":
            where, said = "blue_green", at_row(key, key.partition(".")[2], why)
        elif key in CONFIG_FIELDS or key.startswith("params."):
            where, said = key, why
        else:
            where, said = "", why if not key or why.startswith(f"{key}:") else f"{key}: {why}"
        shown[where] = f"{shown[where]}; {said}" if where in shown else said
    return shown
