"""Notifier: ``release.awaiting``, ``.applied``, ``.paused``, ``.completed``, ``.failed`` in.

The event each subject announces (``EVENTS``: ``approval_needed``, ``started``,
``canary_paused``, ``succeeded``, ``failed``) goes to every channel of the release's
service and environment (else the environment's default) that asked for it; a
message on a subject with no event is an error (``UnknownSubject``, logged and
redelivered by the worker loop until its deliveries run out), never announced as
something else. Each (event, channel) is one delivery, shown on the release under
``notifications["<event>/<channel>"]``; each attempt is claimed before sending
and recorded after it, in documents of its own (``shared.store.deliveries``).

At most once: a notifier that dies between sending and recording leaves a
claim; the next one to find it stale records the delivery ``unknown`` and
does not send again. A lost message is rarer and less harmful here than a
duplicate "release failed" in a team's chat. Transient errors (HTTP 5xx or
429, timeouts, a robot's rate-limit code, SMTP 4xx) are retried with
backoff; others are recorded as refused.
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import httpx
import structlog

from services.notifier.channels import Refused, send
from services.notifier.content import content
from shared.errors import FabuError, TransientError
from shared.messaging import subjects
from shared.messaging.bus import Msg
from shared.messaging.messages import (
    ReleaseApplied,
    ReleaseAwaiting,
    ReleaseCompleted,
    ReleaseFailed,
    ReleasePaused,
)
from shared.messaging.subjects import Subjects
from shared.models.base import now
from shared.models.notifications import NotifyEvent
from shared.outside import egress
from shared.release import actions
from shared.release.actions import Action, Around
from shared.secrets import Secrets
from shared.worker import Context

log = structlog.get_logger()
MAX_BACKOFF_S = 60.0


Message = ReleaseAwaiting | ReleaseApplied | ReleasePaused | ReleaseCompleted | ReleaseFailed
# The event a message on each subject the notifier takes announces, and how it reads.
EVENTS: dict[str, tuple[NotifyEvent, type[Message]]] = {
    subjects.AWAITING: ("approval_needed", ReleaseAwaiting),
    subjects.APPLIED: ("started", ReleaseApplied),
    subjects.PAUSED: ("canary_paused", ReleasePaused),
    subjects.COMPLETED: ("succeeded", ReleaseCompleted),
    subjects.FAILED: ("failed", ReleaseFailed),
}
# Announce a release going on: sent whatever its state. The others (its result) are
# sent only once it has ended.
PROGRESS_EVENTS: tuple[NotifyEvent, ...] = ("approval_needed", "started", "canary_paused")


class UnknownSubject(FabuError):
    """A message on a subject the notifier has no event for: its consumer's subjects and
    ``EVENTS`` disagree, a bug to fix rather than a message to announce as something."""


def event_of(names: Subjects, subject: str) -> tuple[NotifyEvent, type[Message]]:
    """The event a message on ``subject`` (as published, prefix and all) announces."""
    known = EVENTS.get(names.bare(subject))
    if known is None:
        raise UnknownSubject(f"no notification event for subject {subject!r}")
    return known


async def setup(ctx: Context) -> Callable[[Msg], Awaitable[None]]:
    secrets = Secrets(ctx.settings.secret_key)
    # Channel URLs are people's: guarded, answers of at most 64 KiB.
    http = egress.client(ctx.settings.deny, timeout=10, max_bytes=64 << 10)
    ctx.owned.push_async_callback(http.aclose)

    async def handle(msg: Msg) -> None:
        event, kind = event_of(ctx.bus.subjects, msg.subject)
        message = kind.model_validate_json(msg.data)
        await notify(
            ctx, secrets, http, message.release_id, event, msg.metadata.num_delivered, message.step
        )

    return handle


async def notify(
    ctx: Context,
    secrets: Secrets,
    http: httpx.AsyncClient,
    release_id: str,
    event: NotifyEvent,
    attempt: int,
    step: int = 0,
) -> None:
    release = await ctx.releases.head(release_id)
    if release is None or (event not in PROGRESS_EVENTS and not release.state.final):
        return
    channels = await ctx.catalog.channels(release.service, release.environment) or []
    last_good, automatic = None, False
    if event == "failed" and channels:
        last_good, running, env = await asyncio.gather(
            ctx.releases.last_good(release.service, release.environment),
            ctx.releases.running(release.service, release.environment),
            ctx.catalog.environment(release.environment),
        )
        automatic = env is not None and release.rolls_back_in(env)
        # Offered by hand only where the action matrix opens it (not to what runs now).
        back = Around(running=running)
        if not automatic and last_good and actions.refusal(Action.ROLLBACK, last_good, back):
            last_good = None
    elif event == "approval_needed" and channels:
        # What the approver is asked to change: the release running now.
        last_good = await ctx.releases.running(release.service, release.environment)
    deliveries = ctx.releases.deliveries
    retry: list[str] = []
    for channel in channels:
        if event not in channel.events:
            continue
        try:
            url, secret = secrets.open(channel.url), secrets.open(channel.secret)
        except FabuError as exc:
            key = f"{event}/{channel.type}-unreadable"
            await deliveries.record(release.id, key, 0, "refused", exc.message, exc.message)
            continue
        # Each canary pause is its own notification.
        name = f"{event}-{step + 1}" if event == "canary_paused" else event
        key = f"{name}/{channel.key(url)}"
        stale = now() - timedelta(seconds=ctx.settings.notify_claim_stale_s)
        claim, n = await deliveries.claim(release.id, key, stale)
        if claim == "busy":
            retry.append(f"{key} is being sent by another notifier")
            continue
        if claim != "claimed":
            continue
        body = content(
            release,
            event,
            channel.language,
            ctx.settings.public_url,
            last_good,
            automatic,
            secrets.open,
        )
        try:
            await send(channel, url, secret, body, release, event, ctx.settings, http)
        except TransientError as exc:
            await deliveries.record(release.id, key, n, "failed", exc.message, exc.message)
            retry.append(exc.message)
            continue
        except Refused as exc:
            log.warning("notification refused", release_id=release.id, key=key, error=exc.message)
            await deliveries.record(release.id, key, n, "refused", exc.message, exc.message)
            continue
        await deliveries.record(release.id, key, n, "sent", "sent")
    if retry:
        raise TransientError("; ".join(retry), delay=min(MAX_BACKOFF_S, 2.0**attempt))
