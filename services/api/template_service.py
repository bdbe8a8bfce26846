"""Shared templates, between the HTTP edges and the stores: the JSON routes and the UI
pages call these."""

import difflib

from services.api.access import Permission, Principal, need
from services.api.context import Api
from services.api.releasing import sample_params
from services.api.schemas import Impact, ServiceImpact, TemplateContentIn
from shared.errors import Conflict, Invalid, NotFound
from shared.ids import TemplateId
from shared.models import ServiceConfig, Template
from shared.render import RenderError, check, render
from shared.store.catalog import Catalog
from shared.store.releases import Releases


def checked(content: str) -> None:
    try:
        check(content)
    except RenderError as exc:
        raise Invalid(f"content: {exc}", field="content") from exc


async def found(catalog: Catalog, template_id: str, version: int | None = None) -> Template:
    template = await catalog.template(TemplateId(template_id), version)
    if template is None:
        what = f"version {version} of template" if version else "template"
        raise NotFound(f"{what} {template_id!r} not found")
    return template


async def change(
    api: Api, principal: Principal, template_id: str, body: TemplateContentIn
) -> Template:
    """The next version of a template kept in Fabu (one read from a source changes there)."""
    need(principal, Permission.EDIT_CONFIG)
    current = await found(api.catalog, template_id)
    if current.source is not None:
        raise Conflict(
            f"template {template_id!r} is read from {current.source.type}; change it there"
        )
    checked(body.content)
    if body.content == current.content:
        return current
    new = current.model_copy(update={"version": current.version + 1, "content": body.content})
    await api.catalog.add_template(new)
    await api.audit.record(
        principal.name, "template.update", f"template/{template_id}", before=current, after=new
    )
    return new


async def _impact(
    catalog: Catalog, releases: Releases, config: ServiceConfig, old: Template, new: Template
) -> ServiceImpact:
    service, env, latest = (
        await catalog.service(config.service),
        await catalog.environment(config.environment),
        await releases.latest(config.service, config.environment),
    )
    version = latest.version if latest else None
    if service is None or env is None:
        return ServiceImpact(
            service=config.service,
            environment=config.environment,
            version=version,
            diff="",
            error="the service or the environment no longer exists",
        )
    params = sample_params(
        service.name, service.image_repository, env.name, env.namespace, version or "0.0.0-preview"
    )
    try:
        before = render(old.content, config.params, params).manifest
        after = render(new.content, config.params, params).manifest
    except RenderError as exc:
        return ServiceImpact(
            service=config.service,
            environment=config.environment,
            version=version,
            diff="",
            error=str(exc),
        )
    diff = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        f"version {old.version}",
        f"version {new.version}",
    )
    return ServiceImpact(
        service=config.service, environment=config.environment, version=version, diff="".join(diff)
    )


async def impact(
    api: Api,
    principal: Principal,
    template_id: str,
    from_version: int | None = None,
    to_version: int | None = None,
) -> Impact:
    """Every service and environment whose config uses the template, with the manifest diff
    between two of its versions (default: the previous and the current one)."""
    need(principal, Permission.VIEW)
    new = await found(api.catalog, template_id, to_version)
    old = await found(api.catalog, template_id, from_version or max(new.version - 1, 1))
    configs = await api.catalog.configs_using(TemplateId(template_id))
    return Impact(
        template_id=template_id,
        from_version=old.version,
        to_version=new.version,
        services=[await _impact(api.catalog, api.releases, c, old, new) for c in configs],
    )
