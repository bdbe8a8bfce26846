"""Where a service's release notifications go, per environment, and each environment's default."""

import urllib.parse

from fastapi import APIRouter

from services.api.access import ConfigAdmin, Principal
from services.api.deps import AuditDep, CatalogDep, SettingsDep
from shared import egress
from shared.errors import Invalid, NotFound
from shared.models import Channel
from shared.secrets import MASK, Secrets
from shared.store.audit import Audit
from shared.store.catalog import Catalog

router = APIRouter()


def _masked_url(url: str) -> str:
    """A robot URL without its token: scheme, host and path, the query masked."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path
    # Feishu and WeCom put the token in the path's last part.
    head, _, tail = path.rpartition("/")
    if len(tail) >= 16:
        path = f"{head}/{MASK}"
    query = f"?{MASK}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}{path}{query}"


def _shown(channel: Channel, secrets: Secrets) -> Channel:
    url = _masked_url(secrets.open(channel.url)) if channel.url else ""
    return channel.model_copy(update={"url": url, "secret": MASK if channel.secret else ""})


async def _exists(catalog: Catalog, service: str | None, environment: str) -> None:
    if service is not None and await catalog.service(service) is None:
        raise NotFound(f"service {service!r} not found")
    if await catalog.environment(environment) is None:
        raise NotFound(f"environment {environment!r} not found")


async def _put(
    catalog: Catalog,
    settings: SettingsDep,
    audit: Audit,
    editor: Principal,
    service: str,
    environment: str,
    body: list[Channel],
) -> list[Channel]:
    for index, channel in enumerate(body):
        if channel.url.startswith(("http://", "https://")):
            try:
                await egress.check_url(channel.url, settings.deny)
            except egress.EgressDenied as exc:
                raise Invalid(f"[{index}].url: {exc.message}") from exc
    secrets = Secrets(settings.secret_key)
    sealed = [
        c.model_copy(update={"url": secrets.seal(c.url), "secret": secrets.seal(c.secret)})
        for c in body
    ]
    before = await catalog.channels(service, environment)
    await catalog.put_channels(service, environment, sealed)
    shown = [_shown(c, secrets) for c in sealed]
    await audit.record(
        editor.name,
        "notifications.update",
        f"notifications/{service}/{environment}",
        before=before,
        after=shown,
    )
    return shown


@router.put("/services/{name}/notifications/{environment}")
async def put_service_channels(
    name: str,
    environment: str,
    body: list[Channel],
    catalog: CatalogDep,
    settings: SettingsDep,
    audit: AuditDep,
    editor: ConfigAdmin,
) -> list[Channel]:
    """Replace the service's channels there (an empty list: no notifications at all)."""
    await _exists(catalog, name, environment)
    return await _put(catalog, settings, audit, editor, name, environment, body)


@router.get("/services/{name}/notifications/{environment}")
async def get_service_channels(
    name: str, environment: str, catalog: CatalogDep, settings: SettingsDep
) -> list[Channel]:
    """The channels in force (the service's, else the environment's default), secrets masked."""
    await _exists(catalog, name, environment)
    channels = await catalog.channels(name, environment) or []
    return [_shown(c, Secrets(settings.secret_key)) for c in channels]


@router.put("/environments/{name}/notifications")
async def put_default_channels(
    name: str,
    body: list[Channel],
    catalog: CatalogDep,
    settings: SettingsDep,
    audit: AuditDep,
    editor: ConfigAdmin,
) -> list[Channel]:
    """The default for services that set none in this environment."""
    await _exists(catalog, None, name)
    return await _put(catalog, settings, audit, editor, "*", name, body)


@router.get("/environments/{name}/notifications")
async def get_default_channels(
    name: str, catalog: CatalogDep, settings: SettingsDep
) -> list[Channel]:
    await _exists(catalog, None, name)
    channels = await catalog.channels("*", name) or []
    return [_shown(c, Secrets(settings.secret_key)) for c in channels]
