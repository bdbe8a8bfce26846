"""Release records: the list, a new release, one release, and the actions on it."""

import asyncio
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from services.api import catalog_service, image_service, plan_service, release_service, review
from services.api.access import Principal, Releaser, Viewer
from services.api.context import Api
from services.api.deps import api_of
from services.api.schemas import ActionIn, ConfigView, DecisionIn, PlanIn, Preview, ReleaseIn
from services.api.ui.analysis_view import analysis_view, inconclusive
from services.api.ui.pages import (
    back,
    form,
    form_errors,
    problem,
    render,
    utc_time,
    validation_errors,
)
from shared.cluster.manifest import canary_target
from shared.cluster.manifest import objects as manifest_objects
from shared.errors import FabuError, Invalid, NotFound
from shared.models.base import now
from shared.models.catalog import Environment
from shared.models.parameters import told
from shared.models.release import Release
from shared.release import actions as actions_matrix
from shared.release.actions import Action
from shared.release.machine import ReleaseState
from shared.store.releases import ReleaseFilter

router = APIRouter(include_in_schema=False)

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
    api = api_of(request)
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
            ReleaseFilter(
                service=filters["service"] or None,
                environment=filters["environment"] or None,
                state=state,
                operator=filters["operator"] or None,
                since=since,
                # The last day given is in the range.
                until=until + timedelta(days=1) if until else None,
                prefix=True,
            ),
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
    """The form, step by step; every refusal shown with its reason (one about no field
    of the form above it) and, when the release config is the cause, the link to it."""
    api = api_of(request)
    services = await catalog_service.services(api, principal)
    environments = await catalog_service.environments(api, principal)
    chosen = next((s for s in services if s.name == values.get("service")), None)
    versions: image_service.ImageVersions | None = None
    config: ConfigView | None = None
    preview: Preview | None = None
    fix = ""
    if chosen is not None:
        try:
            versions = await image_service.images(api, principal, chosen.name)
        except FabuError as exc:
            errors.setdefault("version", exc.message)
        if values.get("environment"):
            config, fix = await _config_of(api, principal, chosen.name, values["environment"])
            if config is None or config.problems:
                errors.setdefault("config", _misfit(chosen.name, values["environment"], config))
        fits = config is not None and not config.problems
        if fits and values.get("preview") and values.get("version"):
            try:
                preview = await catalog_service.preview(
                    api, principal, chosen.name, values["environment"], values["version"]
                )
            except FabuError as exc:
                errors.setdefault(exc.field, exc.message)
    shown = _on_the_form(errors)
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
        errors=shown,
        fix_url=fix if "" in shown and fix else "",
        frozen=next(
            (e.frozen_by(now()) for e in environments if e.name == values.get("environment")),
            None,
        ),
    )


# The fields of the new release form that show their own errors; any other refusal
# (a release config's ``params.region``...) is shown above the form.
FORM_FIELDS = (
    "service",
    "environment",
    "version",
    "description",
    "override_reason",
    "scheduled_at",
)


def _on_the_form(errors: dict[str, str]) -> dict[str, str]:
    """Each error at its field of the form, the others together above it."""
    shown = {k: v for k, v in errors.items() if k in FORM_FIELDS}
    above = [v for k, v in errors.items() if k not in FORM_FIELDS]
    if above:
        shown[""] = "; ".join(dict.fromkeys(above))
    return shown


async def _config_of(
    api: Api, principal: Principal, service: str, environment: str
) -> tuple[ConfigView | None, str]:
    """The service's release config in the environment (None: it has none), and the
    link of its page."""
    url = f"/services/{urllib.parse.quote(service)}/config/{urllib.parse.quote(environment)}"
    try:
        return await catalog_service.config(api, principal, service, environment), url
    except NotFound:
        return None, url


def _misfit(service: str, environment: str, config: ConfigView | None) -> str:
    """Why no release of the service can start in the environment, in words."""
    if config is None:
        return (
            f"{service} has no release config for {environment}: a config admin must "
            "create it before it can be released there"
        )
    return (
        f"the release config of {service} in {environment} (version {config.version}) does "
        f"not fit its template: {told(config.problems)}; fix the config"
    )


@router.post("/releases/new")
async def create_release(request: Request, principal: Releaser) -> Response:
    values = await form(request)
    if values.get("scheduled_at", "").strip():
        return await _schedule_release(request, principal, values)
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
        accepted = await release_service.create(api_of(request), principal, body)
    except FabuError as exc:
        return await _new_release_page(request, principal, values, {exc.field: exc.message})
    return back(f"/releases/{accepted.id}")


async def _schedule_release(
    request: Request, principal: Principal, values: dict[str, str]
) -> Response:
    """A release with a time: a plan of that one item, which starts it then (after the
    approval the environment asks for); its page follows it."""
    try:
        body = PlanIn(
            environment=values.get("environment", ""),
            items=[{"service": values.get("service", ""), "version": values.get("version", "")}],
            description=values.get("description", ""),
            override_reason=values.get("override_reason", ""),
            scheduled_at=utc_time(values["scheduled_at"], "scheduled_at"),
        )
        plan = await plan_service.create(api_of(request), principal, body)
    except (ValidationError, FabuError) as exc:
        return await _new_release_page(request, principal, values, item_errors(exc))
    return back(f"/plans/{plan.id}")


def item_errors(exc: ValidationError | FabuError) -> dict[str, str]:
    """A one-item plan's errors at the release form's fields (``items.0.version`` at
    ``version``)."""
    errors = form_errors(exc)
    if isinstance(exc, ValidationError):
        errors = {}
        for error in exc.errors():
            where = [str(p) for p in error["loc"]]
            errors.setdefault(where[-1] if where else "", error["msg"])
    return {k.rsplit(".", 1)[-1] if k.startswith("items.") else k: v for k, v in errors.items()}


@router.get("/releases/{release_id}")
async def release(request: Request, release_id: str, principal: Viewer) -> Response:
    api = api_of(request)
    try:
        found = await release_service.get(api, principal, release_id)
    except FabuError as exc:
        return problem(request, principal, exc)
    actions, good, env = await asyncio.gather(
        release_service.actions(api, principal, found),
        release_service.last_good(api, principal, found),
        _environment(api, principal, found.environment),
    )
    if good is not None and "rollback" not in await release_service.actions(api, principal, good):
        good = None
    current, links = await asyncio.gather(
        release_service.running(api, principal, found.service, found.environment),
        _links(api, principal, found),
    )
    if current is not None and current.id == found.id:
        actions = [a for a in actions if a != "rollback"]  # rolling back to it changes nothing
    if good is not None and current is not None and good.id == current.id and not found.started_at:
        good = None  # this one never reached the cluster: the last good one still runs
    timeout_s = found.params.rollout_timeout_s or (env.rollout_timeout_s if env else None)
    waiting = found.state is ReleaseState.AWAITING_APPROVAL
    return render(
        request,
        principal,
        "release.html",
        release=found,
        actions=actions,
        last_good=good,
        links=links,
        canary=canary_view(found),
        analysis=analysis_view(found),
        timeout_s=timeout_s,
        approvers=await release_service.approvers(api, principal, found) if waiting else [],
        review=await _review(api, principal, found) if waiting else None,
        frozen=env.frozen_by(now()) if env else None,
    )


@router.get("/fragments/releases/{release_id}/analysis")
async def analysis_fragment(request: Request, release_id: str, principal: Viewer) -> Response:
    """The release's analysis, read again every few seconds by its page."""
    try:
        found = await release_service.get(api_of(request), principal, release_id)
    except FabuError as exc:
        return problem(request, principal, exc)
    return render(
        request, principal, "_analysis.html", release=found, analysis=analysis_view(found)
    )


async def _environment(api: Api, principal: Principal, name: str) -> Environment | None:
    """The release's environment (None: no longer there)."""
    try:
        return await catalog_service.environment(api, principal, name)
    except NotFound:
        return None


async def _review(api: Api, principal: Principal, found: Release) -> review.Review | None:
    try:
        return await review.review(api, principal, found.id)
    except FabuError:
        return None  # moved on meanwhile: the page shows what it is now


@dataclass(frozen=True)
class Linked:
    """Another release as a page names it: service, version and when, with its id."""

    id: str
    service: str
    version: str
    kind: str
    at: datetime


async def _links(api: Api, principal: Principal, release: Release) -> dict[str, Linked]:
    """The releases this one names (``source_release_id``, ``rollback_of``,
    ``rolled_back_by``), by field, for names and versions instead of ids."""
    fields = {
        "source": release.source_release_id,
        "rollback_of": release.rollback_of,
        "rolled_back_by": release.rolled_back_by,
    }
    wanted = {k: v for k, v in fields.items() if v}
    found = await release_service.summaries(api, principal, list(wanted.values()))
    return {
        k: Linked(id=r.id, service=r.service, version=r.version, kind=r.kind.value, at=r.created_at)
        for k, r in ((k, found.get(v)) for k, v in wanted.items())
        if r is not None
    }


@dataclass(frozen=True)
class CanaryRow:
    """One canary event as the page shows it: ``step`` 1-based among ``total`` canary
    steps (past them: the full rollout), the share asked, and the pods it took."""

    step: int
    total: int
    asked: int
    what: str
    at: datetime
    by: str
    detail: str
    pods: int | None
    # All the service's pods beside the canary's, and the canary's share of them.
    of_pods: int | None
    share: int | None

    @property
    def full(self) -> bool:
        return self.step > self.total


@dataclass(frozen=True)
class CanaryView:
    """Where a canary release is: its step (1-based; ``total`` + 1 is the full rollout),
    the weights asked, and what it waits for when paused (a person, or its timed pause
    ending at ``pause_ends``)."""

    step: int
    total: int
    asked: int
    plan: list[int]
    rows: list[CanaryRow]
    waits_for_person: bool
    pause_s: int | None
    pause_ends: datetime | None
    # The analysis templates judging the paused step.
    judged_by: list[str]

    @property
    def full(self) -> bool:
        return self.step > self.total


def _main_replicas(release: Release) -> int | None:
    """The replicas of the Deployment a canary acts on, as its manifest asks."""
    if not release.manifest:
        return None
    target = canary_target(manifest_objects(release.manifest))
    if target is None:
        return None
    return int((target.get("spec") or {}).get("replicas", 1))


def canary_view(release: Release) -> CanaryView | None:
    """The canary part of the release page (None for a plain rolling update)."""
    if release.canary_step is None and not release.canary:
        return None
    total = len(release.params.steps)
    step = release.canary_step or 0
    main = _main_replicas(release)
    rows = []
    for e in release.canary:
        of_pods = e.replicas + main if e.replicas is not None and main is not None else None
        rows.append(
            CanaryRow(
                step=e.step + 1,
                total=total,
                asked=e.weight,
                what=e.what,
                at=e.at,
                by=e.by,
                detail=e.detail,
                pods=e.replicas,
                of_pods=of_pods,
                share=round(100 * (e.replicas or 0) / of_pods) if of_pods else None,
            )
        )
    pause_s, pause_ends, person, judged_by = None, None, False, []
    if release.state is ReleaseState.PAUSED and release.in_canary:
        pause_s = release.params.steps[step].pause_s
        healthy = [e.at for e in release.canary if e.what == "healthy" and e.step == step]
        judged_by = release.params.steps[step].analysis
        if judged_by and inconclusive(release, step):
            # Its analysis was inconclusive: a person decides now, whatever its pause.
            judged_by, pause_s = [], None
        person = pause_s is None and not judged_by
        if pause_s is not None and healthy:
            pause_ends = healthy[-1] + timedelta(seconds=pause_s)
    return CanaryView(
        step=step + 1,
        total=total,
        asked=release.params.steps[step].weight if step < total else 100,
        plan=[s.weight for s in release.params.steps] + [100],
        rows=rows,
        waits_for_person=person,
        pause_s=pause_s,
        pause_ends=pause_ends,
        judged_by=judged_by,
    )


@router.get("/releases/{release_id}/rollback")
async def rollback_page(request: Request, release_id: str, principal: Releaser) -> Response:
    api = api_of(request)
    try:
        found, _, env = await release_service.may(api, principal, Action.ROLLBACK, release_id)
        diff = await release_service.rollback_preview(api, principal, release_id)
    except FabuError as exc:
        return problem(request, principal, exc)
    return render(
        request, principal, "rollback.html", release=found, diff=diff, frozen=env.frozen_by(now())
    )


@router.get("/releases/{release_id}/redeploy")
async def redeploy_page(request: Request, release_id: str, principal: Releaser) -> Response:
    """What redeploying a release does, and what the person confirms first."""
    api = api_of(request)
    try:
        found, _, env = await release_service.may(api, principal, Action.REDEPLOY, release_id)
    except FabuError as exc:
        return problem(request, principal, exc)
    return render(
        request,
        principal,
        "redeploy.html",
        release=found,
        confirm=actions_matrix.confirmation(Action.REDEPLOY, found),
        running=await release_service.running(api, principal, found.service, found.environment),
        environment=env,
        frozen=env.frozen_by(now()),
    )


@router.post("/releases/{release_id}/{action}")
async def release_action(
    request: Request, release_id: str, action: str, principal: Releaser
) -> Response:
    values = await form(request)
    api = api_of(request)
    act = ActionIn(
        description=values.get("description", ""),
        override_reason=values.get("override_reason", ""),
        confirmed=values.get("confirmed") == "yes",
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
