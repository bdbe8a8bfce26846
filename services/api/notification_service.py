"""Where a service's release notifications go, between the HTTP edges and the stores."""

import urllib.parse

from services.api.access import Permission, Principal, need
from services.api.context import Api
from shared.errors import Invalid, NotFound
from shared.models.notifications import Channel
from shared.outside import egress
from shared.secrets import MASK, Secrets
from shared.store.catalog import Catalog


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


async def put(
    api: Api, principal: Principal, service: str | None, environment: str, body: list[Channel]
) -> list[Channel]:
    """Replace the channels of ``service`` in ``environment`` (None: the environment's
    default), URLs checked against the egress deny list and secrets sealed."""
    need(principal, Permission.EDIT_CONFIG)
    await _exists(api.catalog, service, environment)
    catalog, settings, audit, key = api.catalog, api.settings, api.audit, service or "*"
    for index, channel in enumerate(body):
        if channel.url.startswith(("http://", "https://")):
            try:
                await egress.check_url(channel.url, settings.deny)
            except egress.EgressDenied as exc:
                raise Invalid(f"[{index}].url: {exc.message}", field=f"[{index}].url") from exc
    secrets = Secrets(settings.secret_key)
    sealed = [
        c.model_copy(update={"url": secrets.seal(c.url), "secret": secrets.seal(c.secret)})
        for c in body
    ]
    before = await catalog.channels(key, environment)
    await catalog.put_channels(key, environment, sealed)
    shown = [_shown(c, secrets) for c in sealed]
    await audit.record(
        principal.name,
        "notifications.update",
        f"notifications/{key}/{environment}",
        before=before,
        after=shown,
    )
    return shown


async def get(
    api: Api, principal: Principal, service: str | None, environment: str
) -> list[Channel]:
    """The channels in force (the service's, else the environment's default; None: the
    default itself), secrets masked."""
    need(principal, Permission.VIEW)
    await _exists(api.catalog, service, environment)
    channels = await api.catalog.channels(service or "*", environment) or []
    return [_shown(c, Secrets(api.settings.secret_key)) for c in channels]


async def own(api: Api, principal: Principal, service: str, environment: str) -> bool:
    """Whether the service sets its own channels there (else the environment's default
    applies)."""
    need(principal, Permission.VIEW)
    return await api.catalog.own_channels(service, environment)


async def _opened(api: Api, service: str | None, environment: str) -> list[Channel]:
    """The channels in force, their secrets opened in memory to be sealed again (never
    shown)."""
    stored = await api.catalog.channels(service or "*", environment) or []
    return [
        c.model_copy(update={"url": api.secrets.open(c.url), "secret": api.secrets.open(c.secret)})
        for c in stored
    ]


async def add(
    api: Api, principal: Principal, service: str | None, environment: str, channel: Channel
) -> list[Channel]:
    """Add a channel to those in force (the service's own, else the environment's
    default; None: the default itself): the service then has channels of its own."""
    need(principal, Permission.EDIT_CONFIG)
    plain = await _opened(api, service, environment)
    return await put(api, principal, service, environment, [*plain, channel])


async def remove(
    api: Api, principal: Principal, service: str | None, environment: str, index: int
) -> list[Channel]:
    """Remove the ``index``-th channel of those in force (as for :func:`add`)."""
    need(principal, Permission.EDIT_CONFIG)
    plain = await _opened(api, service, environment)
    if not 0 <= index < len(plain):
        raise Invalid(f"channel_remove: there is no channel {index}", field="channel_remove")
    del plain[index]
    return await put(api, principal, service, environment, plain)


async def reset(api: Api, principal: Principal, service: str, environment: str) -> list[Channel]:
    """Drop the service's own channels there: the environment's default applies again."""
    need(principal, Permission.EDIT_CONFIG)
    await _exists(api.catalog, service, environment)
    before = await api.catalog.drop_channels(service, environment)
    if before is not None:
        await api.audit.record(
            principal.name,
            "notifications.reset",
            f"notifications/{service}/{environment}",
            before=[_shown(c, Secrets(api.settings.secret_key)) for c in before],
        )
    return await get(api, principal, service, environment)
