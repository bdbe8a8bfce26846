"""The UI's pieces that need no browser: language choice and the weekly charts."""

from datetime import timedelta

import pytest

from services.api.schemas import ReleaseSummary
from services.api.ui.charts import bars, weeks
from services.api.ui.i18n import pick, translator
from shared.models.base import now
from shared.release.machine import ReleaseState
from tests.support.records import record


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
