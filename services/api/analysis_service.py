"""Analysis templates (``shared.models.analysis``), between the HTTP edges and the
store: the JSON routes and the UI pages call these. Config-admins own them; every
role reads them. Release configs name them in their canary steps and blue-green
settings, so one that a config names is not deleted."""

from pydantic import ValidationError

from services.api.access import Permission, Principal, need
from services.api.context import Api
from services.api.schemas import (
    AnalysisTemplateChange,
    AnalysisTemplateIn,
    AnalysisTemplateView,
)
from shared.errors import Conflict, Invalid, found
from shared.models.analysis import AnalysisTemplate
from shared.models.base import now
from shared.models.catalog import ServiceConfig


def _named_by(configs: list[ServiceConfig]) -> dict[str, list[str]]:
    """Each analysis template's users: the configs naming it, as ``service/environment``."""
    users: dict[str, list[str]] = {}
    for config in configs:
        for name in config.params.analysis_names():
            users.setdefault(name, []).append(f"{config.service}/{config.environment}")
    return users


def _view(template: AnalysisTemplate, users: dict[str, list[str]]) -> AnalysisTemplateView:
    return AnalysisTemplateView(**template.model_dump(), used_by=users.get(template.name, []))


def _stored(body: AnalysisTemplateIn, version: int, principal: Principal) -> AnalysisTemplate:
    """What is stored for ``body``: 422 naming the first metric whose name another took."""
    seen: dict[str, int] = {}
    for i, metric in enumerate(body.metrics):
        if metric.name in seen:
            field = f"metrics[{i}].name"
            raise Invalid(
                f"{field}: metric {seen[metric.name] + 1} is named {metric.name!r} already; "
                "each metric needs a name of its own",
                field=field,
            )
        seen[metric.name] = i
    try:
        return AnalysisTemplate(
            name=body.name,
            description=body.description,
            metrics=body.metrics,
            version=version,
            updated_by=principal.name,
            updated_at=now(),
        )
    except ValidationError as exc:
        # The model's own rules over the whole template, beyond those of its fields.
        said = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise Invalid(said, field=said.partition(":")[0]) from exc


async def templates(api: Api, principal: Principal) -> list[AnalysisTemplateView]:
    """Every analysis template in name order, each with the configs naming it."""
    need(principal, Permission.VIEW)
    users = _named_by(await api.catalog.configs())
    return [_view(t, users) for t in await api.catalog.analyses()]


async def template(api: Api, principal: Principal, name: str) -> AnalysisTemplateView:
    need(principal, Permission.VIEW)
    current = found(await api.catalog.analysis(name), f"analysis template {name!r}")
    return _view(current, _named_by(await api.catalog.configs()))


async def create(api: Api, principal: Principal, body: AnalysisTemplateIn) -> AnalysisTemplate:
    """A new analysis template (version 1): 409 when one has its name."""
    need(principal, Permission.EDIT_CONFIG)
    template = _stored(body, 1, principal)
    try:
        await api.catalog.add_analysis(template)
    except Conflict as exc:
        raise Conflict(exc.message, field="name") from exc
    await api.audit.record(
        principal.name, "analysis.create", f"analysis/{template.name}", after=template
    )
    return template


async def change(
    api: Api, principal: Principal, name: str, body: AnalysisTemplateChange
) -> AnalysisTemplate:
    """The next version of an analysis template, over the version the caller read: 409
    when another change came first (nothing is stored then)."""
    need(principal, Permission.EDIT_CONFIG)
    if body.name != name:
        raise Invalid(f"name: {body.name!r} differs from the path's {name!r}", field="name")
    current = found(await api.catalog.analysis(name), f"analysis template {name!r}")
    stale = Conflict(
        f"version: analysis template {name!r} is at version {current.version}, not "
        f"{body.version}: it was changed meanwhile; read it again",
        field="version",
    )
    if body.version != current.version:
        raise stale
    if (body.description, body.metrics) == (current.description, current.metrics):
        return current
    new = _stored(body, current.version + 1, principal)
    if not await api.catalog.replace_analysis(new):
        raise stale
    await api.audit.record(
        principal.name, "analysis.update", f"analysis/{name}", before=current, after=new
    )
    return new


async def delete(api: Api, principal: Principal, name: str) -> AnalysisTemplate:
    """Delete an analysis template no release config names (409 naming those that do).
    Releases that used it keep their own copy."""
    need(principal, Permission.EDIT_CONFIG)
    current = found(await api.catalog.analysis(name), f"analysis template {name!r}")
    users = _named_by(await api.catalog.configs()).get(name, [])
    if users:
        raise Conflict(
            f"analysis template {name!r} is named by the release configs of "
            f"{', '.join(users)}: take it out of their canary steps and blue-green "
            "settings first",
            field="name",
        )
    if not await api.catalog.delete_analysis(name):
        raise Conflict(f"analysis template {name!r} was deleted meanwhile", field="name")
    await api.audit.record(principal.name, "analysis.delete", f"analysis/{name}", before=current)
    return current
