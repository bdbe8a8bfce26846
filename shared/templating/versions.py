"""Reading a template from its source, and storing what changed as a new version."""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from shared.errors import FabuError, TransientError
from shared.models.base import now
from shared.models.catalog import BaseParams, Template, TemplateSource
from shared.models.parameters import SchemaError, check_schema, hidden_forms, opened, problems
from shared.secrets import Secrets
from shared.store.catalog import Catalog
from shared.templating.render import ReleaseParams, Rendered, RenderError
from shared.templating.sandbox import Renderers
from shared.templating.sources import SCHEMA_SUFFIX, Remotes, SourceError, SourceFile, fetch

MAX_CHARS = 200_000


@dataclass(frozen=True)
class Found:
    """A template read from its source: the file, and the schema beside it (if any)."""

    content: str
    commit_sha: str
    parameters: dict[str, Any] | None


async def read_checked(
    remotes: Remotes, renderers: Renderers, source: TemplateSource, ref: str | None = None
) -> Found:
    """The file at ``ref`` (default: the source's branch), parsed as a template, with its
    parameters from ``<file>.schema.json`` beside it at the same commit.

    Raises SourceError (cannot be read, or the schema is not one Fabu can use),
    RenderError (does not parse) or TransientError (GitLab or git unreachable: try again).
    """
    found = await fetch(source, remotes, ref)
    if len(found.content) > MAX_CHARS:
        raise SourceError(f"{source.path} is longer than {MAX_CHARS:,} characters")
    await renderers.check(found.content)
    return Found(found.content, found.commit_sha, _parameters(source, found))


def _parameters(source: TemplateSource, found: SourceFile) -> dict[str, Any] | None:
    if found.schema is None:
        return None
    name = source.path + SCHEMA_SUFFIX
    try:
        parameters = json.loads(found.schema)
    except ValueError as exc:
        raise SourceError(f"{name} is not JSON: {exc}") from exc
    try:
        check_schema(parameters)
    except SchemaError as exc:
        raise SourceError(f"{name}: {exc}") from exc
    return cast(dict[str, Any], parameters)


async def sync_template(
    catalog: Catalog,
    remotes: Remotes,
    renderers: Renderers,
    template: Template,
    ref: str | None = None,
) -> Template:
    """Read ``template`` from its source again and store the outcome; returns it as it now is.

    Same content: only the sync is recorded. A file that cannot be read or
    does not parse: the error is recorded and the current version stays in
    use. Otherwise the content becomes the next version.
    """
    assert template.source is not None  # noqa: S101 - narrows the type: only sourced templates are synced
    at = now()
    try:
        found = await read_checked(remotes, renderers, template.source, ref)
    except TransientError:
        raise
    except (FabuError, RenderError) as exc:
        error = exc.message if isinstance(exc, FabuError) else str(exc)
        fields: dict[str, object] = {"error": error, "error_sha": ref or "", "synced_at": at}
        await catalog.mark_template(template.id, **fields)
        return template.model_copy(update=fields)
    if (found.content, found.parameters) == (template.content, template.parameters):
        fields = {"synced_at": at, "commit_sha": found.commit_sha, "error": "", "error_sha": ""}
        await catalog.mark_template(template.id, **fields)
        return template.model_copy(update=fields)
    new = template.model_copy(
        update={
            "version": template.version + 1,
            "content": found.content,
            "parameters": found.parameters,
            "commit_sha": found.commit_sha,
            "created_at": at,
            "author": f"{template.source.type} sync",
            "synced_at": at,
            "error": "",
            "error_sha": "",
        }
    )
    await catalog.add_template(new)
    return new


async def render_with(
    renderers: Renderers,
    template: Template,
    params: BaseParams,
    release: ReleaseParams,
    secrets: Secrets,
    restarted_at: datetime | None = None,
) -> Rendered:
    """Render a template version with a release config's parameters, their secrets
    opened for the manifest and masked in what is shown (SecretError if one cannot be
    opened, RenderError if it does not render)."""
    values, plains = opened(params.template_values(), secrets.open)
    return await renderers.render(
        template.content,
        params.with_values(values),
        release,
        restarted_at,
        parameters=template.parameters,
        hidden=hidden_forms(plains),
    )


def misfits(template: Template, params: BaseParams, secrets: Secrets) -> dict[str, str]:
    """Why a config's values do not fit a template version's schema, by path."""
    values, _ = opened(params.template_values(), secrets.open)
    return problems(template.parameters, values)
