"""Each stage's handler called directly, on the real store, bus and cluster, with no
other stage running: the happy path, a redelivery, and a lost race (for the
notifier, two notifiers racing for one delivery).

Each test has a database and a NATS prefix of its own, so the session's running
Fabu system never sees these releases.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from kubernetes_asyncio import client
from nats.aio.msg import Msg

from services.deployer.consumer import handle_rendered
from services.notifier.consumer import notify
from services.renderer.consumer import handle_requested
from services.tracker.consumer import track
from shared.cluster.manifest import objects
from shared.cluster.watches import Update, Watches
from shared.errors import TransientError
from shared.ids import ReleaseId, TemplateId
from shared.messaging.messages import ReleaseApplied, ReleaseRendered, ReleaseRequested
from shared.models.catalog import BaseParams, Environment, Template
from shared.models.notifications import Channel
from shared.models.release import Release
from shared.release import lifecycle
from shared.release.lifecycle import AS_RENDERER, Actor
from shared.release.machine import CANCEL, FAIL, Failed, Nothing, ReleaseState
from shared.secrets import Secrets
from shared.settings import Settings
from shared.store.mongo import new_id
from shared.worker import Context, context
from tests.conftest import unique
from tests.support.releases import DEMO
from tests.support.smtp import Inbox
from tests.support.stack import StackEnv


@dataclass
class Heard:
    """Messages published on one subject: (release id, Nats-Msg-Id)."""

    messages: list[tuple[str, str]] = field(default_factory=list)

    async def keep(self, msg: Msg) -> None:
        headers = msg.header or {}
        self.messages.append((json.loads(msg.data)["release_id"], headers.get("Nats-Msg-Id", "")))

    async def settled(self, ctx: Context) -> list[tuple[str, str]]:
        await ctx.bus.nc.flush()  # every publish so far has been delivered
        return self.messages


@asynccontextmanager
async def alone(
    stack_env: StackEnv, namespace: str, smtp_port: int | None = None
) -> AsyncIterator[Context]:
    """A stage context on a database and NATS prefix of its own, with an environment on
    ``namespace`` and the demo template (and mail to the tests' SMTP server)."""
    name = unique("stage").replace("-", "_")
    settings = Settings.model_validate(
        {
            "mongo_url": stack_env.mongo_url,
            "mongo_db": name,
            "nats_url": stack_env.nats_url,
            "nats_prefix": name,
            "kubeconfig_dir": str(stack_env.kubeconfig.parent),
            **({"smtp_host": "127.0.0.1", "smtp_port": smtp_port} if smtp_port else {}),
        }
    )
    async with context(settings, "test") as ctx:
        ctx.owned.push_async_callback(ctx.mongo.client.drop_database, name)
        ctx.owned.push_async_callback(ctx.bus.js.delete_stream, ctx.bus.subjects.stream)
        env = Environment(name="stages", namespace=namespace, kubeconfig="local.yaml")
        await ctx.catalog.add_environment(env)
        await ctx.catalog.add_template(Template(id=TemplateId("web"), name="web", content=DEMO))
        yield ctx


async def hear(ctx: Context, subject: str) -> Heard:
    heard = Heard()
    ctx.owned.push_async_callback(await ctx.bus.subscribe(subject, heard.keep))
    return heard


async def requested(ctx: Context) -> Release:
    release = Release(
        id=ReleaseId(new_id()),
        service=unique("web"),
        environment="stages",
        version="1.0.0",
        image="registry.example/team/web:1.0.0",
        template_id=TemplateId("web"),
        config_version=1,
        params=BaseParams(replicas=1),
        namespace=(await ctx.catalog.environment("stages")).namespace,  # type: ignore[union-attr]
    )
    await ctx.releases.create(release)
    return release


async def stored(ctx: Context, release_id: str) -> Release:
    release = await ctx.releases.get(release_id)
    assert release is not None
    return release


async def moved_by_someone_else(
    ctx: Context, release: Release, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A person's cancel written just after the stage read the release: the stage's next
    read finds the release as it was before the cancel, and its write comes second."""
    before = await ctx.releases.head(release.id)
    assert before is not None
    bob = Actor.person("bob")
    assert await lifecycle.take(ctx.releases, ctx.bus, before, CANCEL, bob, Nothing())
    read = ctx.releases.head

    async def as_read_before(release_id: str) -> Release | None:
        monkeypatch.setattr(ctx.releases, "head", read)
        return before if release_id == release.id else await read(release_id)

    monkeypatch.setattr(ctx.releases, "head", as_read_before)


async def test_the_renderer_renders_republishes_on_redelivery_and_loses_a_race(
    stack_env: StackEnv, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with alone(stack_env, namespace) as ctx:
        rendered = await hear(ctx, ctx.bus.subjects.rendered)
        release = await requested(ctx)

        await handle_requested(ctx, ReleaseRequested(release_id=release.id))
        after = await stored(ctx, release.id)
        assert after.state is ReleaseState.RENDERED
        assert [o["metadata"]["name"] for o in objects(after.manifest)] == [release.service] * 2
        assert [(w.kind, w.name) for w in after.workloads] == [("Deployment", release.service)]
        assert {o.key for o in after.inventory} == {
            f"Service/{release.service}",
            f"Deployment/{release.service}",
        }
        assert [(e.state, e.actor) for e in after.events] == [(ReleaseState.RENDERED, "renderer")]
        [first] = await rendered.settled(ctx)
        assert first == (release.id, f"{release.id}:ReleaseRendered")

        # Redelivered (the renderer died before its ack): published again, nothing written.
        await handle_requested(ctx, ReleaseRequested(release_id=release.id))
        assert len((await stored(ctx, release.id)).events) == 1
        assert await rendered.settled(ctx) == [first, first]

        # Lost: someone else moved the release on while it rendered.
        raced = await requested(ctx)
        await moved_by_someone_else(ctx, raced, monkeypatch)
        await handle_requested(ctx, ReleaseRequested(release_id=raced.id))
        assert (await stored(ctx, raced.id)).state is ReleaseState.CANCELLED
        assert [r for r, _ in await rendered.settled(ctx)] == [release.id, release.id]


async def test_the_deployer_applies_republishes_on_redelivery_and_loses_a_race(
    stack_env: StackEnv, namespace: str, kube: client.ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with alone(stack_env, namespace) as ctx:
        applied = await hear(ctx, ctx.bus.subjects.applied)
        release = await requested(ctx)
        await handle_requested(ctx, ReleaseRequested(release_id=release.id))
        event = ReleaseRendered(release_id=release.id)

        await handle_rendered(ctx, event)
        after = await stored(ctx, release.id)
        assert after.state is ReleaseState.APPLIED
        assert after.generation == 1
        assert after.deployment == release.service
        live = await client.AppsV1Api(kube).read_namespaced_deployment(release.service, namespace)
        assert live.spec.template.spec.containers[0].image == release.image
        [first] = await applied.settled(ctx)
        assert first == (release.id, f"{release.id}:ReleaseApplied")

        await handle_rendered(ctx, event)
        assert len((await stored(ctx, release.id)).events) == len(after.events)
        assert await applied.settled(ctx) == [first, first]

        raced = await requested(ctx)
        await handle_requested(ctx, ReleaseRequested(release_id=raced.id))
        await moved_by_someone_else(ctx, raced, monkeypatch)
        await handle_rendered(ctx, ReleaseRendered(release_id=raced.id))
        assert (await stored(ctx, raced.id)).state is ReleaseState.CANCELLED
        assert [r for r, _ in await applied.settled(ctx)] == [release.id, release.id]


async def test_the_tracker_succeeds_republishes_on_redelivery_and_loses_a_race(
    stack_env: StackEnv, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with alone(stack_env, namespace) as ctx:
        completed = await hear(ctx, ctx.bus.subjects.completed)
        watches = Watches()
        ctx.owned.push_async_callback(watches.stop)
        following: dict[str, asyncio.Queue[Update]] = {}

        async def applied_release() -> Release:
            release = await requested(ctx)
            await handle_requested(ctx, ReleaseRequested(release_id=release.id))
            await handle_rendered(ctx, ReleaseRendered(release_id=release.id))
            return await stored(ctx, release.id)

        release = await applied_release()
        event = ReleaseApplied(release_id=release.id)
        await asyncio.wait_for(track(ctx, watches, following, event), 60)
        after = await stored(ctx, release.id)
        assert after.state is ReleaseState.SUCCEEDED, after.reason
        assert (
            after.transcript[-1].text == f'deployment "{release.service}" successfully rolled out'
        )
        assert [c.new for c in after.replica_sets] == [True]
        [first] = await completed.settled(ctx)
        assert first == (release.id, f"{release.id}:ReleaseCompleted")
        assert not following  # it let the release go

        await track(ctx, watches, following, event)
        assert await completed.settled(ctx) == [first, first]

        raced = await applied_release()
        await moved_by_someone_else(ctx, raced, monkeypatch)
        raced_event = ReleaseApplied(release_id=raced.id)
        await asyncio.wait_for(track(ctx, watches, following, raced_event), 60)
        assert (await stored(ctx, raced.id)).state is ReleaseState.CANCELLED
        assert [r for r, _ in await completed.settled(ctx)] == [release.id, release.id]


async def test_the_notifier_sends_once_and_a_redelivery_or_a_racing_notifier_sends_nothing(
    stack_env: StackEnv, namespace: str, inbox: Inbox
) -> None:
    async with alone(stack_env, namespace, inbox.port) as ctx:
        release = await requested(ctx)
        channel = Channel(type="email", recipients=["team@example.com"], events=["failed"])
        await ctx.catalog.put_channels(release.service, "stages", [channel])
        failed = Failed(reason="the template did not render")
        await lifecycle.take(ctx.releases, ctx.bus, release, FAIL, AS_RENDERER, failed)
        secrets = Secrets(ctx.settings.secret_key)
        http = httpx.AsyncClient()
        ctx.owned.push_async_callback(http.aclose)

        # Two notifiers given the same message at once: one claims it and sends; the
        # other, finding it being sent, asks for the message again later (or, had it come
        # after the send, finds it sent).
        outcomes = await asyncio.gather(
            notify(ctx, secrets, http, release.id, "failed", 1),
            notify(ctx, secrets, http, release.id, "failed", 1),
            return_exceptions=True,
        )
        for outcome in outcomes:
            assert outcome is None or (
                isinstance(outcome, TransientError) and "another notifier" in outcome.message
            ), outcome
        [mail] = inbox.about(release.id)
        assert mail["Subject"] == f"[Fabu] {release.service} 1.0.0 to stages FAILED"
        stored_release = await ctx.releases.detail(release.id)
        assert stored_release is not None
        [(key, delivery)] = stored_release.notifications.items()
        assert key.startswith("failed/email")
        assert (delivery.state, delivery.attempts) == ("sent", 1)

        # Redelivered after the send was recorded: nothing is sent again.
        await notify(ctx, secrets, http, release.id, "failed", 2)
        assert len(inbox.about(release.id)) == 1
