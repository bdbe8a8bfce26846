"""Small SVG bar charts of a service's releases per week, drawn on the server."""

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

from services.api.schemas import ReleaseSummary
from services.api.ui.i18n import Translate
from shared.models.base import now
from shared.release.machine import ReleaseState

WEEKS = 12
WIDTH, HEIGHT, PAD = 360, 120, 18


@dataclass(frozen=True)
class Week:
    start: datetime
    releases: int
    failure_rate: float | None  # of the finished ones
    median_s: float | None


def weeks(releases: list[ReleaseSummary], count: int = WEEKS) -> list[Week]:
    """Per week, oldest first, ending with the current one."""
    today = now().replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - timedelta(days=today.weekday(), weeks=count - 1)
    buckets: list[list[ReleaseSummary]] = [[] for _ in range(count)]
    for release in releases:
        index = (release.created_at - first).days // 7
        if 0 <= index < count:
            buckets[index].append(release)
    out = []
    for index, bucket in enumerate(buckets):
        ended = [r for r in bucket if r.state in (ReleaseState.SUCCEEDED, ReleaseState.FAILED)]
        failed = sum(r.state is ReleaseState.FAILED for r in ended)
        durations = [r.duration_s for r in ended if r.duration_s is not None]
        out.append(
            Week(
                start=first + timedelta(weeks=index),
                releases=len(bucket),
                failure_rate=failed / len(ended) if ended else None,
                median_s=statistics.median(durations) if durations else None,
            )
        )
    return out


def empty(title: str, said: str) -> str:
    """What a chart of no data shows: that there is nothing yet, and no made-up axes."""
    return f'<p class="chart-empty" role="img" aria-label="{escape(title)}">{escape(said)}</p>'


def bars(values: list[float | None], labels: list[str], title: str, unit: str = "") -> str:
    """An accessible SVG bar chart (a title, one bar per value, the value on hover)."""
    highest = max([v for v in values if v is not None] or [0])
    top = highest or 1  # the scale; the label says what the highest bar is
    step = (WIDTH - 2 * PAD) / max(len(values), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'class="axis"/>',
    ]
    for index, value in enumerate(values):
        x = PAD + index * step + step * 0.15
        height = 0.0 if value is None else (HEIGHT - 2 * PAD) * value / top
        shown = "-" if value is None else f"{value:g}{unit}"
        parts.append(
            f'<rect x="{x:.1f}" y="{HEIGHT - PAD - height:.1f}" width="{step * 0.7:.1f}" '
            f'height="{height:.1f}"><title>{escape(labels[index])}: {escape(shown)}</title></rect>'
        )
    parts.append(
        f'<text x="{PAD}" y="{PAD - 5}" class="max">{highest:g}{escape(unit)}</text>'
        f'<text x="{PAD}" y="{HEIGHT - 4}">{escape(labels[0])}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 4}" text-anchor="end">{escape(labels[-1])}</text>'
        "</svg>"
    )
    return "".join(parts)


def charts(releases: list[ReleaseSummary], t: Translate) -> list[tuple[str, str]]:
    """Release frequency, failure rate and median duration over the last weeks:
    (title, SVG) each."""
    data = weeks(releases)
    labels = [w.start.strftime("%m-%d") for w in data]
    rate = [None if w.failure_rate is None else round(100 * w.failure_rate) for w in data]
    median = [None if w.median_s is None else round(w.median_s, 1) for w in data]
    frequency, failures, durations = (
        t("Release frequency (per week)"),
        t("Failure rate (per week)"),
        t("Median duration (per week, s)"),
    )
    if not any(w.releases for w in data):
        nothing = t("Nothing yet: no releases in these weeks.")
        return [(title, empty(title, nothing)) for title in (frequency, failures, durations)]
    if all(r is None for r in rate):
        nothing = t("Nothing yet: no release finished in these weeks.")
        return [
            (frequency, bars([float(w.releases) for w in data], labels, frequency)),
            (failures, empty(failures, nothing)),
            (durations, empty(durations, nothing)),
        ]
    return [
        (frequency, bars([float(w.releases) for w in data], labels, frequency)),
        (failures, bars([None if r is None else float(r) for r in rate], labels, failures, "%")),
        (durations, bars(median, labels, durations, "s")),
    ]
