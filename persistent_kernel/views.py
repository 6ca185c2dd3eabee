"""Tables for ``%persist``: the same rows as plain text (console) and HTML (JupyterLab).

Plain data in, strings out; nothing here reads the store or the namespace.
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Sequence
from typing import Any

_CELL_STYLE = "padding:2px 8px;text-align:left;vertical-align:top"


def human_bytes(n: int | None) -> str:
    """Decimal units, as the restore summary writes them."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def clock(timestamp: float | None) -> str:
    """A local time: the time of day for today, the date too for older ones."""
    if not timestamp:
        return "-"
    when = datetime.datetime.fromtimestamp(timestamp)
    return when.strftime("%H:%M:%S" if when.date() == datetime.date.today() else "%Y-%m-%d %H:%M")


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, rule: bool = True) -> str:
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    if rule:
        lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
    return "\n".join(lines)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "") -> str:
    head = "".join(f'<th style="{_CELL_STYLE}">{html.escape(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td style="{_CELL_STYLE}">{html.escape(cell)}</td>' for cell in row) + "</tr>" for row in rows
    )
    title = f'<caption style="text-align:left;font-weight:bold">{html.escape(caption)}</caption>' if caption else ""
    return f'<table class="persist-table">{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def bundle(text: str, html_text: str) -> dict[str, str]:
    """A display bundle: JupyterLab renders the HTML, a console prints the text."""
    return {"text/plain": text, "text/html": html_text}


def facts_html(lines: Sequence[tuple[str, str]]) -> str:
    rows = "".join(
        f'<tr><th style="{_CELL_STYLE}">{html.escape(key)}</th><td style="{_CELL_STYLE}">{html.escape(value)}</td></tr>'
        for key, value in lines
    )
    return f'<table class="persist-facts">{rows}</table>'


def facts_text(lines: Sequence[tuple[str, str]]) -> str:
    """``Key:  value`` lines; an empty key continues the line above."""
    width = max(len(key) for key, _ in lines) + 1
    return "\n".join(f"{(key + ':' if key else '').ljust(width)} {value}" for key, value in lines)


def variables_rows(variables: Sequence[dict[str, Any]]) -> list[list[str]]:
    return [[v["name"], v["type"], human_bytes(v["bytes"]) if v["bytes"] is not None else "-", v["restored_by"]] for v in variables]


VARIABLE_HEADERS = ("name", "type", "stored size", "after a restart")
HISTORY_HEADERS = ("cell", "time", "took", "status", "changed", "stored", "recompute", "code")
DIFF_HEADERS = ("name", "change", "before", "after")
