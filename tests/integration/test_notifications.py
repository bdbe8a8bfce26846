"""Notifications on every channel, signed as documented, delivered at most once, secrets sealed."""

import asyncio
from collections.abc import AsyncIterator
from email.header import decode_header, make_header
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from devstack import kwok
from devstack.system import FabuSystem
from tests.conftest import unique
from tests.support.releases import delivery, finished, prepare, release
from tests.support.robots import DINGTALK_SECRET, FEISHU_SECRET, WEBHOOK_SECRET, Robots
from tests.support.smtp import Inbox
from tests.support.stack import StackEnv
from tests.support.wait import eventually


@pytest.fixture
async def robots() -> AsyncIterator[Robots]:
    server = Robots()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def channels(
    api: httpx.AsyncClient, service: str, environment: str, body: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    answer = await api.put(f"/services/{service}/notifications/{environment}", json=body)
    assert answer.status_code == 200, answer.text
    shown: list[dict[str, Any]] = answer.json()
    return shown


async def settled(api: httpx.AsyncClient, release_id: str, count: int) -> dict[str, Any]:
    """The release once ``count`` deliveries are no longer being sent or retried."""

    async def probe() -> dict[str, Any] | None:
        body: dict[str, Any] = (await api.get(f"/releases/{release_id}")).json()
        done = [
            d for d in body["notifications"].values() if d["state"] not in ("sending", "failed")
        ]
        return body if len(done) >= count else None

    return await eventually(probe, f"{count} deliveries of {release_id} to settle", within=90)


async def test_each_channel_gets_one_signed_message_in_its_language(
    api: httpx.AsyncClient,
    stack_env: StackEnv,
    namespace: str,
    robots: Robots,
    inbox: Inbox,
    fabu: FabuSystem,
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    dingtalk_url = f"{robots.url}/dingtalk/{unique('d')}?access_token=tok-{unique('t')}"
    shown = await channels(
        api,
        service,
        environment,
        [
            {
                "type": "dingtalk",
                "url": dingtalk_url,
                "secret": DINGTALK_SECRET,
                "mobiles": ["13800000000"],
                "language": "zh-CN",
                "events": ["started", "succeeded"],
            },
            {
                "type": "feishu",
                "url": f"{robots.url}/feishu/{unique('f')}",
                "secret": FEISHU_SECRET,
            },
            {"type": "wecom", "url": f"{robots.url}/wecom/{unique('w')}"},
            {
                "type": "webhook",
                "url": f"{robots.url}/webhook/{unique('h')}",
                "secret": WEBHOOK_SECRET,
            },
            {"type": "email", "recipients": ["team@example.com"], "language": "zh-CN"},
        ],
    )
    assert shown[0]["secret"] == "••••••"
    assert "access_token" not in shown[0]["url"]
    assert "tok-" not in str(shown)

    release_id = await release(api, service, environment, "1.0.0")
    body = await settled(api, release_id, 6)

    assert {d["state"] for d in body["notifications"].values()} == {"sent"}
    [started, succeeded] = robots.received[
        dingtalk_url.rsplit("/", maxsplit=1)[-1].split("?", maxsplit=1)[0]
    ]
    assert "开始发布" in started["markdown"]["text"]
    assert "发布成功" in succeeded["markdown"]["text"]
    assert succeeded["at"]["atMobiles"] == ["13800000000"]
    assert f"/releases/{release_id}" in succeeded["markdown"]["text"]
    assert "/api/v1/" not in succeeded["markdown"]["text"]
    by_kind = {robot.split("-")[0]: messages for robot, messages in robots.received.items()}
    [feishu] = by_kind["f"]
    assert f"[Fabu] {service} 1.0.0 to {environment} succeeded" in feishu["content"]["text"]
    [wecom] = by_kind["w"]
    assert "Duration" in wecom["markdown"]["content"]
    [hook] = by_kind["h"]
    assert (hook["_event"], hook["state"], hook["release_id"]) == (
        "succeeded",
        "succeeded",
        release_id,
    )
    [mail] = inbox.about(release_id)
    subject = str(make_header(decode_header(mail["Subject"])))
    assert subject == f"[Fabu] {service} 1.0.0 到 {environment} 发布成功"

    # Sealed at rest, absent from every log.
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack_env.mongo_url)
    try:
        stored = await mongo[fabu.env["FABU_MONGO_DB"]]["notification_channels"].find_one(
            {"_id": f"{service}/{environment}"}
        )
    finally:
        await mongo.close()
    assert stored is not None
    raw = str(stored)
    for secret in (DINGTALK_SECRET, FEISHU_SECRET, WEBHOOK_SECRET, "access_token"):
        assert secret not in raw
        for stage in ("api", "notifier"):
            assert secret not in fabu.log(stage)


async def test_a_wrong_signature_is_refused_and_recorded(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, robots: Robots
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    await channels(
        api,
        service,
        environment,
        [
            {"type": "dingtalk", "url": f"{robots.url}/dingtalk/{unique('d')}", "secret": "wrong"},
            {"type": "feishu", "url": f"{robots.url}/feishu/{unique('f')}", "secret": "wrong"},
        ],
    )

    body = await settled(api, await release(api, service, environment, "1.0.0"), 2)

    dingtalk = delivery(body, "succeeded", "dingtalk")
    feishu = delivery(body, "succeeded", "feishu")
    assert dingtalk is not None
    assert feishu is not None
    assert (dingtalk["state"], dingtalk["last_error"]) == (
        "refused",
        "dingtalk: errcode 310000: sign not match",
    )
    assert (feishu["state"], feishu["last_error"]) == (
        "refused",
        "feishu: code 19021: sign match fail",
    )
    assert robots.received == {}


async def test_a_failing_robot_is_retried_and_the_message_delivered_once(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, robots: Robots
) -> None:
    service, environment = await prepare(
        api, stack_env, namespace, labels={kwok.FAULT_LABEL: kwok.CRASH_LOOP}, rollout_timeout_s=4
    )
    robot = unique("h")
    robots.fail_next[robot] = 1
    await channels(
        api,
        service,
        environment,
        [
            {
                "type": "webhook",
                "url": f"{robots.url}/webhook/{robot}",
                "secret": WEBHOOK_SECRET,
                "events": ["failed"],
            }
        ],
    )

    release_id = await release(api, service, environment, "1.0.0")
    body = await settled(api, release_id, 1)

    sent = delivery(body, "failed", "webhook")
    assert sent is not None
    assert sent["state"] == "sent"
    assert sent["attempts"] == 2
    assert [a["outcome"] for a in sent["history"]] == ["webhook: HTTP 500", "sent"]
    assert robots.requests[robot] == 2
    [message] = robots.received[robot]
    assert message["state"] == "failed"
    # The first lines of the diagnosis travel with a failure.
    assert "rollout not finished within 4s" in message["text"]
    assert "CrashLoopBackOff" in message["text"] or "restarts" in message["text"]


async def test_a_notifier_killed_mid_send_sends_nothing_twice(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, robots: Robots, fabu: FabuSystem
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    robot = unique("h")
    robots.hold[robot] = asyncio.Event()
    await channels(
        api,
        service,
        environment,
        [{"type": "webhook", "url": f"{robots.url}/webhook/{robot}", "secret": WEBHOOK_SECRET}],
    )
    release_id = await release(api, service, environment, "1.0.0")

    async def sending() -> bool:
        return robots.requests.get(robot, 0) == 1

    await eventually(sending, "the notifier to be sending")
    fabu.kill("notifier")
    robots.hold[robot].set()
    fabu.start("notifier")

    async def given_up() -> dict[str, Any] | None:
        body: dict[str, Any] = (await api.get(f"/releases/{release_id}")).json()
        found = delivery(body, "succeeded", "webhook")
        return found if found and found["state"] == "unknown" else None

    found = await eventually(given_up, "the unfinished delivery to be recorded unknown", within=60)
    assert found["history"][-1]["outcome"] == "the notifier sending it stopped; not sent again"
    assert robots.requests[robot] == 1


async def test_channels_default_per_environment_and_bad_input_is_refused(
    api: httpx.AsyncClient, stack_env: StackEnv, namespace: str, robots: Robots
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    robot = unique("w")
    default = [{"type": "wecom", "url": f"{robots.url}/wecom/{robot}"}]
    assert (
        await api.put(f"/environments/{environment}/notifications", json=default)
    ).status_code == 200
    assert (await api.get(f"/services/{service}/notifications/{environment}")).json()[0][
        "type"
    ] == "wecom"

    done = await finished(api, await release(api, service, environment, "1.0.0"))
    assert done["state"] == "succeeded", done["reason"]
    await eventually(lambda: _has(robots, robot), "the default channel to be used")

    for bad, field in (
        ([{"type": "sms", "url": "http://x"}], "type"),
        ([{"type": "dingtalk"}], "url"),
        ([{"type": "email"}], "recipients"),
        ([{"type": "email", "recipients": ["not-an-address"]}], "recipients"),
        ([{"type": "wecom", "url": "http://x", "events": ["exploded"]}], "events"),
    ):
        answer = await api.put(f"/services/{service}/notifications/{environment}", json=bad)
        assert answer.status_code == 422, bad
        assert field in answer.text


async def _has(robots: Robots, robot: str) -> bool:
    return bool(robots.received.get(robot))
