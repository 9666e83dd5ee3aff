"""Server-rendered charts: a product's quality check history as inline SVG (no script, no external asset)."""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any

from markupsafe import Markup

ROW_HEIGHT = 26
LABEL_WIDTH = 170
STEP = 18
MAX_RUNS = 40
"""The chart shows each check's latest runs, at most this many."""


def quality_history(results: list[dict[str, Any]]) -> Markup | None:
    """One row per check, one mark per run (oldest left): a filled green circle passed, a red square failed,
    a grey ring could not run. Each mark has a tooltip with its time and detail. None without results."""
    if not results:
        return None
    by_check: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(results, key=lambda r: r["checked_at"]):
        by_check.setdefault(row["check"], []).append(row)
    runs = min(MAX_RUNS, max(len(rows) for rows in by_check.values()))
    width = LABEL_WIDTH + runs * STEP + 10
    height = len(by_check) * ROW_HEIGHT + 8
    parts = [
        f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        ' xmlns="http://www.w3.org/2000/svg"><title>Quality check history: one row per check, oldest run left</title>'
    ]
    for i, (check, rows) in enumerate(by_check.items()):
        y = 4 + i * ROW_HEIGHT + ROW_HEIGHT // 2
        parts.append(f'<text x="4" y="{y + 4}" class="chart-label">{escape(_cut(check, 24))}</text>')
        parts.append(
            f'<line x1="{LABEL_WIDTH}" y1="{y}" x2="{LABEL_WIDTH + runs * STEP}" y2="{y}" class="chart-axis"/>'
        )
        for j, row in enumerate(rows[-runs:]):
            x = LABEL_WIDTH + j * STEP + STEP // 2
            tip = escape(f"{row['checked_at']:%Y-%m-%d %H:%M:%S} UTC: {row['outcome']} - {row['detail'] or ''}")
            if row["outcome"] == "pass":
                mark = f'<circle cx="{x}" cy="{y}" r="6" class="mark-pass">'
                end = "</circle>"
            elif row["outcome"] == "fail":
                mark = f'<rect x="{x - 6}" y="{y - 6}" width="12" height="12" class="mark-fail">'
                end = "</rect>"
            else:
                mark = f'<circle cx="{x}" cy="{y}" r="5" class="mark-error">'
                end = "</circle>"
            parts.append(f"{mark}<title>{tip}</title>{end}")
    parts.append("</svg>")
    return Markup("".join(parts))  # every text in it went through html.escape


def age_text(age: dt.timedelta) -> str:
    """``3 d 4 h``, ``12 min``, ``in the future`` for a newest row later than now."""
    seconds = int(age.total_seconds())
    if seconds < 0:
        return "newest row is in the future"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{seconds} s"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
