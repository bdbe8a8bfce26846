"""Analysis templates: the Prometheus checks that judge a canary step or a blue-green
preview, and the measurements a release keeps of them.

The semantics follow Argo Rollouts' AnalysisTemplate. Each metric is measured
``count`` times, ``interval_s`` apart. A measurement *passes* when the success
condition holds, *fails* when the failure condition holds (or, without one, when
the success condition does not), and is *inconclusive* otherwise, and always when
Prometheus cannot be reached, answers nothing or answers NaN. A metric fails once
more than ``failure_limit`` of its measurements failed, and is inconclusive once
more than ``inconclusive_limit`` were inconclusive. A step passes when every
metric of every template it names has passed; one failed metric aborts the
release; an inconclusive one leaves it paused for a person, never promoted.

A condition compares the query's one value, ``result``, with numbers:
``result < 0.05``, ``result >= 0.99 and result <= 1`` (``and``/``or``, no
parentheses). Queries name what they measure with placeholders, each filled in
as a PromQL string's content: ``{{service}}``, ``{{version}}``,
``{{environment}}``, ``{{namespace}}``, ``{{deployment}}`` (the new version's
Deployment: the canary's or the preview's) and ``{{labels}}`` (the new pods'
labels as PromQL matchers, e.g. ``app="web",fabu_io_track="canary"``).
"""

import math
import operator
import re
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator, model_validator

from shared.models.base import DnsLabel, Model, has_controls, now

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
_COMPARISON = re.compile(r"^\s*result\s*(<=|>=|==|!=|<|>)\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$")
PLACEHOLDERS = ("service", "version", "environment", "namespace", "deployment", "labels")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


def _comparisons(condition: str) -> list[list[tuple[Callable[[float, float], bool], float]]]:
    """The condition as alternatives (``or``) of conjunctions (``and``) of comparisons."""
    alternatives = []
    for part in re.split(r"\s+or\s+", condition.strip()):
        conjunction = []
        for term in re.split(r"\s+and\s+", part):
            match = _COMPARISON.match(term)
            if match is None:
                raise ValueError(
                    f"cannot read {term.strip()!r}: write comparisons of result with a "
                    "number, e.g. 'result < 0.05' or 'result >= 0.9 and result <= 1'"
                )
            conjunction.append((_OPS[match.group(1)], float(match.group(2))))
        alternatives.append(conjunction)
    return alternatives


def holds(condition: str, result: float) -> bool:
    """Whether ``result`` meets ``condition`` (already checked by the model)."""
    return any(all(op(result, n) for op, n in conj) for conj in _comparisons(condition))


def _condition(value: str) -> str:
    if value.strip():
        _comparisons(value)
    return value.strip()


Condition = Annotated[str, Field(max_length=200), AfterValidator(_condition)]


class Metric(Model):
    """One Prometheus query, measured ``count`` times ``interval_s`` apart."""

    name: DnsLabel
    query: str = Field(min_length=1, max_length=4000)
    success: Condition = Field(min_length=1)
    failure: Condition = ""
    interval_s: int = Field(default=30, ge=1, le=3600)
    count: int = Field(default=3, ge=1, le=100)
    failure_limit: int = Field(default=0, ge=0, le=100)
    inconclusive_limit: int = Field(default=0, ge=0, le=100)

    @field_validator("query")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        if has_controls(value.replace("\n", " ").replace("\t", " ")):
            raise ValueError("holds a control character")
        unknown = sorted(set(_PLACEHOLDER.findall(value)) - set(PLACEHOLDERS))
        if unknown:
            known = ", ".join("{{" + p + "}}" for p in PLACEHOLDERS)
            raise ValueError(f"unknown placeholder {{{{{unknown[0]}}}}}; known: {known}")
        return value


class AnalysisTemplate(Model):
    """Named checks, owned by config-admins, that canary steps and blue-green
    previews of any service name."""

    name: DnsLabel
    description: str = Field(default="", max_length=1000)
    metrics: list[Metric] = Field(min_length=1, max_length=10)
    version: int = 1
    updated_by: str = ""
    updated_at: datetime = Field(default_factory=now)

    @model_validator(mode="after")
    def _unique(self) -> "AnalysisTemplate":
        names = [m.name for m in self.metrics]
        if len(names) != len(set(names)):
            raise ValueError("metrics: each metric needs a name of its own")
        return self


def _promql_string(value: str) -> str:
    """``value`` as the content of a double-quoted PromQL string."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _label_name(key: str) -> str:
    """A Kubernetes label key as Prometheus' Kubernetes discovery names it."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def fill(query: str, values: dict[str, str], labels: dict[str, str]) -> str:
    """The query with its placeholders filled in, every value escaped as PromQL
    string content so no value can change the query's shape."""
    matchers = ",".join(
        f'{_label_name(k)}="{_promql_string(v)}"' for k, v in sorted(labels.items())
    )
    filled = {k: _promql_string(v) for k, v in values.items()} | {"labels": matchers}
    return _PLACEHOLDER.sub(lambda m: filled.get(m.group(1), m.group(0)), query)


class Phase(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"


def phase_of(metric: Metric, value: float | None) -> Phase:
    """A measurement's phase: inconclusive without a number."""
    if value is None or math.isnan(value):
        return Phase.INCONCLUSIVE
    if holds(metric.success, value):
        return Phase.PASSED
    if not metric.failure or holds(metric.failure, value):
        return Phase.FAILED
    return Phase.INCONCLUSIVE


class Measurement(Model):
    """One answer to one metric's query, kept on the release."""

    step: int  # the canary step (0-based); for blue-green, 0
    template: str
    metric: str
    at: datetime = Field(default_factory=now)
    value: float | None = None
    phase: Phase
    # The query as sent, and what went wrong when there was no number.
    query: str = ""
    detail: str = ""


class Verdict(StrEnum):
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"


def verdict(metric: Metric, taken: list[Measurement]) -> Verdict:
    """Where one metric stands after ``taken`` (its own measurements, in order)."""
    failed = sum(1 for m in taken if m.phase is Phase.FAILED)
    inconclusive = sum(1 for m in taken if m.phase is Phase.INCONCLUSIVE)
    if failed > metric.failure_limit:
        return Verdict.FAILED
    if inconclusive > metric.inconclusive_limit:
        return Verdict.INCONCLUSIVE
    if len(taken) >= metric.count:
        return Verdict.PASSED
    return Verdict.RUNNING
