"""What a release plan's notification says, in English and Chinese, by email and webhook;
and which channels' event each plan message is."""

from typing import Any

from services.notifier.channels import message_id, webhook_data
from services.notifier.consumer import plan_event
from services.notifier.content import plan_content
from shared.models.plan import Plan, PlanItem, PlanKind, PlanState
from shared.models.release_parts import Decision

URL = "https://fabu.example/"


def made(**fields: Any) -> Plan:
    items = [
        PlanItem(service="web", version="3.0", wave=1, state="skipped"),
        PlanItem(service="db", version="1.0", wave=0, state="failed", release_id="r1"),
        PlanItem(service="cache", version="2.0", wave=0, state="succeeded", release_id="r2"),
    ]
    return Plan(
        id="p1",
        name="checkout",
        environment="prod",
        items=items,
        operator="alice",
        decision=Decision(approved=True, by="bob"),
        **fields,
    )


def test_a_plan_that_started_names_where_who_and_its_items_in_wave_order() -> None:
    plan = made(state=PlanState.RUNNING)
    body = plan_content(plan, "started", "en", URL)

    assert body.title == "[Fabu] plan checkout to prod started"
    assert dict(body.fields) == {
        "Environment": "prod",
        "Kind": "release",
        "Operator": "alice",
        "Approved by": "bob",
        "Result": "started",
        "Details": "https://fabu.example/plans/p1",
    }
    assert body.link == "https://fabu.example/plans/p1"
    text = body.text()
    assert text.index("wave 1: db 1.0: failed") < text.index("wave 2: web 3.0: skipped")
    assert "wave 1: cache 2.0: succeeded" in text


def test_a_failed_plan_says_so_in_capitals_with_its_reason_naming_the_item() -> None:
    plan = made(state=PlanState.FAILED, reason="db 1.0: failed: rollout not finished")
    body = plan_content(plan, "failed", "en", URL)

    assert body.title == "[Fabu] plan checkout to prod FAILED"
    assert ("Reason", "db 1.0: failed: rollout not finished") in body.fields
    assert "- **Reason**: db 1.0: failed: rollout not finished" in body.markdown()
    succeeded = plan_content(made(state=PlanState.SUCCEEDED), "succeeded", "en", URL)
    assert succeeded.title == "[Fabu] plan checkout to prod succeeded"
    assert "Reason" not in dict(succeeded.fields)


def test_a_cancelled_plan_is_told_on_the_failure_channels_as_cancelled() -> None:
    cancelled = made(state=PlanState.CANCELLED)
    assert plan_event(cancelled, "ended") == "failed"
    assert plan_content(cancelled, "failed", "en", URL).title == (
        "[Fabu] plan checkout to prod cancelled"
    )
    assert plan_event(made(state=PlanState.SUCCEEDED), "ended") == "succeeded"
    assert plan_event(made(state=PlanState.FAILED), "ended") == "failed"
    assert plan_event(made(state=PlanState.RUNNING), "started") == "started"


def test_a_plan_in_chinese() -> None:
    plan = made(state=PlanState.FAILED, reason="db 1.0: failed", kind=PlanKind.PROMOTION)
    body = plan_content(plan, "failed", "zh-CN", URL)

    assert body.title == "[Fabu] 发布计划 checkout 到 prod 发布失败"
    fields = dict(body.fields)
    assert (fields["环境"], fields["类型"], fields["操作人"], fields["审批人"]) == (
        "prod",
        "晋级",
        "alice",
        "bob",
    )
    assert fields["原因"] == "db 1.0: failed"
    assert "第 2 批: web 3.0: skipped" in body.text()


def test_a_plans_email_and_webhook_are_its_own() -> None:
    plan = made(state=PlanState.FAILED, reason="db 1.0: failed")
    body = plan_content(plan, "failed", "en", URL)

    assert message_id(plan, "failed") == "<plan-p1.failed@fabu>"
    data = webhook_data(plan, "failed", body)
    assert {k: data[k] for k in ("event", "plan_id", "name", "environment", "state")} == {
        "event": "failed",
        "plan_id": "p1",
        "name": "checkout",
        "environment": "prod",
        "state": "failed",
    }
    assert (data["operator"], data["reason"], data["link"]) == (
        "alice",
        "db 1.0: failed",
        "https://fabu.example/plans/p1",
    )
    assert [(i["service"], i["wave"], i["state"]) for i in data["items"]] == [
        ("db", 0, "failed"),
        ("cache", 0, "succeeded"),
        ("web", 1, "skipped"),
    ]
    assert data["text"] == body.text()
    assert "release_id" not in data
