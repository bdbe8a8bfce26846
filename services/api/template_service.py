"""Shared templates, between the HTTP edges and the stores: the JSON routes and the UI
pages call these."""

import difflib
from typing import Any

from services.api.access import Permission, Principal, need
from services.api.context import Api
from services.api.releasing import Starter, fitting, sample_params, start
from services.api.schemas import (
    ActionIn,
    Impact,
    Queued,
    ServiceImpact,
    TemplateContentIn,
    TemplateIn,
)
from shared.cluster.manifest import PRUNE_ANNOTATION
from shared.errors import Conflict, FabuError, Invalid, NotFound, TransientError, Unavailable
from shared.ids import ReleaseId, TemplateId
from shared.messaging.messages import TemplateChanged
from shared.models.base import now
from shared.models.catalog import ServiceConfig, Template
from shared.models.parameters import SchemaError, check_schema, told
from shared.models.release import ReleaseKind
from shared.store.catalog import Catalog
from shared.store.mongo import new_id
from shared.templating.render import RenderError
from shared.templating.sandbox import Renderers
from shared.templating.sources import Remotes
from shared.templating.versions import misfits, read_checked, render_with


async def checked(
    renderers: Renderers, content: str, parameters: dict[str, Any] | None = None
) -> None:
    """422 unless the content parses and the parameters are a schema Fabu can use."""
    try:
        await renderers.check(content)
    except RenderError as exc:
        raise Invalid(f"content: {exc}", field="content") from exc
    if parameters is not None:
        try:
            check_schema(parameters)
        except SchemaError as exc:
            raise Invalid(str(exc), field="parameters") from exc


async def _found(catalog: Catalog, template_id: str, version: int | None = None) -> Template:
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
    current = await _found(api.catalog, template_id)
    if current.source is not None:
        raise Conflict(
            f"template {template_id!r} is read from {current.source.type}; change it there"
        )
    # Left out of the body, the parameters stay as they are.
    parameters = body.parameters if "parameters" in body.model_fields_set else current.parameters
    await checked(api.renderers, body.content, parameters)
    if (body.content, parameters) == (current.content, current.parameters):
        return current
    new = current.model_copy(
        update={
            "version": current.version + 1,
            "content": body.content,
            "parameters": parameters,
            "created_at": now(),
            "author": principal.name,
        }
    )
    await api.catalog.add_template(new)
    await api.audit.record(
        principal.name, "template.update", f"template/{template_id}", before=current, after=new
    )
    return new


async def _impact(api: Api, config: ServiceConfig, old: Template, new: Template) -> ServiceImpact:
    service, env, latest = (
        await api.catalog.service(config.service),
        await api.catalog.environment(config.environment),
        await api.releases.latest(config.service, config.environment),
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
    unfit = misfits(new, config.params, api.secrets)
    if unfit:
        return ServiceImpact(
            service=config.service,
            environment=config.environment,
            version=version,
            diff="",
            error=f"its config does not fit version {new.version}: {told(unfit)}; "
            "releasing it is refused until the config is fixed",
            problems=unfit,
        )
    try:
        rendered_before = await render_with(api.renderers, old, config.params, params, api.secrets)
        rendered_after = await render_with(api.renderers, new, config.params, params, api.secrets)
    except RenderError as exc:
        return ServiceImpact(
            service=config.service,
            environment=config.environment,
            version=version,
            diff="",
            error=str(exc),
        )
    diff = difflib.unified_diff(
        rendered_before.shown.splitlines(keepends=True),
        rendered_after.shown.splitlines(keepends=True),
        f"version {old.version}",
        f"version {new.version}",
    )
    kept = {f"{o['kind']}/{o['metadata']['name']}" for o in rendered_after.objects}
    dropped = [
        f"{o['kind']}/{o['metadata']['name']}"
        for o in rendered_before.objects
        if (o["metadata"].get("annotations") or {}).get(PRUNE_ANNOTATION) != "false"
    ]
    return ServiceImpact(
        service=config.service,
        environment=config.environment,
        version=version,
        diff="".join(diff),
        prune=sorted(key for key in dropped if key not in kept),
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
    new = await _found(api.catalog, template_id, to_version)
    old = await _found(api.catalog, template_id, from_version or max(new.version - 1, 1))
    configs = await api.catalog.configs_using(TemplateId(template_id))
    return Impact(
        template_id=template_id,
        from_version=old.version,
        to_version=new.version,
        services=[await _impact(api, c, old, new) for c in configs],
    )


async def create(api: Api, principal: Principal, body: TemplateIn) -> Template:
    """A template kept in Fabu (``content``) or read from GitLab or Git now (``source``)."""
    need(principal, Permission.EDIT_CONFIG)
    template_id = TemplateId(new_id())
    if body.source is None:
        assert body.content is not None  # noqa: S101 - narrows the type: TemplateIn holds content or source
        await checked(api.renderers, body.content, body.parameters)
        template = Template(
            id=template_id,
            name=body.name,
            content=body.content,
            parameters=body.parameters,
            author=principal.name,
        )
    else:
        remotes = Remotes.of(api.settings)
        try:
            found = await read_checked(remotes, api.renderers, body.source)
        except RenderError as exc:
            raise Invalid(f"source: {exc}", field="source") from exc
        except TransientError as exc:
            raise Unavailable(f"source: {exc.message}") from exc
        except FabuError as exc:
            raise Invalid(f"source: {exc.message}", field="source") from exc
        template = Template(
            id=template_id,
            name=body.name,
            content=found.content,
            parameters=found.parameters,
            source=body.source,
            commit_sha=found.commit_sha,
            synced_at=now(),
            author=principal.name,
        )
    await api.catalog.add_template(template)
    await api.audit.record(
        principal.name, "template.create", f"template/{template.id}", after=template
    )
    return template


async def templates(api: Api, principal: Principal) -> list[Template]:
    need(principal, Permission.VIEW)
    return await api.catalog.templates()


async def template(
    api: Api, principal: Principal, template_id: str, version: int | None = None
) -> Template:
    need(principal, Permission.VIEW)
    return await _found(api.catalog, template_id, version)


async def versions(api: Api, principal: Principal, template_id: str) -> list[Template]:
    """Every version of the template, each with its content."""
    need(principal, Permission.VIEW)
    await _found(api.catalog, template_id)
    return await api.catalog.template_versions(TemplateId(template_id))


async def sync_all(api: Api, principal: Principal) -> None:
    """Have the renderer read every template from its source again."""
    need(principal, Permission.EDIT_CONFIG)
    await api.bus.publish(api.bus.subjects.template_changed, TemplateChanged(everything=True))
    await api.audit.record(principal.name, "template.sync", "template/*")


async def release_all(
    api: Api, principal: Principal, template_id: str, body: ActionIn | None = None
) -> list[Queued]:
    """Release the current version of the template to every service and environment using
    it, each at the version it runs now (services never released are skipped)."""
    need(principal, Permission.RELEASE)
    template = await _found(api.catalog, template_id)
    starter = Starter(api.releases, api.bus, api.audit, principal, api.catalog)
    queued = []
    for config in await api.catalog.configs_using(template.id):
        latest = await api.releases.latest(config.service, config.environment)
        env = await api.catalog.environment(config.environment)
        service = await api.catalog.service(config.service)
        if latest is None or env is None or service is None:
            queued.append(
                Queued(
                    service=config.service,
                    environment=config.environment,
                    release_id=None,
                    error="never released here: nothing to release again",
                )
            )
            continue
        description = (body.description if body else "") or (
            f"template {template.name} version {template.version}"
        )
        release = latest.again(
            ReleaseId(new_id()), ReleaseKind.DEPLOY, description, env.namespace, template, config
        )
        try:
            fitting(template, config, api.secrets)
            accepted = await start(
                release, env, service, starter, body.override_reason if body else ""
            )
        except FabuError as exc:
            queued.append(
                Queued(
                    service=config.service,
                    environment=config.environment,
                    release_id=None,
                    error=exc.message,
                )
            )
            continue
        queued.append(
            Queued(service=config.service, environment=config.environment, release_id=accepted.id)
        )
    return queued
