"""Server-rendered SVG charts (no script, no CDN): bars by day and horizontal bars.

Each chart is an ``<svg role="img">`` named by its ``<title>`` and described by its
``<desc>`` (the figures a screen reader needs); every bar carries its own ``<title>``
(a tooltip). The pages put the same numbers in a table next to each chart.
Colours and fonts come from static/dashboard/city.css (classes), so the page's CSP
needs no inline styles.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from markupsafe import Markup, escape


@dataclass(frozen=True)
class Bar:
    label: str       # axis label
    value: int       # what the bar's length shows
    tooltip: str     # full text for this bar
    highlight: bool = False


def nice_step(peak: int, steps: int = 4) -> int:
    """A round gridline step so that `steps` of them cover `peak` (labels stay exact)."""
    return nice_ceiling(-(-max(peak, 1) // steps))


def nice_ceiling(value: int) -> int:
    """Smallest 'nice' number (1, 2, 2.5, 5 × 10^k) at or above value (at least 1)."""
    if value <= 0:
        return 1
    exponent = 10 ** int(math.floor(math.log10(value)))
    for step in (1, 2, 2.5, 5, 10):
        candidate = int(step * exponent)
        if candidate >= value:
            return candidate
    return 10 * exponent


def _f(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def column_chart(chart_id: str, title: str, desc: str, bars: Sequence[Bar],
                 axis_label: Callable[[int], str], *, width: int = 1000, height: int = 280,
                 max_labels: int = 10) -> Markup:
    left, right, top, bottom = 78, 12, 16, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    step_value = nice_step(max([b.value for b in bars] + [0]))
    peak = 4 * step_value
    out = [f'<svg class="chart chart-columns" id="{chart_id}" viewBox="0 0 {width} {height}" '
           f'role="img" aria-labelledby="{chart_id}-t {chart_id}-d" '
           f'preserveAspectRatio="xMidYMid meet" focusable="false">',
           f'<title id="{chart_id}-t">{escape(title)}</title>',
           f'<desc id="{chart_id}-d">{escape(desc)}</desc>']
    for i in range(5):
        value = step_value * i
        y = top + plot_h - plot_h * i / 4
        out.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{_f(y)}" y2="{_f(y)}" '
                   f'stroke="#d5dbe3"/>')
        out.append(f'<text class="axis" x="{left - 8}" y="{_f(y + 4)}" text-anchor="end">'
                   f'{escape(axis_label(value))}</text>')
    n = max(1, len(bars))
    band = plot_w / n
    bar_w = max(1.0, band * (0.72 if n > 1 else 0.3))
    step = max(1, math.ceil(n / max_labels))
    for i, bar in enumerate(bars):
        x = left + band * i + (band - bar_w) / 2
        h = plot_h * bar.value / peak if peak else 0
        if bar.value > 0:
            h = max(h, 1.5)
        cls = "bar bar-hi" if bar.highlight else "bar"
        out.append(f'<rect class="{cls}" x="{_f(x)}" y="{_f(top + plot_h - h)}" width="{_f(bar_w)}" '
                   f'height="{_f(h)}" rx="2" fill="#0b4f9c"><title>{escape(bar.tooltip)}</title></rect>')
        if i % step == 0 or i == n - 1 and n <= max_labels:
            out.append(f'<text class="axis" x="{_f(left + band * i + band / 2)}" '
                       f'y="{height - bottom + 26}" text-anchor="middle">{escape(bar.label)}</text>')
    out.append(f'<line class="baseline" x1="{left}" x2="{width - right}" y1="{top + plot_h}" '
               f'y2="{top + plot_h}" stroke="#6b7785"/>')
    out.append("</svg>")
    return Markup("".join(out))


def bar_list_chart(chart_id: str, title: str, desc: str, bars: Sequence[Bar],
                   value_text: Callable[[int], str], *, width: int = 470, row: int = 26,
                   label_width: int = 136, value_width: int = 84) -> Markup:
    top = 6
    height = top * 2 + row * max(1, len(bars))
    plot_w = width - label_width - value_width - 8
    peak = max([b.value for b in bars] + [1])
    out = [f'<svg class="chart chart-bars" id="{chart_id}" viewBox="0 0 {width} {height}" '
           f'role="img" aria-labelledby="{chart_id}-t {chart_id}-d" focusable="false">',
           f'<title id="{chart_id}-t">{escape(title)}</title>',
           f'<desc id="{chart_id}-d">{escape(desc)}</desc>']
    for i, bar in enumerate(bars):
        y = top + i * row
        w = plot_w * bar.value / peak if peak else 0
        if bar.value > 0:
            w = max(w, 2)
        out.append(f'<text class="label" x="{label_width - 8}" y="{y + row / 2 + 4.5:.1f}" '
                   f'text-anchor="end">{escape(bar.label)}</text>')
        out.append(f'<rect class="track" x="{label_width}" y="{y + 5}" width="{plot_w}" '
                   f'height="{row - 10}" rx="3" fill="#eef2f7"/>')
        out.append(f'<rect class="bar" x="{label_width}" y="{y + 5}" width="{_f(w)}" '
                   f'height="{row - 10}" rx="3" fill="#0b4f9c"><title>{escape(bar.tooltip)}</title></rect>')
        out.append(f'<text class="value" x="{width - 4}" y="{y + row / 2 + 4.5:.1f}" '
                   f'text-anchor="end">{escape(value_text(bar.value))}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def gauge(chart_id: str, title: str, desc: str, value: int, cap: int, *, width: int = 460,
          height: int = 28) -> Markup:
    """A single horizontal meter: value against cap (over the cap fills red)."""
    share = min(1.0, value / cap) if cap > 0 else (1.0 if value else 0.0)
    over = cap > 0 and value > cap
    cls = "gauge-fill over" if over else ("gauge-fill warn" if share >= 0.8 else "gauge-fill")
    return Markup(
        f'<svg class="chart gauge" id="{chart_id}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d" focusable="false">'
        f'<title id="{chart_id}-t">{escape(title)}</title><desc id="{chart_id}-d">{escape(desc)}</desc>'
        f'<rect class="gauge-track" x="0" y="4" width="{width}" height="{height - 8}" rx="6" fill="#e5e9ef"/>'
        f'<rect class="{cls}" x="0" y="4" width="{_f(width * share)}" height="{height - 8}" rx="6" '
        f'fill="#0b4f9c"/></svg>')
