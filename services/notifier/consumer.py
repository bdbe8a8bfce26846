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

Release plans (``plan.started``, ``plan.ended``, on the ``plans`` consumer of the same
process): a plan's start and end go to the channels of its items' services in its
environment, each channel once (by its key), those that asked for ``started``, or for
``succeeded`` / ``failed`` (a plan failed or cancelled). Their deliveries are kept under
the plan's id as ``plan_started/<channel>`` and ``plan_ended/<channel>``, with the same
claims, retries and at-most-once rule as a release's.
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import httpx
import structlog

from services.notifier.channels import Refused, send
from services.notifier.content import Content, content, plan_content
from shared.errors import FabuError, TransientError
from shared.ids import ReleaseId
from shared.messaging import subjects
from shared.messaging.bus import Msg
from shared.messaging.messages import (
    PlanMessage,
    ReleaseApplied,
    ReleaseAwaiting,
    ReleaseCompleted,
    ReleaseFailed,
    ReleasePaused,
)
from shared.messaging.subjects import Subjects
from shared.models.base import now
from shared.models.notifications import Channel, NotifyEvent
from shared.models.plan import Plan, PlanState
from shared.models.release import Release
from shared.outside import egress
from shared.release import actions
from shared.release.actions import Action, Around
from shared.secrets import Secrets
from shared.store.plans import Plans
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
    retry: list[str] = []
    for channel in channels:
        if event not in channel.events:
            continue
        # Each canary pause is its own notification.
        name = f"{event}-{step + 1}" if event == "canary_paused" else event
        await _deliver(
            ctx,
            secrets,
            http,
            channel,
            release,
            event,
            name,
            lambda channel: content(
                release,
                event,
                channel.language,
                ctx.settings.public_url,
                last_good,
                automatic,
                secrets.open,
            ),
            retry,
        )
    if retry:
        raise TransientError("; ".join(retry), delay=min(MAX_BACKOFF_S, 2.0**attempt))


async def _deliver(
    ctx: Context,
    secrets: Secrets,
    http: httpx.AsyncClient,
    channel: Channel,
    about: Release | Plan,
    event: NotifyEvent,
    name: str,
    words: Callable[[Channel], Content],
    retry: list[str],
) -> None:
    """One notification on one channel, at most once: claimed (under ``about``'s id and
    ``<name>/<channel key>``), sent, recorded; why to try again added to ``retry``."""
    deliveries = ctx.releases.deliveries
    owner = ReleaseId(about.id)
    try:
        url, secret = secrets.open(channel.url), secrets.open(channel.secret)
    except FabuError as exc:
        key = f"{name}/{channel.type}-unreadable"
        await deliveries.record(owner, key, 0, "refused", exc.message, exc.message)
        return
    key = f"{name}/{channel.key(url)}"
    stale = now() - timedelta(seconds=ctx.settings.notify_claim_stale_s)
    claim, n = await deliveries.claim(owner, key, stale)
    if claim == "busy":
        retry.append(f"{key} is being sent by another notifier")
        return
    if claim != "claimed":
        return
    try:
        await send(channel, url, secret, words(channel), about, event, ctx.settings, http)
    except TransientError as exc:
        await deliveries.record(owner, key, n, "failed", exc.message, exc.message)
        retry.append(exc.message)
        return
    except Refused as exc:
        log.warning("notification refused", of=about.id, key=key, error=exc.message)
        await deliveries.record(owner, key, n, "refused", exc.message, exc.message)
        return
    await deliveries.record(owner, key, n, "sent", "sent")


# Release plans: ``plan.started`` and ``plan.ended``, on the ``plans`` consumer.


def plan_event(plan: Plan, what: str) -> NotifyEvent:
    """The channels' event a plan's message announces: ``started``; at its end
    ``succeeded``, or ``failed`` (failed, cancelled, or rejected)."""
    if what == "started":
        return "started"
    return "succeeded" if plan.state is PlanState.SUCCEEDED else "failed"


async def plan_channels(ctx: Context, secrets: Secrets, plan: Plan) -> list[Channel]:
    """The channels of every item's service in the plan's environment (else the
    environment's default), each once (by its key), in item order."""
    found = await asyncio.gather(
        *(ctx.catalog.channels(i.service, plan.environment) for i in plan.items)
    )
    seen: set[str] = set()
    channels = []
    for channel in (c for cs in found for c in cs or []):
        # Keyed as its deliveries are; one whose url cannot be opened, by its sealed form.
        try:
            key = channel.key(secrets.open(channel.url))
        except FabuError:
            key = f"{channel.type}-{channel.url}"
        if key not in seen:
            seen.add(key)
            channels.append(channel)
    return channels


async def setup_plans(ctx: Context) -> Callable[[Msg], Awaitable[None]]:
    """The ``plans`` consumer: a release plan started or ended, told on the channels of
    its items' services, once per channel."""
    secrets = Secrets(ctx.settings.secret_key)
    http = egress.client(ctx.settings.deny, timeout=10, max_bytes=64 << 10)
    ctx.owned.push_async_callback(http.aclose)
    plans = Plans(ctx.mongo)

    async def handle(msg: Msg) -> None:
        message = PlanMessage.model_validate_json(msg.data)
        await notify_plan(
            ctx, plans, secrets, http, message.plan_id, message.what, msg.metadata.num_delivered
        )

    return handle


async def notify_plan(
    ctx: Context,
    plans: Plans,
    secrets: Secrets,
    http: httpx.AsyncClient,
    plan_id: str,
    what: str,
    attempt: int,
) -> None:
    """Tell a plan's channels that it started (``what``: "started") or how it ended."""
    plan = await plans.get(plan_id)
    if plan is None or (what == "ended" and not plan.state.final):
        return
    event = plan_event(plan, what)
    retry: list[str] = []
    for channel in await plan_channels(ctx, secrets, plan):
        if event not in channel.events:
            continue
        await _deliver(
            ctx,
            secrets,
            http,
            channel,
            plan,
            event,
            f"plan_{what}",
            lambda channel: plan_content(plan, event, channel.language, ctx.settings.public_url),
            retry,
        )
    if retry:
        raise TransientError("; ".join(retry), delay=min(MAX_BACKOFF_S, 2.0**attempt))
