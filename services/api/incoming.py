"""What the API makes of every request before a route reads it: a body of UTF-8 text
(:class:`TextBodies`), holding only text Fabu can store (:func:`storable`), and the
address it comes from (:func:`client_address`)."""

import codecs
import json
from typing import Any

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import Invalid

MAX_DEPTH = 32


def _unstorable(value: Any) -> str:
    """Why a parsed JSON value cannot be stored, or "" (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"it is nested deeper than {MAX_DEPTH} levels"
        if isinstance(item, dict):
            stack += [(k, depth) for k in item] + [(v, depth + 1) for v in item.values()]
        elif isinstance(item, list):
            stack += [(v, depth + 1) for v in item]
        elif isinstance(item, str):
            if "\x00" in item:
                return "it holds a NUL character (\\u0000)"
            try:
                item.encode()
            except UnicodeEncodeError:
                return "it holds an unpaired UTF-16 surrogate, which is not text"
    return ""


# Bodies read as forms; every other body is read as JSON if it is JSON (FastAPI
# parses any application/*json and */*+json, in any case, and the API's own
# readers parse what they are given).
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
NOT_TEXT = "the body is not UTF-8 text"


async def storable(request: Request) -> None:
    """422 for input no field accepts and no store can keep: a NUL character (some
    MongoDB-protocol servers cannot store one), an unpaired surrogate, or JSON nested deeper than
    any of Fabu's documents, whatever the content type says; the body is UTF-8 text
    (:class:`TextBodies` refused any other)."""
    if "\x00" in request.url.path or "\x00" in "".join(
        k + v for k, v in request.query_params.multi_items()
    ):
        raise Invalid("the URL holds a NUL character (\\u0000), which no field accepts")
    try:
        body = (await request.body()).decode()
    except UnicodeDecodeError as exc:
        raise HTTPException(400, NOT_TEXT) from exc
    if "\x00" in body:
        raise Invalid("the body holds a NUL character, which no field accepts")
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type in FORMS:
        form = await request.form()
        for name, value in form.multi_items():
            if "\x00" in name or (isinstance(value, str) and "\x00" in value):
                raise Invalid(f"the form field {name!r} holds a NUL character (%00)")
        return
    if not body:
        return
    try:
        # As json.loads reads bytes (FastAPI's way): a leading byte order mark is no text.
        parsed = json.loads(body.removeprefix("\ufeff"))
    except RecursionError as exc:
        raise Invalid(f"the body is nested deeper than {MAX_DEPTH} levels") from exc
    except ValueError:
        return  # not JSON: the route's own validation says so
    if why := _unstorable(parsed):
        raise Invalid(f"the body cannot be accepted: {why}")


def client_address(request: Request) -> str:
    """Where a request comes from, as the server saw it (behind a proxy: as the proxy said,
    where uvicorn's FORWARDED_ALLOW_IPS trusts it)."""
    return request.client.host if request.client else "unknown"


class TextBodies:
    """Every request body is UTF-8 text, checked as it arrives, before anything reads it:
    otherwise 400 (FastAPI would answer 400 without saying why for JSON, and 500 for
    other content types, whose bytes its validation error cannot show)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        decoder = codecs.getincrementaldecoder("utf-8")()

        async def checked() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                try:
                    decoder.decode(message.get("body", b""), not message.get("more_body"))
                except UnicodeDecodeError as exc:
                    # Whoever reads the body meets it; FastAPI passes an HTTPException on.
                    raise HTTPException(400, NOT_TEXT) from exc
            return message

        await self.app(scope, checked, send)
