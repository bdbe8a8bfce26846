"""Sending one notification on one channel, as each service documents it.

Each sender returns normally when the message was accepted, raises
TransientError when trying again may help (HTTP 5xx or 429, timeouts,
refused connections, a robot's rate-limit code, SMTP 4xx) and Refused when it
will not (a wrong signature, a bad request, SMTP 5xx). Errors never carry a
channel's URL or secret: robot URLs hold access tokens.
"""

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
from typing import Any

import aiosmtplib
import httpx

from services.notifier.content import Content, email
from shared.errors import PermanentError, TransientError
from shared.models.notifications import Channel
from shared.models.plan import Plan
from shared.models.release import Release
from shared.outside.egress import EgressDenied
from shared.settings import Settings

# Robots' own "slow down" codes: DingTalk "send too fast", WeCom "api freq out
# of limit", Feishu "frequency limited".
RATE_LIMITED = {"dingtalk": {130101}, "wecom": {45009}, "feishu": {11232}}


class Refused(PermanentError):
    pass


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk: HMAC-SHA256 of ``timestamp\\nsecret`` keyed by the secret, base64, URL-encoded."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    return urllib.parse.quote_plus(base64.b64encode(digest.digest()).decode())


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu/Lark: HMAC-SHA256 keyed by ``timestamp\\nsecret`` of an empty message, base64."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


def webhook_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def _post(
    http: httpx.AsyncClient, kind: str, url: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    try:
        response = await http.post(
            url, content=body, headers={"Content-Type": "application/json", **headers}
        )
    except EgressDenied as exc:
        raise Refused(f"{kind}: {exc.message}") from exc
    except httpx.TimeoutException as exc:
        raise TransientError(f"{kind}: timed out", delay=2.0) from exc
    except httpx.TransportError as exc:
        raise TransientError(f"{kind}: {type(exc).__name__}", delay=2.0) from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise TransientError(f"{kind}: HTTP {response.status_code}", delay=2.0)
    if response.status_code >= 400:
        raise Refused(f"{kind}: HTTP {response.status_code}: {response.text[:200]}")
    return response


def _robot_answer(kind: str, response: httpx.Response, code_field: str, text_field: str) -> None:
    try:
        answer: dict[str, Any] = response.json()
    except ValueError as exc:
        raise Refused(f"{kind}: the answer is not JSON") from exc
    code = int(answer.get(code_field, 0) or 0)
    if code == 0:
        return
    message = f"{kind}: {code_field} {code}: {str(answer.get(text_field, ''))[:200]}"
    if code in RATE_LIMITED.get(kind, set()):
        raise TransientError(message, delay=5.0)
    raise Refused(message)


def message_id(about: Release | Plan, event: str) -> str:
    """An email's Message-ID: one per release (or plan) and event, whatever the attempt."""
    if isinstance(about, Plan):
        return f"<plan-{about.id}.{event}@fabu>"
    return f"<{about.id}.{event}@fabu>"


def webhook_data(about: Release | Plan, event: str, body: Content) -> dict[str, Any]:
    """What a webhook receives: the release's (or the plan's) facts, the link, the text."""
    if isinstance(about, Plan):
        return {
            "event": event,
            "plan_id": about.id,
            "name": about.name,
            "environment": about.environment,
            "kind": about.kind.value,
            "state": about.state.value,
            "operator": about.operator,
            "items": [
                {
                    "service": i.service,
                    "version": i.version,
                    "wave": i.wave,
                    "state": i.state,
                    "release_id": i.release_id,
                }
                for i in sorted(about.items, key=lambda i: i.wave)
            ],
            "reason": about.reason,
            "link": body.link,
            "text": body.text(),
        }
    return {
        "event": event,
        "release_id": about.id,
        "service": about.service,
        "environment": about.environment,
        "version": about.version,
        "operator": about.operator,
        "state": about.state.value,
        "duration_s": about.duration_s,
        "reason": about.reason,
        "link": body.link,
        "text": body.text(),
    }


async def send(
    channel: Channel,
    url: str,
    secret: str,
    body: Content,
    about: Release | Plan,
    event: str,
    settings: Settings,
    http: httpx.AsyncClient,
) -> None:
    """``url`` and ``secret`` are the channel's, opened; ``about``: the release or the
    release plan the notification is of."""
    if channel.type == "email":
        mail = email(body, message_id(about, event), settings.smtp_from, channel.recipients)
        await _email(settings, mail)
        return
    if channel.type == "dingtalk":
        target = url
        if secret:
            stamp = int(time.time() * 1000)
            separator = "&" if "?" in url else "?"
            target = f"{url}{separator}timestamp={stamp}&sign={dingtalk_sign(secret, stamp)}"
        payload: dict[str, Any] = {
            "msgtype": "markdown",
            "markdown": {"title": body.title, "text": body.markdown()},
            "at": {"atMobiles": channel.mobiles, "isAtAll": False},
        }
        if channel.mobiles:
            mention = " ".join(f"@{m}" for m in channel.mobiles)
            payload["markdown"]["text"] += f"\n{mention}\n"
        response = await _post(http, "dingtalk", target, json.dumps(payload).encode(), {})
        _robot_answer("dingtalk", response, "errcode", "errmsg")
    elif channel.type == "wecom":
        payload = {"msgtype": "markdown", "markdown": {"content": body.markdown()}}
        response = await _post(http, "wecom", url, json.dumps(payload).encode(), {})
        _robot_answer("wecom", response, "errcode", "errmsg")
    elif channel.type == "feishu":
        payload = {"msg_type": "text", "content": {"text": body.text()}}
        if secret:
            stamp = int(time.time())
            payload.update(timestamp=str(stamp), sign=feishu_sign(secret, stamp))
        response = await _post(http, "feishu", url, json.dumps(payload).encode(), {})
        _robot_answer("feishu", response, "code", "msg")
    else:
        data = json.dumps(webhook_data(about, event, body), ensure_ascii=False).encode()
        headers = {"X-Fabu-Event": event}
        if secret:
            headers["X-Fabu-Signature"] = webhook_signature(secret, data)
        await _post(http, "webhook", url, data, headers)


async def _email(settings: Settings, message: Any) -> None:
    if not settings.smtp_host:
        raise Refused("email: no SMTP server configured (FABU_SMTP_HOST)")
    try:
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username or None,
            password=settings.smtp_password or None,
            use_tls=settings.smtp_tls,
            start_tls=settings.smtp_starttls,
            cert_bundle=settings.smtp_ca_file or None,
            timeout=30,
        )
    except aiosmtplib.SMTPResponseException as exc:
        if 400 <= exc.code < 500:
            raise TransientError(f"email: SMTP {exc.code}: {exc.message}", delay=5.0) from exc
        raise Refused(f"email: SMTP {exc.code}: {exc.message}") from exc
    except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, TimeoutError) as exc:
        raise TransientError(f"email: SMTP unavailable: {exc}", delay=5.0) from exc
    except aiosmtplib.SMTPTimeoutError as exc:
        raise TransientError(f"email: SMTP timed out: {exc}", delay=5.0) from exc
    except aiosmtplib.SMTPException as exc:
        raise Refused(f"email: {exc}") from exc
