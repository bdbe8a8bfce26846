"""Reading a template from its source, and storing what changed as a new version."""

from shared.errors import FabuError, TransientError
from shared.models import Template, TemplateSource, now
from shared.render import RenderError, check
from shared.sources import Remotes, SourceError, SourceFile, fetch
from shared.store.catalog import Catalog

MAX_CHARS = 200_000


async def read_checked(
    remotes: Remotes, source: TemplateSource, ref: str | None = None
) -> SourceFile:
    """The file at ``ref`` (default: the source's branch), parsed as a template.

    Raises SourceError (cannot be read), RenderError (does not parse) or
    TransientError (GitLab or git unreachable: try again).
    """
    found = await fetch(source, remotes, ref)
    if len(found.content) > MAX_CHARS:
        raise SourceError(f"{source.path} is longer than {MAX_CHARS:,} characters")
    check(found.content)
    return found


async def sync_template(
    catalog: Catalog, remotes: Remotes, template: Template, ref: str | None = None
) -> Template:
    """Read ``template`` from its source again and store the outcome; returns it as it now is.

    Same content: only the sync is recorded. A file that cannot be read or
    does not parse: the error is recorded and the current version stays in
    use. Otherwise the content becomes the next version.
    """
    assert template.source is not None  # noqa: S101 - narrows the type: only sourced templates are synced
    at = now()
    try:
        found = await read_checked(remotes, template.source, ref)
    except TransientError:
        raise
    except (FabuError, RenderError) as exc:
        error = exc.message if isinstance(exc, FabuError) else str(exc)
        fields: dict[str, object] = {"error": error, "error_sha": ref or "", "synced_at": at}
        await catalog.mark_template(template.id, **fields)
        return template.model_copy(update=fields)
    if found.content == template.content:
        fields = {"synced_at": at, "commit_sha": found.commit_sha, "error": "", "error_sha": ""}
        await catalog.mark_template(template.id, **fields)
        return template.model_copy(update=fields)
    new = template.model_copy(
        update={
            "version": template.version + 1,
            "content": found.content,
            "commit_sha": found.commit_sha,
            "created_at": at,
            "synced_at": at,
            "error": "",
            "error_sha": "",
        }
    )
    await catalog.add_template(new)
    return new
