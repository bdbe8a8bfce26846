"""What a notification says, in English or Chinese: the release (or the release plan), its
result, and why it failed."""

from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage

from shared.models.notifications import NotifyEvent
from shared.models.plan import Plan, PlanState
from shared.models.release import Release
from shared.release.config_changes import config_changes

WORDS = {
    "en": {
        "started": "started",
        "succeeded": "succeeded",
        "failed": "FAILED",
        "canary_paused": "canary paused",
        "approval_needed": "needs approval",
        "service": "Service",
        "environment": "Environment",
        "version": "Version",
        "operator": "Operator",
        "duration": "Duration",
        "result": "Result",
        "details": "Details",
        "reason": "Reason",
        "diagnosis": "Diagnosis",
        "to": "to",
        "frozen": "Released during a freeze",
        "canary": "Canary",
        "canary_step": "canary step {n} of {total}: {weight}% asked, {replicas} canary pods "
        "healthy; {then}",
        "canary_person": "waiting for someone to promote or abort it",
        "canary_analysis": "its analysis ({names}) decides: promoted when it passes, aborted "
        "when it fails, waiting for someone when inconclusive",
        "preview_step": "the preview: {replicas} pods of the new version healthy; {then}",
        "switch_step": "the switch: the traffic is on the new version; {then}",
        "canary_timed": "Fabu promotes it after its {pause} s pause unless someone promotes "
        "or aborts it first",
        "version_change": "Version change",
        "requested_by": "Requested by",
        "why": "Why",
        "config_changes": "Config changes",
        "no_config_changes": "none",
        "review": "Review (diff and manifest)",
        "approved_by": "Approved by",
        "cause": "Cause",
        "roll_back": "Roll back",
        "roll_back_to": "roll back to {version}: {link}",
        "rolling_back": "Fabu is rolling back to {version} automatically",
        "automatic": "Automatic rollback",
        "plan": "plan",
        "cancelled": "cancelled",
        "kind": "Kind",
        "items": "Items",
        "wave": "wave {n}",
    },
    "zh-CN": {
        "started": "开始发布",
        "succeeded": "发布成功",
        "failed": "发布失败",
        "canary_paused": "灰度暂停",
        "approval_needed": "等待审批",
        "service": "服务",
        "environment": "环境",
        "version": "版本",
        "operator": "操作人",
        "duration": "耗时",
        "result": "结果",
        "details": "详情",
        "reason": "原因",
        "diagnosis": "诊断",
        "to": "到",
        "frozen": "封版期间发布",
        "canary": "灰度",
        "canary_step": "灰度第 {n}/{total} 步: 设定 {weight}%, {replicas} 个灰度 Pod 健康; {then}",
        "canary_person": "等待有人推进或中止",
        "canary_analysis": "由指标分析 ({names}) 判定: 通过则推进, 失败则中止, "
        "无法判断则等待人工处理",
        "preview_step": "预览: 新版本 {replicas} 个 Pod 健康; {then}",
        "switch_step": "切换: 流量已在新版本上; {then}",
        "canary_timed": "暂停 {pause} 秒后由 Fabu 自动推进, 除非有人提前推进或中止",
        "version_change": "版本变化",
        "requested_by": "发起人",
        "why": "原因说明",
        "config_changes": "配置变更",
        "no_config_changes": "无",
        "review": "审阅 (差异与清单)",
        "approved_by": "审批人",
        "cause": "原因",
        "roll_back": "回滚",
        "roll_back_to": "回滚到 {version}: {link}",
        "rolling_back": "Fabu 正在自动回滚到 {version}",
        "automatic": "自动回滚",
        "plan": "发布计划",
        "cancelled": "已取消",
        "kind": "类型",
        "items": "条目",
        "wave": "第 {n} 批",
    },
}
# A plan's kind, in each language.
KINDS = {
    "en": {"release": "release", "promotion": "promotion", "rollback": "rollback"},
    "zh-CN": {"release": "发布", "promotion": "晋级", "rollback": "回滚"},
}
DIAGNOSIS_LINES = 6


@dataclass(frozen=True)
class Content:
    title: str
    # (label, value) pairs, then free lines (the diagnosis).
    fields: list[tuple[str, str]]
    extra: list[str]
    link: str

    def text(self) -> str:
        lines = [self.title, "", *(f"{k}: {v}" for k, v in self.fields), *self.extra]
        return "\n".join(lines) + "\n"

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", *(f"- **{k}**: {v}" for k, v in self.fields)]
        if self.extra:
            lines += ["", *(f"> {line}" for line in self.extra)]
        return "\n".join(lines) + "\n"


def cause(release: Release) -> str:
    """What went wrong, in one sentence: the diagnosis's, else the release's reason."""
    bundle = release.diagnosis
    return (bundle.summary if bundle is not None and bundle.summary else "") or release.reason


def diagnosis_lines(release: Release) -> list[str]:
    """The first lines of a failure's diagnosis: the reason, the condition, the failing pods."""
    bundle = release.diagnosis
    lines = [release.reason] if release.reason and release.reason != cause(release) else []
    if bundle is not None:
        if bundle.condition and bundle.condition not in (release.reason, cause(release)):
            lines.append(bundle.condition)
        for pod in bundle.pods:
            for container in pod.containers:
                lines.append(
                    f"{pod.name}/{container.name}: {container.state}"
                    f" (restarts {container.restart_count})"
                    + (f"; last {container.last_state}" if container.last_state else "")
                )
    return lines[:DIAGNOSIS_LINES]


def canary_text(release: Release, words: dict[str, str]) -> str:
    """The paused canary step: its number among the canary steps, the share asked, its
    pods, and what it waits for (a person, or its timed pause)."""
    step = [e for e in release.canary if e.what == "healthy"][-1]
    steps = release.params.steps
    pause = steps[step.step].pause_s if step.step < len(steps) else None
    names = steps[step.step].analysis if step.step < len(steps) else []
    if names:
        then = words["canary_analysis"].format(names=", ".join(names))
    elif pause is None:
        then = words["canary_person"]
    else:
        then = words["canary_timed"].format(pause=pause)
    if release.params.blue_green is not None:
        key = "preview_step" if step.step == 0 else "switch_step"
        return words[key].format(replicas=step.replicas, then=then)
    return words["canary_step"].format(
        n=step.step + 1, total=len(steps), weight=step.weight, replicas=step.replicas, then=then
    )


def approval_fields(
    release: Release,
    running: Release | None,
    words: dict[str, str],
    open_: Callable[[str], str] | None,
) -> list[tuple[str, str]]:
    """For an approver: the version change, who asked and why, and the config paths that
    change since ``running``, the release running now (never their values: the page shows
    them). Without ``running`` (not looked up) only the version asked is said."""
    asked = f"{release.version} ({release.image})"
    fields = [
        (words["version_change"], f"{running.version} → {asked}" if running else asked),
        (words["requested_by"], f"{release.operator}, {release.created_at:%Y-%m-%d %H:%M} UTC"),
        (words["why"], release.description or "-"),
    ]
    if running is not None:
        changed = config_changes(running.params, release.params, open_ or _as_stored)
        paths = ", ".join(c.path for c in changed)
        fields.append((words["config_changes"], paths or words["no_config_changes"]))
    return fields


def _as_stored(text: str) -> str:
    """Without the key a secret is compared as stored (each save seals it anew)."""
    return text


def content(
    release: Release,
    event: NotifyEvent,
    language: str,
    public_url: str,
    last_good: Release | None = None,
    automatic: bool = False,
    open_: Callable[[str], str] | None = None,
) -> Content:
    """``last_good``: for a failure, the release to roll back to (``automatic``: Fabu
    does so itself); for an approval, the release running now, to say what changes
    (``open_`` opens the secrets both configs hold, to compare them)."""
    words = WORDS.get(language, WORDS["en"])
    base = public_url.rstrip("/")
    link = f"{base}/releases/{release.id}"
    took = release.duration_s
    fields = []
    if event == "failed" and cause(release):
        fields.append((words["cause"], cause(release)))
    fields += [
        (words["service"], release.service),
        (words["environment"], release.environment),
        (words["version"], f"{release.version} ({release.image})"),
        (words["operator"], release.operator),
        (words["result"], words[event]),
        (words["duration"], f"{took:.1f} s" if took is not None else "-"),
        (words["details"], link),
    ]
    if release.decision is not None and release.decision.approved:
        fields.insert(4, (words["approved_by"], release.decision.by))
    if (override := release.freeze_override) is not None:
        fields.insert(
            4,
            (words["frozen"], f"{override.window}: {override.by}: {override.reason}"),
        )
    healthy = [e for e in release.canary if e.what == "healthy"]
    if event == "canary_paused" and healthy:
        fields.insert(4, (words["canary"], canary_text(release, words)))
    if event == "approval_needed":  # in place of the version and the operator
        fields[2:4] = approval_fields(release, last_good, words, open_)
        fields[-1] = (words["review"], link)
    if release.rollback_of is not None:
        fields.insert(1, (words["automatic"], release.description or str(release.rollback_of)))
    if event == "failed" and last_good is not None:
        back = (
            words["rolling_back"].format(version=last_good.version)
            if automatic
            else words["roll_back_to"].format(
                version=last_good.version, link=f"{base}/releases/{last_good.id}/rollback"
            )
        )
        fields.append((words["roll_back"], back))
    extra: list[str] = []
    if event == "failed":
        diagnosis = diagnosis_lines(release)
        if diagnosis:
            extra = ["", f"{words['diagnosis']}:", *diagnosis]
    title = (
        f"[Fabu] {release.service} {release.version} {words['to']} {release.environment} "
        f"{words[event]}" + (f" ({words['automatic']})" if release.rollback_of is not None else "")
    )
    return Content(title=title, fields=fields, extra=extra, link=link)


def plan_outcome(plan: Plan, event: NotifyEvent) -> str:
    """The word of a plan's event: ``started``, ``succeeded``, ``cancelled``, else
    ``failed`` (a plan that failed, or one that ended otherwise than it should)."""
    if event == "started":
        return "started"
    if plan.state is PlanState.SUCCEEDED:
        return "succeeded"
    if plan.state is PlanState.CANCELLED:
        return "cancelled"
    return "failed"


def plan_content(plan: Plan, event: NotifyEvent, language: str, public_url: str) -> Content:
    """A release plan started or ended: where, what kind, who asked and who approved it,
    each item's version and state in wave order, why it failed, and its page."""
    words = WORDS.get(language, WORDS["en"])
    kinds = KINDS.get(language, KINDS["en"])
    outcome = plan_outcome(plan, event)
    link = f"{public_url.rstrip('/')}/plans/{plan.id}"
    fields = [
        (words["environment"], plan.environment),
        (words["kind"], kinds.get(plan.kind.value, plan.kind.value)),
        (words["operator"], plan.operator),
    ]
    if plan.decision is not None and plan.decision.approved:
        fields.append((words["approved_by"], plan.decision.by))
    if (override := plan.freeze_override) is not None:
        fields.append((words["frozen"], f"{override.window}: {override.by}: {override.reason}"))
    fields.append((words["result"], words[outcome]))
    if outcome != "succeeded" and plan.reason:
        fields.append((words["reason"], plan.reason))
    fields.append((words["details"], link))
    items = [f"{words['items']}:"]
    for item in sorted(plan.items, key=lambda i: i.wave):
        wave = words["wave"].format(n=item.wave + 1)
        items.append(f"{wave}: {item.service} {item.version}: {item.state}")
    title = f"[Fabu] {words['plan']} {plan.name} {words['to']} {plan.environment} {words[outcome]}"
    return Content(title=title, fields=fields, extra=["", *items], link=link)


def email(body: Content, message_id: str, sender: str, to: list[str]) -> EmailMessage:
    """``message_id``: the same for every attempt, so a mail system can drop a duplicate."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Subject"] = body.title
    message["Message-ID"] = message_id
    message.set_content(body.text())
    return message
