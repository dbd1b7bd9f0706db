"""Charts as inline SVG, drawn on the server: no JavaScript, nothing fetched by the browser.

Bars whose value was withheld by small-count suppression are drawn as a hatched stub labelled
"< N", so a chart never shows a number the catalogue does not publish.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from markupsafe import Markup

ROW = 26  # height of one bar's row
LABEL_WIDTH = 150
BAR_WIDTH = 200
VALUE_WIDTH = 60


@dataclass(frozen=True)
class Bar:
    label: str
    value: int | None  # None: withheld (below the threshold)


def bar_chart(title: str, bars: list[Bar], threshold: int | None = None) -> Markup:
    """Horizontal bars (they read on a phone as on a desktop), largest scale from the published values."""
    if not bars:
        return Markup(f'<p class="empty">{escape(title)}: nothing to show</p>')
    width = LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH
    height = ROW * len(bars) + 4
    top = max((b.value for b in bars if b.value), default=1) or 1
    hatch = "withheld-" + "".join(c if c.isalnum() else "-" for c in title.lower())  # one id per chart of a page
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<defs><pattern id="{hatch}" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="3" height="6" class="hatch"/></pattern></defs>',
    ]
    for row, bar in enumerate(bars):
        y = row * ROW + 2
        label = bar.label if len(bar.label) <= 22 else bar.label[:21] + "…"
        parts.append(
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 17}" text-anchor="end" class="label">'
            f"<title>{escape(bar.label)}</title>{escape(label)}</text>"
        )
        if bar.value is None:
            stub = max(BAR_WIDTH * ((threshold or 1) - 1) / top, 6) if threshold else 6
            parts.append(
                f'<rect x="{LABEL_WIDTH}" y="{y + 4}" width="{min(stub, BAR_WIDTH):.1f}" height="{ROW - 8}" '
                f'fill="url(#{hatch})" class="withheld"/>'
            )
            text = f"&lt; {threshold}" if threshold else "withheld"
        else:
            length = BAR_WIDTH * bar.value / top
            parts.append(
                f'<rect x="{LABEL_WIDTH}" y="{y + 4}" width="{max(length, 1):.1f}" height="{ROW - 8}" class="bar"/>'
            )
            text = str(bar.value)
        parts.append(f'<text x="{LABEL_WIDTH + BAR_WIDTH + 6}" y="{y + 17}" class="value">{text}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def column_chart(title: str, columns: list[Bar]) -> Markup:
    """Vertical columns over time (one per period, labels every few columns so they never collide)."""
    if not columns:
        return Markup(f'<p class="empty">{escape(title)}: nothing to show</p>')
    width, height, bottom, left = 480, 200, 40, 36
    plot = height - bottom - 10
    top = max((c.value or 0 for c in columns), default=0) or 1
    step = (width - left - 4) / len(columns)
    every = max(1, round(len(columns) / 8))
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<line x1="{left}" y1="{10 + plot}" x2="{width}" y2="{10 + plot}" class="axis"/>',
        f'<text x="{left - 4}" y="16" text-anchor="end" class="value">{top}</text>',
        f'<text x="{left - 4}" y="{10 + plot}" text-anchor="end" class="value">0</text>',
    ]
    for index, column in enumerate(columns):
        value = column.value or 0
        bar = plot * value / top
        x = left + index * step
        parts.append(
            f'<rect x="{x + step * 0.12:.1f}" y="{10 + plot - bar:.1f}" width="{step * 0.76:.1f}" '
            f'height="{bar:.1f}" class="bar"><title>{escape(column.label)}: {value}</title></rect>'
        )
        if index % every == 0:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{height - bottom + 26}" text-anchor="middle" class="label">'
                f"{escape(column.label)}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))
