"""Renderer: ``release.requested`` in, ``release.rendered`` out.

Idempotency key: the release's state (the ``render`` transition, claimed
once). A redelivered message for a release already rendered only
republishes ``release.rendered`` (de-duplicated by its event id), which covers
a crash between the write and the publish. A template that does not render
fails the release with the template's line; nothing is applied.
"""

from collections.abc import Awaitable, Callable

from shared.messaging.bus import Msg
from shared.messaging.messages import ReleaseRequested
from shared.models.release import ReleaseKind
from shared.models.release_parts import Owned, Workload
from shared.release import lifecycle
from shared.release.lifecycle import AS_RENDERER
from shared.release.machine import RENDER, Failed, ReleaseState, Rendered
from shared.release.stages import fail_release
from shared.secrets import SecretError, Secrets
from shared.templating.render import ReleaseParams, RenderError
from shared.templating.versions import render_with
from shared.worker import Context


async def setup(ctx: Context) -> Callable[[Msg], Awaitable[None]]:
    async def handle(msg: Msg) -> None:
        await handle_requested(ctx, ReleaseRequested.model_validate_json(msg.data))

    return handle


async def handle_requested(ctx: Context, event: ReleaseRequested) -> None:
    release = await lifecycle.pending(
        ctx.releases, ctx.bus, event.release_id, AS_RENDERER, ReleaseState.REQUESTED
    )
    if release is None:
        return
    template = await ctx.catalog.template(release.template_id, release.template_version)
    if template is None:
        reason = f"template {release.template_id!r} version {release.template_version} not found"
        await fail_release(ctx, release, AS_RENDERER, Failed(reason=reason))
        return
    params = ReleaseParams.of(release)
    # A redeploy replaces the pods even when nothing else changed.
    restart = release.created_at if release.kind is ReleaseKind.REDEPLOY else None
    secrets = Secrets(ctx.settings.secret_key)
    try:
        rendered = await render_with(
            ctx.renderers, template, release.params, params, secrets, restart
        )
    except (RenderError, SecretError) as exc:
        reason = exc.message if isinstance(exc, SecretError) else str(exc)
        await fail_release(ctx, release, AS_RENDERER, Failed(reason=reason))
        return
    # With secrets in it, the manifest the cluster gets is kept sealed; the one shown masks them.
    secret = rendered.shown != rendered.manifest
    fields = Rendered(
        manifest=rendered.shown,
        sealed_manifest=secrets.seal(rendered.manifest) if secret else "",
        manifest_sha256=rendered.sha256,
        deployment=rendered.deployment,
        workloads=[Workload(kind=kind, name=name) for kind, name in rendered.workloads],
        inventory=[
            Owned(api_version=o["apiVersion"], kind=o["kind"], name=o["metadata"]["name"])
            for o in rendered.objects
        ],
    )
    await lifecycle.take(ctx.releases, ctx.bus, release, RENDER, AS_RENDERER, fields)
