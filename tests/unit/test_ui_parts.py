"""The UI's pieces that need no browser: language choice, every word's translation, the
weekly charts, and how the plan, analysis template and config forms read times and
rows and place errors."""

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.api.schemas import AnalysisTemplateIn, PlanIn, ReleaseSummary
from services.api.ui import analysis_pages, plan_pages, release_pages, service_pages
from services.api.ui.charts import bars, weeks
from services.api.ui.i18n import EN, ZH, pick, translator
from services.api.ui.pages import utc_time
from shared.errors import Invalid
from shared.models.base import now
from shared.models.catalog import BaseParams
from shared.models.plan import ItemState, PlanState
from shared.release.machine import ReleaseState
from tests.support.records import record

TEMPLATES = Path(plan_pages.__file__).parent / "templates"


@pytest.mark.parametrize(
    ("preference", "accept", "language"),
    [
        ("", "zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
        ("", "zh-TW", "zh-CN"),
        ("", "en-US,en;q=0.9", "en"),
        ("", "fr-FR, de;q=0.5", "en"),
        ("en", "zh-CN", "en"),
        ("zh-CN", "en-US", "zh-CN"),
    ],
)
def test_the_users_choice_wins_then_the_browsers(
    preference: str, accept: str, language: str
) -> None:
    assert pick(preference, accept) == language


def test_words_without_a_translation_stay_english() -> None:
    t = translator("zh-CN")
    assert t("Releases") == "发布记录"
    assert t("no such phrase") == "no such phrase"
    assert translator("en")("Releases") == "Releases"


def release(days_ago: int, state: ReleaseState, seconds: float) -> ReleaseSummary:
    created = now() - timedelta(days=days_ago)
    finished = created + timedelta(seconds=seconds)
    return ReleaseSummary.of(
        record(state=state, created_at=created, started_at=created, finished_at=finished)
    )


def test_weeks_count_releases_failures_and_median_durations() -> None:
    data = weeks(
        [
            release(0, ReleaseState.SUCCEEDED, 10),
            release(0, ReleaseState.FAILED, 30),
            release(0, ReleaseState.SUCCEEDED, 20),
            release(400, ReleaseState.SUCCEEDED, 5),  # too old to show
        ]
    )
    assert len(data) == 12
    assert [w.releases for w in data[:-1]] == [0] * 11
    last = data[-1]
    assert (last.releases, last.median_s) == (3, 20)
    assert last.failure_rate == pytest.approx(1 / 3)
    assert data[0].failure_rate is None


def test_bars_escape_their_labels() -> None:
    svg = bars([1.0, None], ["<a>", "b"], 'x"><script>')
    assert "<script>" not in svg
    assert svg.count("<rect") == 2


def test_every_word_the_templates_translate_has_its_chinese() -> None:
    words = {
        m.group(2)
        for page in TEMPLATES.glob("*.html")
        for m in re.finditer(r"""\bt\((["'])((?:(?!\1).)+)\1\)""", page.read_text())
    }
    assert "New plan" in words  # the pattern finds them
    assert sorted(w for w in words if w not in ZH) == []


@pytest.mark.parametrize("state", [*PlanState, *ItemState])
def test_every_plan_and_item_state_has_words_in_both_languages(state: str) -> None:
    assert state in ZH
    assert state in EN


def test_a_time_from_the_form_is_read_as_utc() -> None:
    assert utc_time("2026-01-31T08:00", "scheduled_at") == datetime(2026, 1, 31, 8, tzinfo=UTC)
    assert utc_time(" 2026-01-31 08:00 ", "at") == datetime(2026, 1, 31, 8, tzinfo=UTC)
    eight = timezone(timedelta(hours=8))
    assert utc_time("2026-01-31T08:00+08:00", "at") == datetime(2026, 1, 31, 8, tzinfo=eight)
    assert utc_time("  ", "scheduled_at") is None
    with pytest.raises(Invalid) as refused:
        utc_time("tomorrow", "scheduled_at")
    assert refused.value.field == "scheduled_at"


def test_a_plans_errors_are_shown_at_the_row_its_item_came_from() -> None:
    # Rows 0, 2 and 3 were filled in: item 1 is row 2, item 2 row 3.
    shown = plan_pages.row_errors(
        {
            "items.1.version": "b: no such tag",
            "items.1.service": "b: retired",
            "items.2.service": "c: no release config",
            "items.7.service": "out of range",
            "items": "a and b wait for each other",
            "scheduled_at": "has passed",
            "concurrency": "too many",
            "source": "not a field here",
        },
        [0, 2, 3],
    )
    assert shown == {
        "row-2": "b: no such tag; b: retired",
        "row-3": "c: no release config",
        "": "out of range; a and b wait for each other; not a field here",
        "scheduled_at": "has passed",
        "concurrency": "too many",
    }


def test_a_bad_row_is_named_by_its_whole_path() -> None:
    with pytest.raises(ValidationError) as refused:
        PlanIn(
            environment="prod",
            items=[{"service": "a", "version": "1.0"}, {"service": "b", "version": "bad tag!"}],
        )
    errors = plan_pages.paths(refused.value)
    assert list(errors) == ["items.1.version"]
    assert errors["items.1.version"].startswith("version: ")
    assert plan_pages.row_errors(errors, [0, 4]).keys() == {"row-4"}


def test_a_scheduled_releases_errors_are_at_the_release_forms_fields() -> None:
    with pytest.raises(ValidationError) as refused:
        PlanIn(environment="prod", items=[{"service": "", "version": "bad tag!"}])
    assert release_pages.item_errors(refused.value).keys() == {"service", "version"}
    said = Invalid("items: a: frozen", field="items", errors={"items.0.version": "a: unknown"})
    assert release_pages.item_errors(said) == {"version": "a: unknown"}
    assert release_pages.item_errors(Invalid("late", field="scheduled_at")) == {
        "scheduled_at": "late"
    }


def test_an_analysis_templates_errors_are_shown_at_the_row_its_metric_came_from() -> None:
    # Rows 0 and 2 were filled in (row 1 left empty): metric 1 is row 2.
    values = {
        "name": "errors",
        "metric-0-name": "rate",
        "metric-0-query": "up",
        "metric-0-success": "result < 1",
        "metric-2-name": "latency",
        "metric-2-query": 'up{a="{{nope}}"}',
        "metric-2-success": "result is low",
        "metric-2-count": "0",
    }
    metrics, filled = analysis_pages.metrics_of(values, 3)
    assert filled == [0, 2]
    assert metrics[0] == {"name": "rate", "query": "up", "success": "result < 1", "failure": ""}
    with pytest.raises(ValidationError) as refused:
        AnalysisTemplateIn.model_validate({"name": "Not A Label", "metrics": metrics})
    shown = analysis_pages.form_errors(refused.value, filled)
    assert shown.keys() == {"name", "row-2"}
    assert shown["row-2"].startswith("query: unknown placeholder {{nope}}; known: ")
    assert "; success: cannot read 'result is low'" in shown["row-2"]
    assert shown["row-2"].endswith("; count: Input should be greater than or equal to 1")
    twice = Invalid("metrics[1].name: metric 1 is named 'rate' already", field="metrics[1].name")
    assert analysis_pages.form_errors(twice, filled) == {
        "row-2": "name: metric 1 is named 'rate' already"
    }
    assert analysis_pages.form_errors(Invalid("version: changed", field="version"), filled) == {
        "": "version: changed"
    }


def test_a_canary_steps_errors_are_shown_at_its_row_and_blue_greens_at_it() -> None:
    # Rows 0 and 2 were filled in: step 1 is row 2.
    values = {
        "steps": "3",
        "step-0-weight": "50",
        "step-0-analysis": "errors, latency",
        "step-2-weight": "0",
        "step-2-pause_s": "30",
    }
    steps, filled = service_pages.canary_steps(values)
    assert steps == [
        {"weight": "50", "pause_s": None, "analysis": ["errors", "latency"]},
        {"weight": "0", "pause_s": "30", "analysis": []},
    ]
    assert filled == [0, 2]
    with pytest.raises(ValidationError) as refused:
        BaseParams.model_validate(service_pages.fabu_settings(values))
    shown = service_pages.config_errors(refused.value, filled)
    assert shown == {"step-2": "weight: Input should be greater than or equal to 1"}

    values |= {"step-2-weight": "20"}
    with pytest.raises(ValidationError) as refused:
        BaseParams.model_validate(service_pages.fabu_settings(values))
    shown = service_pages.config_errors(refused.value, filled)
    assert shown.keys() == {"canary"}
    assert shown["canary"].startswith("canary: step weights must increase")

    unknown = {
        "canary[1].analysis": "canary[1].analysis: no analysis template is named 'x'",
        "blue_green.analysis": "blue_green.analysis: no analysis template is named 'y'",
    }
    said = Invalid("; ".join(unknown.values()), field="canary[1].analysis", errors=unknown)
    assert service_pages.config_errors(said, filled) == {
        "step-2": "analysis: no analysis template is named 'x'",
        "blue_green": "analysis: no analysis template is named 'y'",
    }
    values |= {"step-2-weight": "70"}
    both = {"blue_green": "on", "bg-pause_s": "-1"}
    with pytest.raises(ValidationError) as refused:
        BaseParams.model_validate(service_pages.fabu_settings(values | both))
    assert service_pages.config_errors(refused.value, filled) == {
        "blue_green": "pause_s: Input should be greater than or equal to 0"
    }
    with pytest.raises(ValidationError) as refused:
        BaseParams.model_validate(service_pages.fabu_settings(values | both | {"bg-pause_s": ""}))
    assert service_pages.config_errors(refused.value, filled) == {
        "blue_green": "a release is either a canary or blue-green, not both"
    }
