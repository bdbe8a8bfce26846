"""Renderer: ``release.requested`` in, ``release.rendered`` out.

Idempotency key: the release's state (the ``render`` transition, claimed
once). A redelivered message for a release already rendered only
republishes ``release.rendered`` (de-duplicated by its event id), which covers
a crash between the write and the publish. A template that does not render
fails the release with the template's line; nothing is applied.
"""

from collections.abc import Awaitable, Callable

from shared import lifecycle
from shared.bus import Msg
from shared.lifecycle import RENDER, RENDERER, Failed, Rendered
from shared.messages import ReleaseRequested
from shared.models import Owned, ReleaseKind, ReleaseState, Workload
from shared.render import ReleaseParams, RenderError, render
from shared.worker import Context, fail_release, pending_release


async def setup(ctx: Context) -> Callable[[Msg], Awaitable[None]]:
    async def handle(msg: Msg) -> None:
        await handle_requested(ctx, ReleaseRequested.model_validate_json(msg.data))

    return handle


async def handle_requested(ctx: Context, event: ReleaseRequested) -> None:
    release = await pending_release(ctx, event.release_id, RENDERER, ReleaseState.REQUESTED)
    if release is None:
        return
    template = await ctx.catalog.template(release.template_id, release.template_version)
    if template is None:
        reason = f"template {release.template_id!r} version {release.template_version} not found"
        await fail_release(ctx, release, RENDERER, Failed(reason=reason))
        return
    params = ReleaseParams(
        release_id=release.id,
        service=release.service,
        version=release.version,
        image=release.image,
        environment=release.environment,
        namespace=release.namespace,
    )
    # A redeploy replaces the pods even when nothing else changed.
    restart = release.created_at if release.kind is ReleaseKind.REDEPLOY else None
    try:
        rendered = render(template.content, release.params, params, restarted_at=restart)
    except RenderError as exc:
        await fail_release(ctx, release, RENDERER, Failed(reason=str(exc)))
        return
    fields = Rendered(
        manifest=rendered.manifest,
        manifest_sha256=rendered.sha256,
        deployment=rendered.deployment,
        workloads=[Workload(kind=kind, name=name) for kind, name in rendered.workloads],
        inventory=[
            Owned(api_version=o["apiVersion"], kind=o["kind"], name=o["metadata"]["name"])
            for o in rendered.objects
        ],
    )
    await lifecycle.take(ctx.releases, ctx.bus, release, RENDER, RENDERER, fields)
