"""A segment's size over the last nights as a small inline SVG (no chart library, nothing fetched by the browser)."""

from __future__ import annotations

from datetime import date
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT, PAD = 180, 40, 4


def trend_svg(points: list[tuple[date, int | None]]) -> Markup:
    """A line through the nights' sizes (y from 0 to the largest), a dot per night with its value as a tooltip;
    nights where the segment was not evaluated are gaps, not zeros."""
    values = [v for _, v in points if v is not None]
    label = "; ".join(f"{d.isoformat()}: {'not evaluated' if v is None else f'{v:,}'}" for d, v in points)
    if not values:
        return Markup(f'<svg class="trend" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="no sizes yet">'
                      f'<text x="4" y="{HEIGHT // 2 + 4}" font-size="11" fill="#888">no nights yet</text></svg>')
    top = max(values) or 1
    step = (WIDTH - 2 * PAD) / max(len(points) - 1, 1)

    def xy(i: int, v: int) -> tuple[float, float]:
        return PAD + i * step, HEIGHT - PAD - (HEIGHT - 2 * PAD) * v / top

    runs, current = [], []
    for i, (_, v) in enumerate(points):
        if v is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(xy(i, v))
    if current:
        runs.append(current)
    lines = "".join(f'<polyline fill="none" stroke="#2563eb" stroke-width="1.5" points="'
                    f'{" ".join(f"{x:.1f},{y:.1f}" for x, y in run)}"/>' for run in runs)
    dots = "".join(f'<circle cx="{xy(i, v)[0]:.1f}" cy="{xy(i, v)[1]:.1f}" r="2" fill="#2563eb">'
                   f'<title>{escape(d.isoformat())}: {v:,}</title></circle>'
                   for i, (d, v) in enumerate(points) if v is not None)
    return Markup(f'<svg class="trend" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
                  f'aria-label="{escape(label)}">{lines}{dots}</svg>')
