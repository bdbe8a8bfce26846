"""Analysis templates: the list with the configs naming each, a new one, one template
with its edit form and its deletion. Metrics are rows of the form, as a plan's items
are; each row's errors are shown at it."""

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from services.api import analysis_service
from services.api.access import ConfigAdmin, Principal, Viewer
from services.api.deps import api_of
from services.api.schemas import AnalysisTemplateChange, AnalysisTemplateIn
from services.api.ui.pages import at_row, back, form, problem, render
from shared.errors import FabuError
from shared.models.analysis import PLACEHOLDERS, AnalysisTemplate

router = APIRouter(include_in_schema=False)

# A metric's fields as the form's columns (``metric-<row>-<field>``); the numbers last.
METRIC_FIELDS = (
    "name",
    "query",
    "success",
    "failure",
    "interval_s",
    "count",
    "failure_limit",
    "inconclusive_limit",
)
NUMBERS = METRIC_FIELDS[4:]
# Rows of the form: a new template's, and the most a template holds.
ROWS = 3
MAX_ROWS = 10
# The form's fields that show their own errors; a metric's show at its row.
FIELDS = ("name", "description", "metrics")
METRIC_PATH = re.compile(r"^metrics\[(\d+)\](?:\.(\w+))?$")


def _rows(values: dict[str, str], at_least: int = ROWS) -> int:
    asked = values.get("rows", "")
    rows = int(asked) if asked.isdigit() and int(asked) > 0 else at_least
    return min(rows, MAX_ROWS)


def metrics_of(values: dict[str, str], rows: int) -> tuple[list[dict[str, str]], list[int]]:
    """The rows filled in as metrics (a number left empty takes its default), and the
    row each came from."""
    metrics, filled = [], []
    for n in range(rows):
        given = {f: values.get(f"metric-{n}-{f}", "").strip() for f in METRIC_FIELDS}
        if not any(given[f] for f in METRIC_FIELDS[:4]):
            continue
        metrics.append({f: v for f, v in given.items() if v or f not in NUMBERS})
        filled.append(n)
    return metrics, filled


def _filled_in(template: AnalysisTemplate) -> dict[str, str]:
    """The form's values for a stored template."""
    values = {"name": template.name, "description": template.description}
    for n, metric in enumerate(template.metrics):
        values |= {f"metric-{n}-{f}": str(v) for f, v in metric.model_dump().items()}
    return values


def _path(loc: tuple[int | str, ...]) -> str:
    """A pydantic location as the service's errors name it: ``metrics[1].query``."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def form_errors(exc: ValidationError | FabuError, filled: list[int]) -> dict[str, str]:
    """Each error where the form shows it: a metric's at its row (``row-<n>``), the
    name's, description's and the metrics' as a whole at them, the rest above it."""
    if isinstance(exc, FabuError):
        found = list((exc.errors or {exc.field: exc.message}).items())
    else:
        found = [
            (_path(e["loc"]), str(e["msg"]).removeprefix("Value error, ")) for e in exc.errors()
        ]
    shown: dict[str, str] = {}
    for path, why in found:
        metric = METRIC_PATH.match(path)
        said = why
        if metric and int(metric.group(1)) < len(filled):
            where = f"row-{filled[int(metric.group(1))]}"
            said = at_row(path, metric.group(2) or "", why)
        else:
            where = path if path in FIELDS else ""
        shown[where] = f"{shown[where]}; {said}" if where in shown else said
    return shown


async def _list_page(
    request: Request,
    principal: Principal,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    found = await analysis_service.templates(api_of(request), principal)
    values = values or {}
    return render(
        request,
        principal,
        "analysis_templates.html",
        status_code=422 if errors else 200,
        templates=found,
        values=values,
        errors=errors or {},
        rows=_rows(values),
        max_rows=MAX_ROWS,
        placeholders=PLACEHOLDERS,
    )


@router.get("/analysis-templates")
async def analysis_templates(request: Request, principal: Viewer) -> Response:
    return await _list_page(request, principal)


@router.post("/analysis-templates")
async def create_analysis_template(request: Request, principal: ConfigAdmin) -> Response:
    values = await form(request)
    rows = _rows(values)
    if values.get("more"):  # more rows, what was filled in kept
        return await _list_page(request, principal, values | {"rows": str(rows + 3)})
    metrics, filled = metrics_of(values, rows)
    try:
        body = AnalysisTemplateIn.model_validate(
            {
                "name": values.get("name", "").strip(),
                "description": values.get("description", "").strip(),
                "metrics": metrics,
            }
        )
        made = await analysis_service.create(api_of(request), principal, body)
    except (ValidationError, FabuError) as exc:
        return await _list_page(request, principal, values, form_errors(exc, filled))
    return back(f"/analysis-templates/{made.name}")


async def _template_page(
    request: Request,
    principal: Principal,
    name: str,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    try:
        current = await analysis_service.template(api_of(request), principal, name)
    except FabuError as exc:
        return problem(request, principal, exc)
    shown: dict[str, Any] = values or _filled_in(current)
    return render(
        request,
        principal,
        "analysis_template.html",
        status_code=(409 if "delete" in (errors or {}) else 422) if errors else 200,
        template=current,
        values=shown,
        errors=errors or {},
        rows=_rows(shown, len(current.metrics) + 1),
        max_rows=MAX_ROWS,
        placeholders=PLACEHOLDERS,
    )


@router.get("/analysis-templates/{name}")
async def analysis_template(request: Request, name: str, principal: Viewer) -> Response:
    return await _template_page(request, principal, name)


@router.post("/analysis-templates/{name}")
async def change_analysis_template(request: Request, name: str, principal: ConfigAdmin) -> Response:
    """Save the form as the next version, or (``delete``) delete the template."""
    values = await form(request)
    api = api_of(request)
    if "delete" in values:
        try:
            await analysis_service.delete(api, principal, name)
        except FabuError as exc:
            return await _template_page(request, principal, name, None, {"delete": exc.message})
        return back("/analysis-templates")
    rows = _rows(values)
    if values.get("more"):
        return await _template_page(request, principal, name, values | {"rows": str(rows + 3)})
    metrics, filled = metrics_of(values, rows)
    try:
        body = AnalysisTemplateChange.model_validate(
            {
                "name": name,
                "description": values.get("description", "").strip(),
                "metrics": metrics,
                "version": values.get("version", ""),
            }
        )
        await analysis_service.change(api, principal, name, body)
    except (ValidationError, FabuError) as exc:
        return await _template_page(request, principal, name, values, form_errors(exc, filled))
    return back(f"/analysis-templates/{name}")
