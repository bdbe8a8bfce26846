"""A release plan's start and end, told once on its services' channels, besides what each
of its releases tells: one email per event for a plan of two services sharing a channel,
and one FAILED email naming the item that failed."""

from collections.abc import Awaitable, Callable
from email.header import decode_header, make_header
from email.message import Message
from typing import Any

import httpx

from devstack.system import FabuSystem
from tests.conftest import unique
from tests.support.plans import create, environment, plan_done, services
from tests.support.smtp import Inbox
from tests.support.stack import StackEnv
from tests.support.wait import eventually

EVENTS = ["started", "succeeded", "failed"]


def subject(mail: Message) -> str:
    return str(make_header(decode_header(mail["Subject"])))


def body(mail: Message) -> str:
    payload = mail.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


async def same_channel(api: httpx.AsyncClient, names: list[str], env: str, to: str) -> None:
    """One email channel, the same on every service named, for starts and results."""
    for name in names:
        answer = await api.put(
            f"/services/{name}/notifications/{env}",
            json=[{"type": "email", "recipients": [to], "events": EVENTS}],
        )
        assert answer.status_code == 200, answer.text


async def settled(api: httpx.AsyncClient, plan_id: str, count: int) -> list[dict[str, Any]]:
    """The plan's deliveries, as its record shows them, once ``count`` of them are sent,
    refused or unknown."""

    async def probe() -> list[dict[str, Any]] | None:
        shown = (await api.get(f"/plans/{plan_id}")).json()["notifications"]
        found = [{"key": key, **d} for key, d in shown.items()]
        done = [d for d in found if d["state"] not in ("sending", "failed")]
        return found if len(done) >= count else None

    return await eventually(probe, f"{count} deliveries of plan {plan_id}", within=90)


async def test_a_plan_of_two_services_sends_one_started_and_one_succeeded_email(
    api: httpx.AsyncClient,
    stack_env: StackEnv,
    namespace: str,
    inbox: Inbox,
    fabu: FabuSystem,
) -> None:
    env = await environment(api, stack_env, namespace)
    a, b = await services(api, stack_env, [env], 2)
    to = f"{unique('team')}@example.com"
    await same_channel(api, [a, b], env, to)

    made = await create(
        api,
        env,
        {"service": a, "version": "1.0.0"},
        {"service": b, "version": "1.0.0", "after": [a]},
        name="checkout",
    )
    done = await plan_done(api, made["id"])
    assert done["state"] == "succeeded", done

    sent = await settled(api, made["id"], 2)
    assert sorted((d["key"].split("/")[0], d["state"]) for d in sent) == [
        ("plan_ended", "sent"),
        ("plan_started", "sent"),
    ]
    mails = inbox.about(made["id"])
    assert sorted(subject(m) for m in mails) == [
        f"[Fabu] plan checkout to {env} started",
        f"[Fabu] plan checkout to {env} succeeded",
    ]
    [ended] = [m for m in mails if subject(m).endswith("succeeded")]
    assert ended["To"] == to
    text = body(ended)
    assert f"{a} 1.0.0: succeeded" in text
    assert text.index(f"wave 1: {a}") < text.index(f"wave 2: {b}")
    assert f"/plans/{made['id']}" in text
    # Each release told its own start and end too, apart from the plan's.
    for item in done["items"]:
        own = await eventually(
            _two(inbox, item["release_id"]), f"the emails of release {item['release_id']}"
        )
        assert all("plan checkout" not in subject(m) for m in own)
    assert len(inbox.about(made["id"])) == 2


def _two(inbox: Inbox, release_id: str) -> Callable[[], Awaitable[list[Message] | None]]:
    """A probe: the release's emails once it has sent two (its start and its end)."""

    async def probe() -> list[Message] | None:
        mails = inbox.about(release_id)
        return mails if len(mails) >= 2 else None

    return probe


async def test_a_failed_plan_sends_one_failed_email_naming_the_item(
    api: httpx.AsyncClient,
    stack_env: StackEnv,
    namespace: str,
    inbox: Inbox,
    fabu: FabuSystem,
) -> None:
    env = await environment(api, stack_env, namespace)
    a, b = await services(
        api, stack_env, [env], 2, ("1.0.0", "2.0.0-never-ready"), rollout_timeout_s=4
    )
    to = f"{unique('team')}@example.com"
    await same_channel(api, [a, b], env, to)

    made = await create(
        api,
        env,
        {"service": a, "version": "1.0.0"},
        {"service": b, "version": "2.0.0-never-ready"},
        name="broken",
    )
    done = await plan_done(api, made["id"])
    assert done["state"] == "failed", done

    await settled(api, made["id"], 2)
    mails = inbox.about(made["id"])
    assert sorted(subject(m) for m in mails) == [
        f"[Fabu] plan broken to {env} FAILED",
        f"[Fabu] plan broken to {env} started",
    ]
    [failed] = [m for m in mails if subject(m).endswith("FAILED")]
    text = body(failed)
    assert f"Reason: {b} 2.0.0-never-ready: failed" in text
    assert f"{b} 2.0.0-never-ready: failed" in text.split("Items:")[1]
    assert f"{a} 1.0.0: succeeded" in text
