"""Chat robots for the tests: DingTalk, Feishu and WeCom group robots and a generic webhook.

They check signatures exactly as DingTalk and Feishu document them (computed
here independently of Fabu's code) and answer as those services do,
including their error codes for a wrong signature. A robot can be told to
fail its next requests (HTTP 500) or to hold a request until released.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import time
import urllib.parse
from typing import Any

from aiohttp import web

from tests.support.http import serve

DINGTALK_SECRET = "SEC-dingtalk-secret-for-tests-0123456789"
FEISHU_SECRET = "feishu-secret-for-tests"
WEBHOOK_SECRET = "webhook-secret-for-tests"


class Robots:
    def __init__(self) -> None:
        self.received: dict[str, list[dict[str, Any]]] = {}
        self.requests: dict[str, int] = {}
        self.fail_next: dict[str, int] = {}
        self.hold: dict[str, asyncio.Event] = {}
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/dingtalk/{robot}", self._dingtalk)
        app.router.add_post("/feishu/{robot}", self._feishu)
        app.router.add_post("/wecom/{robot}", self._wecom)
        app.router.add_post("/webhook/{robot}", self._webhook)
        self._runner, self.url = await serve(app)

    async def stop(self) -> None:
        for event in self.hold.values():
            event.set()
        if self._runner:
            await self._runner.cleanup()

    async def _gate(self, robot: str) -> web.Response | None:
        self.requests[robot] = self.requests.get(robot, 0) + 1
        if robot in self.hold:
            await self.hold[robot].wait()
        if self.fail_next.get(robot, 0) > 0:
            self.fail_next[robot] -= 1
            return web.Response(status=500, text="robot unavailable")
        return None

    def _keep(self, robot: str, body: dict[str, Any]) -> None:
        self.received.setdefault(robot, []).append(body)

    async def _dingtalk(self, request: web.Request) -> web.Response:
        robot = request.match_info["robot"]
        if failed := await self._gate(robot):
            return failed
        stamp, sign = request.query.get("timestamp", ""), request.query.get("sign", "")
        # DingTalk: base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\n{secret}")), within an hour.
        digest = hmac.new(
            DINGTALK_SECRET.encode(), f"{stamp}\n{DINGTALK_SECRET}".encode(), hashlib.sha256
        ).digest()
        fresh = stamp.isdigit() and abs(time.time() * 1000 - int(stamp)) < 3600_000
        if not fresh or sign != base64.b64encode(digest).decode():
            return web.json_response({"errcode": 310000, "errmsg": "sign not match"})
        self._keep(robot, await request.json())
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _feishu(self, request: web.Request) -> web.Response:
        robot = request.match_info["robot"]
        if failed := await self._gate(robot):
            return failed
        body = await request.json()
        stamp = str(body.get("timestamp", ""))
        # Feishu: base64(HMAC-SHA256(key=f"{timestamp}\n{secret}", msg=b"")).
        digest = hmac.new(f"{stamp}\n{FEISHU_SECRET}".encode(), b"", hashlib.sha256).digest()
        if body.get("sign") != base64.b64encode(digest).decode():
            return web.json_response({"code": 19021, "msg": "sign match fail", "data": {}})
        self._keep(robot, body)
        return web.json_response({"code": 0, "msg": "success", "data": {}})

    async def _wecom(self, request: web.Request) -> web.Response:
        robot = request.match_info["robot"]
        if failed := await self._gate(robot):
            return failed
        self._keep(robot, await request.json())
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _webhook(self, request: web.Request) -> web.Response:
        robot = request.match_info["robot"]
        if failed := await self._gate(robot):
            return failed
        raw = await request.read()
        expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), raw, hashlib.sha256).hexdigest()
        if request.headers.get("X-Fabu-Signature") != expected:
            return web.Response(status=401, text="bad signature")
        self._keep(robot, {**json.loads(raw), "_event": request.headers.get("X-Fabu-Event")})
        return web.Response(status=204)


def dingtalk_query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
