"""Template sync: ``template.changed`` in; new template versions stored.

Every template whose source the change touches (the GitLab project and
branch of a push or merge, one of the changed paths: the template's file or
the schema beside it; all of them for a full sync) is read at the change's
commit and stored by :func:`sync_template`. Idempotency key: the content and
the parameters. A version is added only when they differ from the current
one, so a redelivered change adds nothing.
"""

from collections.abc import Awaitable, Callable

import structlog

from shared.messaging.bus import Msg
from shared.messaging.messages import TemplateChanged
from shared.models.catalog import Template
from shared.store.audit import Audit
from shared.templating.sources import SCHEMA_SUFFIX, Remotes
from shared.templating.versions import sync_template
from shared.worker import Context

log = structlog.get_logger()


def touched(template: Template, change: TemplateChanged) -> bool:
    source = template.source
    if source is None:
        return False
    if change.everything:
        return True
    return (
        source.type == "gitlab"
        and source.project in (change.project_id, change.project_path)
        and source.ref == change.ref
        and (
            change.paths is None
            or source.path in change.paths
            or source.path + SCHEMA_SUFFIX in change.paths
        )
    )


async def setup(ctx: Context) -> Callable[[Msg], Awaitable[None]]:
    remotes = Remotes.of(ctx.settings)
    audit = Audit(ctx.mongo)

    async def handle(msg: Msg) -> None:
        change = TemplateChanged.model_validate_json(msg.data)
        for template in await ctx.catalog.templates():
            if touched(template, change):
                synced = await sync_template(
                    ctx.catalog, remotes, ctx.renderers, template, change.sha or None
                )
                log.info(
                    "template synced",
                    template_id=template.id,
                    version=synced.version,
                    error=synced.error or None,
                )
                if synced.version != template.version:
                    assert template.source is not None  # noqa: S101 - narrows the type: touched() only takes sourced templates
                    await audit.record(
                        f"sync:{template.source.type}",
                        "template.update",
                        f"template/{template.id}",
                        before=template,
                        after=synced,
                        note=f"commit {synced.commit_sha}",
                    )

    return handle
