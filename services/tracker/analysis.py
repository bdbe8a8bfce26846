"""A healthy canary step's analysis under the tracker: each metric of each template the
step names measured in Prometheus on its interval, every measurement kept beside the
release, until one metric fails (the step fails), one is inconclusive (a person
decides) or all have passed (the step may be promoted). The Deployment is watched
meanwhile: its failure, or the release stopped, ends the analysis at once.

What was measured before (a tracker that died mid-analysis) counts: the next
measurement of each metric is due one interval after its last.
"""

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from services.tracker.canary import hold
from shared.cluster.manifest import new_pods
from shared.cluster.watches import Subscription
from shared.models.analysis import (
    AnalysisTemplate,
    Measurement,
    Metric,
    Verdict,
    fill,
    phase_of,
    verdict,
)
from shared.models.base import now
from shared.models.release import Release
from shared.outside.prometheus import Prometheus
from shared.release.machine import ReleaseState
from shared.worker import Context

Check = tuple[AnalysisTemplate, Metric]


@dataclass
class Judged:
    verdict: Verdict
    # For a failed or inconclusive analysis: which metric, its value or why there was
    # none, the condition and the query; for a passed one: what passed.
    reason: str = ""
    # The step's Deployment failed meanwhile (why), or the release was stopped.
    failure: str | None = None
    stopped: bool = False
    # Whether the verdict was reached now (not read back from earlier measurements).
    fresh: bool = False


def _checks(release: Release, names: list[str]) -> list[Check]:
    templates = {a.name: a for a in release.analyses}
    return [(templates[n], m) for n in names if n in templates for m in templates[n].metrics]


def _of(check: Check, taken: list[Measurement]) -> list[Measurement]:
    template, metric = check
    return [m for m in taken if m.template == template.name and m.metric == metric.name]


def _standing(checks: list[Check], taken: list[Measurement]) -> Judged:
    """The analysis's verdict from what was measured so far."""
    verdicts = [(c, verdict(c[1], _of(c, taken))) for c in checks]
    for wanted in (Verdict.FAILED, Verdict.INCONCLUSIVE):
        for check, found in verdicts:
            if found is wanted:
                return Judged(wanted, _why(check, _of(check, taken), wanted))
    if all(found is Verdict.PASSED for _, found in verdicts):
        count = sum(len(_of(c, taken)) for c in checks)
        names = ", ".join(f"{t.name}/{m.name}" for t, m in checks)
        return Judged(Verdict.PASSED, f"its analysis passed ({count} measurements of {names})")
    return Judged(Verdict.RUNNING)


def _why(check: Check, taken: list[Measurement], found: Verdict) -> str:
    template, metric = check
    last = taken[-1]
    if found is Verdict.FAILED:
        failed = [m for m in taken if m.phase == "failed"]
        return (
            f"analysis {template.name}/{metric.name} failed: {len(failed)} of {len(taken)} "
            f"measurements failed (failure limit {metric.failure_limit}); last value "
            f"{failed[-1].value:g} against {metric.success!r}; query: {failed[-1].query}"
        )
    seen = f"value {last.value:g}" if last.value is not None else last.detail
    return (
        f"analysis {template.name}/{metric.name} inconclusive ({seen}; condition "
        f"{metric.success!r}; query: {last.query}): waiting for someone to promote or abort it"
    )


async def judge(
    ctx: Context, subscription: Subscription, release: Release, step: int, names: list[str]
) -> Judged:
    """Run the analysis of ``step`` (the templates ``names``) to its verdict."""
    checks = _checks(release, names)
    if not checks:
        return Judged(Verdict.INCONCLUSIVE, "the analysis templates named are gone", fresh=True)
    taken = [m for m in await ctx.releases.measurements(release.id) if m.step == step]
    deployment, labels = new_pods(release.manifest, release.params.blue_green is not None)
    values = {
        "service": release.service,
        "version": release.version,
        "environment": release.environment,
        "namespace": release.namespace,
        "deployment": deployment,
    }
    prometheus = Prometheus(ctx.settings.prometheus_url, ctx.settings.prometheus_timeout_s)
    fresh = False
    try:
        while (judged := _standing(checks, taken)).verdict is Verdict.RUNNING:
            due = []
            for check in checks:
                mine = _of(check, taken)
                if verdict(check[1], mine) is Verdict.RUNNING:
                    at = mine[-1].at + timedelta(seconds=check[1].interval_s) if mine else now()
                    due.append((at, check))
            wait_s = (min(at for at, _ in due) - now()).total_seconds()
            if wait_s > 0:
                held, failure = await hold(subscription, release, wait_s)
                if failure is not None or not held:
                    return Judged(Verdict.RUNNING, failure=failure, stopped=not held)
                if not await _still_paused(ctx, release):
                    return Judged(Verdict.RUNNING, stopped=True)
                continue
            ready = [check for at, check in due if at <= now()]
            measured = await asyncio.gather(
                *(_measure(prometheus, c, step, fill(c[1].query, values, labels)) for c in ready)
            )
            await ctx.releases.measure(release.id, list(measured))
            taken += measured
            fresh = True
    finally:
        await prometheus.close()
    judged.fresh = fresh
    return judged


async def _still_paused(ctx: Context, release: Release) -> bool:
    now_in = await ctx.releases.head(release.id)
    return (
        now_in is not None
        and now_in.state is ReleaseState.PAUSED
        and now_in.canary_step == release.canary_step
    )


async def _measure(prometheus: Prometheus, check: Check, step: int, query: str) -> Measurement:
    template, metric = check
    value, detail = await prometheus.value(query)
    return Measurement(
        step=step,
        template=template.name,
        metric=metric.name,
        value=value,
        phase=phase_of(metric, value),
        query=query,
        detail=detail,
    )
