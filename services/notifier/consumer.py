"""Notifier: ``release.completed`` and ``release.failed`` in; email out.

Sends the result to the release config's recipients and records every attempt
on the release under ``notifications["email:<state>"]``. Idempotency key: that
record: an email is claimed before sending and marked sent after, so a
redelivered message sends nothing twice. Transient SMTP errors (4xx replies,
refused or dropped connections, timeouts) are retried with backoff; permanent
ones (5xx) are recorded and not retried.
"""

from collections.abc import Awaitable, Callable
from datetime import timedelta

import aiosmtplib
import structlog
from nats.aio.msg import Msg

from services.notifier.deliver import email
from shared.errors import TransientError
from shared.messages import ReleaseCompleted, ReleaseFailed
from shared.models import Delivery, Release, now
from shared.settings import Settings
from shared.worker import Context

log = structlog.get_logger()
# A claim older than this is taken to be from a notifier that died mid-send.
CLAIM_STALE = timedelta(seconds=60)


async def setup(ctx: Context) -> Callable[[Msg], Awaitable[None]]:
    async def handle(msg: Msg) -> None:
        kind = ReleaseCompleted if msg.subject == ctx.bus.subjects.completed else ReleaseFailed
        event = kind.model_validate_json(msg.data)
        await notify(ctx, event.release_id, msg.metadata.num_delivered)

    return handle


async def notify(ctx: Context, release_id: str, attempt: int) -> None:
    release = await ctx.releases.get(release_id)
    if release is None or not release.state.final or not release.params.notify_emails:
        return
    key = f"email:{release.state.value}"
    current = release.notifications.get(key)
    if current and current.state == "sent":
        return
    if not await ctx.releases.claim_delivery(release.id, key, now() - CLAIM_STALE):
        raise TransientError("another notifier is sending this email", delay=CLAIM_STALE.seconds)
    try:
        await send(ctx.settings, release)
    except TransientError as exc:
        await ctx.releases.record_delivery(
            release.id, key, Delivery(state="failed", attempts=attempt, last_error=exc.message)
        )
        raise
    except aiosmtplib.SMTPException as exc:
        log.warning("email refused", release_id=release.id, error=str(exc))
        await ctx.releases.record_delivery(
            release.id, key, Delivery(state="refused", attempts=attempt, last_error=str(exc))
        )
        return
    await ctx.releases.record_delivery(release.id, key, Delivery(state="sent", attempts=attempt))


async def send(settings: Settings, release: Release) -> None:
    if not settings.smtp_host:
        raise aiosmtplib.SMTPException("no SMTP server configured (FABU_SMTP_HOST)")
    message = email(release, settings.smtp_from, settings.public_url)
    try:
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username or None,
            password=settings.smtp_password or None,
            use_tls=settings.smtp_tls,
            start_tls=settings.smtp_starttls,
            timeout=30,
        )
    except aiosmtplib.SMTPResponseException as exc:
        if 400 <= exc.code < 500:
            raise TransientError(f"SMTP {exc.code}: {exc.message}", delay=5.0) from exc
        raise
    except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, TimeoutError) as exc:
        raise TransientError(f"SMTP unavailable: {exc}", delay=5.0) from exc
    except aiosmtplib.SMTPTimeoutError as exc:
        raise TransientError(f"SMTP timed out: {exc}", delay=5.0) from exc
