"""What every webhook does first (check its secret in constant time, then read its JSON),
and what every request gets: text Fabu can store."""

import hmac
import json
from typing import Any

from fastapi import Request

from shared.errors import Invalid, Unauthorized


def check_secret(given: str, expected: str, header: str) -> None:
    """401 unless ``given`` equals the configured secret (none configured: always 401)."""
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized(f"{header} is missing or wrong")


async def read_event(request: Request) -> dict[str, Any]:
    try:
        event = json.loads(await request.body())
    except RecursionError as exc:
        raise Invalid("the body is nested too deeply") from exc
    except ValueError as exc:
        raise Invalid(f"the body is not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise Invalid("the body is not an event object")
    return event


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


async def storable(request: Request) -> None:
    """422 for input no field accepts and no store can keep: a NUL character (FerretDB
    on PostgreSQL cannot store one), an unpaired surrogate, or JSON nested deeper than
    any of Fabu's documents."""
    if "\x00" in request.url.path or "\x00" in "".join(
        k + v for k, v in request.query_params.multi_items()
    ):
        raise Invalid("the URL holds a NUL character (\\u0000), which no field accepts")
    body = await request.body()
    if not body or not request.headers.get("content-type", "").startswith("application/json"):
        if b"\x00" in body:
            raise Invalid("the body holds a NUL character, which no field accepts")
        return
    try:
        parsed = json.loads(body)
    except RecursionError as exc:
        raise Invalid(f"the body is nested deeper than {MAX_DEPTH} levels") from exc
    except ValueError:
        return  # not JSON: the route's own validation says so
    if why := _unstorable(parsed):
        raise Invalid(f"the body cannot be accepted: {why}")
