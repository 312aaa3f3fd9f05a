"""Small charts drawn as SVG on the server: no script, no chart library.

Written by hand because the charts are a few bars and lines; a plotting library would bring a
large dependency to emit the same dozen elements. Each chart is an ``img`` role with a
``<title>`` and ``<desc>``; the page shows the same numbers as a table next to it. Colours
reach 3:1 contrast on white (WCAG 2.2, 1.4.11) and series also differ by dash pattern.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 640
HEIGHT = 240
LEFT = 44
RIGHT = 12
TOP = 12
BOTTOM = 36
#: Dark enough for 3:1 against white; paired with dash patterns so colour is not the only cue.
PALETTE = ("#1d4ed8", "#b91c1c", "#047857", "#7c2d12", "#6d28d9", "#0f766e", "#374151")
DASHES = ("", "6 3", "2 3", "8 3 2 3", "1 2", "10 4", "4 4")


@dataclass(frozen=True)
class Line:
    label: str
    values: Sequence[int]


def _scale(peak: int) -> int:
    """A round, even top for the vertical axis (its middle line is labelled too), at least 2."""
    top = max(peak, 2)
    for step in (2, 4, 10, 20, 50, 100, 200, 500, 1000):
        if top <= step * 4:
            return -(-top // step) * step
    return top + top % 2


def _frame(chart_id: str, title: str, desc: str, labels: Sequence[str], top: int) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'class="chart" width="100%" role="img" aria-labelledby="{chart_id}-t {chart_id}-d" '
        f'id="{chart_id}">',
        f'<title id="{chart_id}-t">{escape(title)}</title>',
        f'<desc id="{chart_id}-d">{escape(desc)}</desc>',
    ]
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
            f'stroke="#6b7280" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="12" '
            f'fill="#1f2937">{round(top * fraction)}</text>'
        )
    step = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    every = max(1, len(labels) // 7)
    for i, label in enumerate(labels):
        if i % every == 0 or i == len(labels) - 1:
            x = LEFT + step * (i + 0.5)
            parts.append(
                f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle" '
                f'font-size="12" fill="#1f2937">{escape(label)}</text>'
            )
    return parts


def bar_chart(
    chart_id: str, title: str, desc: str, labels: Sequence[str], values: Sequence[int]
) -> Markup:
    """One bar per label."""
    top = _scale(max(values, default=0))
    parts = _frame(chart_id, title, desc, labels, top)
    plot_h = HEIGHT - TOP - BOTTOM
    step = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    for i, value in enumerate(values):
        h = plot_h * value / top
        parts.append(
            f'<rect x="{LEFT + step * i + step * 0.15:.1f}" y="{TOP + plot_h - h:.1f}" '
            f'width="{step * 0.7:.1f}" height="{h:.1f}" fill="{PALETTE[0]}"/>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text in it went through escape)


def line_chart(
    chart_id: str, title: str, desc: str, labels: Sequence[str], lines: Sequence[Line]
) -> Markup:
    """One polyline per series, each with its own colour and dash pattern."""
    top = _scale(max((v for line in lines for v in line.values), default=0))
    parts = _frame(chart_id, title, desc, labels, top)
    plot_h = HEIGHT - TOP - BOTTOM
    step = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    for n, line in enumerate(lines):
        colour, dash = PALETTE[n % len(PALETTE)], DASHES[n % len(DASHES)]
        points = " ".join(
            f"{LEFT + step * (i + 0.5):.1f},{TOP + plot_h * (1 - v / top):.1f}"
            for i, v in enumerate(line.values)
        )
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2.5"'
            f"{dashed}/>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text in it went through escape)


def swatch(n: int) -> Markup:
    """The colour and dash of series ``n``, drawn for the legend (decorative: the label says it)."""
    dash = DASHES[n % len(DASHES)]
    dashed = f' stroke-dasharray="{dash}"' if dash else ""
    return Markup(  # noqa: S704 (no outside text in it)
        f'<svg xmlns="http://www.w3.org/2000/svg" width="32" height="12" viewBox="0 0 32 12" '
        f'aria-hidden="true" focusable="false"><line x1="0" y1="6" x2="32" y2="6" '
        f'stroke="{PALETTE[n % len(PALETTE)]}" stroke-width="3"{dashed}/></svg>'
    )
