"""The client of Fabu's HTTP API, and the one error every command ends with."""

import json
from collections.abc import Iterator
from typing import Any

import httpx


class Failed(Exception):
    """The command could not do what was asked (exit 2), with the reason."""


# Where a request's validation error points, as the CLI's user knows it.
LOCATIONS = ("body", "query", "path")


def said(answer: httpx.Response) -> str:
    """An error answer as one sentence naming the field: ``version: … (422)``.

    Fabu's own errors already are (the ``field`` they name is put first when the
    sentence does not start with it); a request that does not validate lists its
    problems, each with its place, and those become ``field: message; …``.
    """
    field = ""
    try:
        body = answer.json()
        detail = body.get("detail", answer.text)
        field = str(body.get("field") or "")
    except (ValueError, AttributeError):
        detail = answer.text
    if field and isinstance(detail, str) and not detail.startswith(field):
        # The field it is about, when the sentence does not start with it already.
        detail = f"{field}: {detail}"
    if isinstance(detail, list):
        parts = []
        for problem in detail:
            where = ".".join(str(p) for p in problem.get("loc", []) if p not in LOCATIONS)
            message = str(problem.get("msg", "not valid")).removeprefix("Value error, ")
            parts.append(f"{where}: {message}" if where else message)
        detail = "; ".join(parts)
    return f"{str(detail).strip() or answer.reason_phrase} ({answer.status_code})"


class Api:
    """Fabu's API at ``url`` as the holder of ``token``: answers as JSON, errors as Failed."""

    def __init__(self, url: str, token: str) -> None:
        if not url:
            raise Failed("no Fabu URL: pass --url, set FABU_URL, or run fabu login")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url.rstrip("/") + "/api/v1", headers=headers, timeout=60)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            answer = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Failed(f"cannot reach Fabu: {exc}") from exc
        if answer.status_code >= 400:
            raise Failed(said(answer))
        return answer.json() if answer.content else None

    def events(self, release_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """The release's Server-Sent Events: (event, data) until ``end``. On a connection
        of its own, so that it may be read in another thread than the other calls."""
        # As long as the release runs: no read timeout.
        timeout = httpx.Timeout(60, read=None)
        http = httpx.Client(base_url=self.http.base_url, headers=self.http.headers, timeout=timeout)
        try:
            with http, http.stream("GET", f"/releases/{release_id}/events") as answer:
                if answer.status_code >= 400:
                    answer.read()
                    raise Failed(said(answer))
                event = ""
                for line in answer.iter_lines():
                    if line.startswith("event:"):
                        event = line.partition(":")[2].strip()
                    elif line.startswith("data:"):
                        yield event, json.loads(line.partition(":")[2])
        except httpx.TransportError as exc:
            raise Failed(f"lost Fabu while following release {release_id}: {exc}") from exc
