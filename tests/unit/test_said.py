"""Sentences Fabu writes, shown in the reader's language: the fixed parts translated,
names, versions and numbers kept; the empty weekly charts."""

# ruff: noqa: RUF001  (Chinese punctuation is what the translations hold)

from datetime import UTC, datetime

from services.api.schemas import ReleaseSummary
from services.api.ui.charts import bars, charts
from services.api.ui.i18n import SAID_ZH, said, translator
from shared.models.release import ReleaseKind
from shared.release.machine import ReleaseState


def test_fabus_sentences_are_translated_keeping_what_varies() -> None:
    cases = {
        "cancelled by ann; the cluster was left as it is": "已被 ann 取消；集群保持原样",
        "rolling back to 1.2.0 automatically: release 6b12ab": "自动回滚到 1.2.0：发布 6b12ab",
        "automatic rollback to 1.2.0 (release 6b12ab)": "自动回滚到 1.2.0（发布 6b12ab）",
        "cause: CrashLoopBackOff: container app exited 1, 3 restarts (pod web-1)": (
            "原因：CrashLoopBackOff：容器 app 退出码 1，重启 3 次（Pod web-1）"
        ),
        "canary aborted at step 2 by bob": "灰度在第 2 步被 bob 中止",
    }
    for english, chinese in cases.items():
        assert said(english, "zh-CN") == chinese
        assert said(english, "en") == english


def test_a_sentence_fabu_does_not_know_stays_as_written() -> None:
    assert said("deployment web: 1 of 3 ready", "zh-CN") == "deployment web: 1 of 3 ready"
    assert said("", "zh-CN") == ""


def test_every_pattern_keeps_each_of_its_names() -> None:
    for english, chinese in SAID_ZH:
        names = {p.split("}")[0] for p in english.split("{")[1:]}
        assert names == {p.split("}")[0] for p in chinese.split("{")[1:]}, english


def test_empty_charts_say_there_is_nothing_yet_without_axes() -> None:
    t = translator("en")
    drawn = charts([], t)
    assert [c for _, c in drawn if "Nothing yet: no releases in these weeks." in c] == [
        c for _, c in drawn
    ]
    assert not [c for _, c in drawn if "<svg" in c]
    one = ReleaseSummary.model_validate(
        {
            "id": "r1",
            "service": "web",
            "environment": "test",
            "version": "1.0",
            "kind": ReleaseKind.DEPLOY,
            "state": ReleaseState.REQUESTED,
            "operator": "ann",
            "description": "",
            "created_at": datetime.now(UTC),
            "started_at": None,
            "finished_at": None,
            "duration_s": None,
            "source_release_id": None,
            "template_id": "t1",
            "template_version": 1,
            "config_version": 1,
            "reason": "",
            "canary_step": None,
        }
    )
    frequency, failures, durations = charts([one], t)
    assert "<svg" in frequency[1]
    assert "no release finished" in failures[1]
    assert "no release finished" in durations[1]


def test_a_chart_of_zeros_labels_its_top_zero() -> None:
    drawn = bars([0.0, 0.0], ["09-14", "09-21"], "Failure rate", "%")
    assert 'class="max">0%</text>' in drawn
