"""What every webhook does first: check its secret in constant time, then read its JSON."""

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
    except ValueError as exc:
        raise Invalid(f"the body is not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise Invalid("the body is not an event object")
    return event
