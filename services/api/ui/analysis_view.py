"""The analysis part of a release page: per canary step (or the blue-green preview),
each metric's condition, where its measurements stand, and their values as a small
SVG drawn on the server, read again every few seconds while the release moves."""

from dataclasses import dataclass
from html import escape

from shared.models.analysis import Measurement, Metric, Phase, Verdict, verdict
from shared.models.release import Release

WIDTH, HEIGHT, PAD = 240, 48, 6
COLOURS = {Phase.PASSED: "#1a7f37", Phase.FAILED: "#cf222e", Phase.INCONCLUSIVE: "#9a6700"}


@dataclass(frozen=True)
class MetricRow:
    template: str
    metric: Metric
    taken: list[Measurement]
    verdict: Verdict
    chart: str

    @property
    def failed(self) -> int:
        return sum(1 for m in self.taken if m.phase is Phase.FAILED)

    @property
    def last(self) -> Measurement | None:
        return self.taken[-1] if self.taken else None


@dataclass(frozen=True)
class StepAnalysis:
    step: int  # 1-based
    rows: list[MetricRow]


def chart(taken: list[Measurement], count: int) -> str:
    """The values as dots over ``count`` places, coloured by phase (a gap where none)."""
    values = [m.value for m in taken if m.value is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    span = (high - low) or 1.0
    step = (WIDTH - 2 * PAD) / max(count - 1, 1)
    dots = []
    for i, m in enumerate(taken[: max(count, len(taken))]):
        x = PAD + i * step if i < count else WIDTH - PAD
        y: float = HEIGHT - PAD
        if m.value is None:
            title = f"{m.phase}: {m.detail}"
        else:
            y, title = HEIGHT - PAD - (m.value - low) / span * (HEIGHT - 2 * PAD), f"{m.value:g}"
        dots.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{COLOURS[m.phase]}">'
            f"<title>{escape(m.at.strftime('%H:%M:%S'))} {escape(title)}</title></circle>"
        )
    return (
        f'<svg class="measurements" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}"><line x1="{PAD}" y1="{HEIGHT - PAD}" '
        f'x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#d0d7de"/>{"".join(dots)}</svg>'
    )


def analysis_view(release: Release) -> list[StepAnalysis]:
    """Every step that names analysis templates and has been reached, oldest first."""
    templates = {a.name: a for a in release.analyses}
    named = [step.analysis for step in release.params.canary]
    if release.params.blue_green is not None:
        named = [release.params.blue_green.analysis]
    reached = (release.canary_step or 0) if release.canary_step is not None else len(named)
    steps = []
    for index, names in enumerate(named):
        if not names or index > reached:
            continue
        rows = []
        for name in names:
            template = templates.get(name)
            for metric in template.metrics if template else []:
                taken = [
                    m
                    for m in release.measurements
                    if m.step == index and m.template == name and m.metric == metric.name
                ]
                rows.append(
                    MetricRow(
                        name, metric, taken, verdict(metric, taken), chart(taken, metric.count)
                    )
                )
        steps.append(StepAnalysis(index + 1, rows))
    return steps


def inconclusive(release: Release, index: int) -> bool:
    """Whether the analysis of step ``index`` (0-based) ended inconclusive."""
    return any(
        row.verdict is Verdict.INCONCLUSIVE
        for step in analysis_view(release)
        if step.step == index + 1
        for row in step.rows
    )
