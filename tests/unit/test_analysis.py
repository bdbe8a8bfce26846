"""Analysis templates: conditions, placeholders, a metric's verdict, and Prometheus'
answers read as one number (no Prometheus needed: its JSON shapes)."""

import math

import pytest
from pydantic import ValidationError

from shared.models.analysis import (
    Measurement,
    Metric,
    Phase,
    Verdict,
    fill,
    holds,
    phase_of,
    verdict,
)
from shared.outside.prometheus import _one


def metric(**kw: object) -> Metric:
    fields: dict[str, object] = {"name": "errors", "query": "up", "success": "result < 0.05"}
    return Metric.model_validate(fields | kw)


@pytest.mark.parametrize(
    ("condition", "value", "expected"),
    [
        ("result < 0.05", 0.01, True),
        ("result < 0.05", 0.05, False),
        ("result >= 0.9 and result <= 1", 0.95, True),
        ("result >= 0.9 and result <= 1", 1.5, False),
        ("result < 1 or result > 10", 11, True),
        ("result == 0", 0, True),
        ("result != 0", 0, False),
        ("result > -1e-3", 0, True),
    ],
)
def test_conditions(condition: str, value: float, expected: bool) -> None:
    assert holds(metric(success=condition).success, value) is expected


@pytest.mark.parametrize(
    "condition",
    ["result < x", "__import__('os')", "result <", "value < 1", "result < 1 and", "(result < 1)"],
)
def test_unreadable_conditions_are_refused(condition: str) -> None:
    with pytest.raises(ValidationError, match="cannot read"):
        metric(success=condition)


def test_unknown_placeholder_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"unknown placeholder \{\{pod\}\}"):
        metric(query='up{pod="{{pod}}"}')


def test_values_cannot_change_the_query_shape() -> None:
    query = 'sum(rate(x{service="{{service}}",{{labels}}}[1m]))'
    filled = fill(query, {"service": 'web"} or vector(1) #'}, {"fabu.io/track": "canary"})
    assert filled == 'sum(rate(x{service="web\\"} or vector(1) #",fabu_io_track="canary"}[1m]))'


def test_phases() -> None:
    with_failure = metric(success="result < 0.05", failure="result > 0.2")
    assert phase_of(with_failure, 0.01) is Phase.PASSED
    assert phase_of(with_failure, 0.5) is Phase.FAILED
    assert phase_of(with_failure, 0.1) is Phase.INCONCLUSIVE
    assert phase_of(metric(), 0.1) is Phase.FAILED
    assert phase_of(metric(), None) is Phase.INCONCLUSIVE
    assert phase_of(metric(), math.nan) is Phase.INCONCLUSIVE


def taken(*phases: Phase) -> list[Measurement]:
    return [Measurement(step=0, template="t", metric="errors", phase=p) for p in phases]


def test_verdicts_follow_the_limits() -> None:
    m = metric(count=3, failure_limit=1)
    assert verdict(m, taken(Phase.PASSED)) is Verdict.RUNNING
    assert verdict(m, taken(Phase.FAILED, Phase.PASSED)) is Verdict.RUNNING
    assert verdict(m, taken(Phase.FAILED, Phase.PASSED, Phase.PASSED)) is Verdict.PASSED
    assert verdict(m, taken(Phase.FAILED, Phase.FAILED)) is Verdict.FAILED
    assert verdict(m, taken(Phase.INCONCLUSIVE)) is Verdict.INCONCLUSIVE
    lenient = metric(count=2, inconclusive_limit=1)
    assert verdict(lenient, taken(Phase.INCONCLUSIVE, Phase.PASSED)) is Verdict.PASSED


def test_prometheus_answers_read_as_one_number() -> None:
    sample = {"metric": {}, "value": [1.0, "0.25"]}
    assert _one({"resultType": "vector", "result": [sample]}) == (0.25, "")
    assert _one({"resultType": "scalar", "result": [1.0, "3"]}) == (3.0, "")
    assert _one({"resultType": "vector", "result": []})[1].startswith("no data")
    assert "2 series" in _one({"resultType": "vector", "result": [sample, sample]})[1]
    nan = {"metric": {}, "value": [1.0, "NaN"]}
    assert _one({"resultType": "vector", "result": [nan]})[0] is None
    assert _one({"resultType": "matrix", "result": []})[0] is None
