"""What a release not yet applied would do, for whoever approves it: who asked, when and
why, what changes in its config since the release running now, and the manifest diff
against the live objects. Secrets stay masked throughout."""

import asyncio
from datetime import datetime

from pydantic import BaseModel, computed_field

from services.api.access import Permission, Principal, need
from services.api.context import Api
from services.api.diff import ManifestDiff, manifest_diff
from shared.cluster.client import ClusterError
from shared.errors import Conflict, FabuError, NotFound, TransientError, found
from shared.models.parameters import hide
from shared.models.release import Release, ReleaseKind
from shared.release.config_changes import ConfigChange, config_changes
from shared.release.machine import ReleaseState
from shared.templating.render import ReleaseParams, RenderError
from shared.templating.versions import render_with


class Running(BaseModel):
    """The release whose version runs now (None in a review: nothing ran there yet)."""

    id: str
    version: str
    finished_at: datetime | None


class Review(BaseModel):
    """What approving a release would do: who asked, when and why, what changes."""

    release_id: str
    service: str
    environment: str
    state: ReleaseState
    kind: ReleaseKind
    version: str
    operator: str
    description: str
    created_at: datetime
    # A rollback or redeploy: the release it restores or repeats.
    source_release_id: str | None
    running: Running | None
    template: str
    config_changes: list[ConfigChange]
    # The manifest it would apply, secrets masked, and its diff against the live
    # objects; when either cannot be made now, ``diff_error`` says why.
    manifest: str
    diff: ManifestDiff | None
    diff_error: str = ""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def version_change(self) -> str:
        """``1.0.0 → 1.1.0``, or the version alone when nothing runs there yet."""
        return f"{self.running.version} → {self.version}" if self.running else self.version


async def _manifest(api: Api, release: Release) -> tuple[str, str, list[str]]:
    """What the release would apply (for the cluster, as shown) and the texts to hide:
    its manifest once rendered, else rendered now as the renderer would."""
    hidden = release.params.hidden(api.secrets.open)
    if release.manifest:
        return api.secrets.manifest(release), release.manifest, hidden
    template = await api.catalog.template(release.template_id, release.template_version)
    if template is None:
        raise NotFound(
            f"template {release.template_id!r} version {release.template_version} not found"
        )
    params = ReleaseParams.of(release)
    try:
        rendered = await render_with(api.renderers, template, release.params, params, api.secrets)
    except RenderError as exc:
        raise Conflict(f"the release would fail to render: {hide(str(exc), hidden)}") from exc
    return rendered.manifest, rendered.shown, rendered.hidden


async def diff(api: Api, release: Release) -> tuple[str, ManifestDiff | None, str]:
    """The manifest shown, its diff against the live objects, and why either is missing."""
    try:
        manifest, shown, hidden = await _manifest(api, release)
    except FabuError as exc:
        return "", None, exc.message
    env = await api.catalog.environment(release.environment)
    if env is None:
        return shown, None, f"environment {release.environment!r} not found"
    try:
        cluster = await api.clusters.get(env)
        changes = await manifest_diff(cluster, env.namespace, manifest, hidden)
    except (ClusterError, TransientError) as exc:
        return shown, None, f"the cluster of {env.name!r} answered: {exc.message}"
    return shown, changes, ""


def _template(release: Release, before: Release | None, names: dict[str, str]) -> str:
    """The template and version it renders, and the one what runs rendered when another
    (by name; ``names``: template id → name)."""

    def named(r: Release) -> str:
        return f"{names.get(r.template_id, r.template_id)} version {r.template_version}"

    same = before is None or (before.template_id, before.template_version) == (
        release.template_id,
        release.template_version,
    )
    return named(release) if same or before is None else f"{named(before)} → {named(release)}"


async def review(api: Api, principal: Principal, release_id: str) -> Review:
    """What approving (or letting go on) a release not yet applied would do; 409 once it
    reached the cluster (its transcript and manifest say what it did)."""
    need(principal, Permission.VIEW)
    release = found(await api.releases.get(release_id), f"release {release_id!r}")
    if release.started_at is not None or release.state.final:
        raise Conflict(
            f"release {release_id} is {release.state.value}: a review is for a release not "
            "yet applied; its transcript and manifest say what it did"
        )
    before, (manifest, changes, diff_error), template = await asyncio.gather(
        api.releases.running(release.service, release.environment),
        diff(api, release),
        api.catalog.template(release.template_id),
    )
    names: dict[str, str] = {release.template_id: template.name} if template else {}
    return Review(
        release_id=release.id,
        service=release.service,
        environment=release.environment,
        state=release.state,
        kind=release.kind,
        version=release.version,
        operator=release.operator,
        description=release.description,
        created_at=release.created_at,
        source_release_id=release.source_release_id,
        running=Running(id=before.id, version=before.version, finished_at=before.finished_at)
        if before
        else None,
        template=_template(release, before, names),
        config_changes=config_changes(
            before.params if before else None, release.params, api.secrets.open
        ),
        manifest=manifest,
        diff=changes,
        diff_error=diff_error,
    )
