"""Prometheus' HTTP API, asked for one number: an instant query's only value.

Every way of not getting one is an answer too, said in words: Prometheus not
configured or unreachable, an error it returned, no series, several series.
"""

import math

import httpx

# Prometheus' answer to one query is small; a bigger one is not what was asked for.
MAX_BYTES = 1_000_000


class Prometheus:
    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    async def close(self) -> None:
        await self._http.aclose()

    async def value(self, query: str) -> tuple[float | None, str]:
        """The query's one value, or None and why there is none."""
        if not self.url:
            return None, "no Prometheus is configured (FABU_PROMETHEUS_URL)"
        try:
            response = await self._http.post(f"{self.url}/api/v1/query", data={"query": query})
        except httpx.HTTPError as exc:
            return None, f"Prometheus at {self.url} could not be reached: {exc!r}"
        if len(response.content) > MAX_BYTES:
            return None, f"Prometheus answered over {MAX_BYTES} bytes"
        try:
            answer = response.json()
        except ValueError:
            return None, f"Prometheus answered HTTP {response.status_code} without JSON"
        if answer.get("status") != "success":
            return None, f"Prometheus refused the query: {answer.get('error', response.text)}"
        return _one(answer.get("data") or {})


def _one(data: dict[str, object]) -> tuple[float | None, str]:
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list):
        return _number(result[1])
    if kind != "vector" or not isinstance(result, list):
        return None, f"the query answered a {kind}, not a single number"
    if not result:
        return None, "no data: the query returned no series"
    if len(result) > 1:
        return None, (
            f"the query returned {len(result)} series; make it return one (e.g. with sum or max)"
        )
    return _number(result[0]["value"][1])


def _number(text: object) -> tuple[float | None, str]:
    try:
        value = float(str(text))
    except ValueError:
        return None, f"Prometheus answered {text!r}, not a number"
    if math.isnan(value):
        return None, "the query's value is NaN (no traffic to measure?)"
    return value, ""
