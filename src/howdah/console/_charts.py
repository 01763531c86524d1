"""The geometry of the console's small charts, free of I/O: the templates draw what these compute."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["DepthLine", "depth_line"]

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class DepthLine:
    points: str  # an SVG polyline's points, x from an hour ago (0) to now (width), y down from the top
    last: tuple[float, float]  # the newest point (marked: a line of one sample draws nothing)
    peak: int  # the deepest sample, the top of the chart
    latest: int  # the newest sample
    samples: int


def depth_line(samples: Sequence[tuple[datetime, int]], now: datetime, width: int, height: int) -> DepthLine | None:
    """Messages queued over the last hour as a line ``width`` by ``height``: each sample (its minute, the depth of
    every queue together) placed by its age, oldest first; None when there is no sample of the last hour."""
    recent = sorted((at, depth) for at, depth in samples if timedelta(0) <= now - at <= HOUR)
    if not recent:
        return None
    peak = max(depth for _, depth in recent)
    points = [
        (round(width * (1 - (now - at) / HOUR), 1), round(height - (depth / peak * height if peak else 0), 1))
        for at, depth in recent
    ]
    return DepthLine(" ".join(f"{x:.1f},{y:.1f}" for x, y in points), points[-1], peak, recent[-1][1], len(recent))
