"""The restore summary as the user sees it: good news, shown as information, not as an error.

A ``display_data`` in the first cell's output after a restore: HTML styled with
JupyterLab's (and Notebook 7's) information colours, the headline first and one
line per kind of news below it; ``text/plain`` is the same summary on one line,
for ``jupyter console`` and any frontend without HTML. Warnings about the
journal (a full disk, a value that cannot be stored) stay on stderr.
"""

from __future__ import annotations

import html
from typing import Any

# Marks the display as the restore notice, for clients that tell it from the cell's own output.
NOTICE_METADATA: dict[str, Any] = {"persistent_kernel": {"notice": "restore"}}

_BOX_STYLE = (
    "border-left: 4px solid var(--jp-info-color1, #1976d2);"
    "background: var(--jp-info-color3, #e3f2fd);"
    "color: var(--jp-ui-font-color1, #212121);"
    "padding: 6px 10px; margin: 2px 0;"
    "font-family: var(--jp-ui-font-family, sans-serif); font-size: var(--jp-ui-font-size1, 13px);"
)


def restore_notice(parts: list[str]) -> tuple[dict[str, str], dict[str, Any]]:
    """(data, metadata) of the notice for a restore summary's sentences (headline first)."""
    headline, details = parts[0], parts[1:]
    items = "".join(f"<li>{html.escape(part, quote=False)}</li>" for part in details)
    body = f'<ul style="margin: 4px 0 0 0; padding-left: 18px;">{items}</ul>' if items else ""
    markup = (
        f'<div class="persistent-kernel-notice" role="status" style="{_BOX_STYLE}">'
        f"<strong>&#x21bb; {html.escape(headline, quote=False)}</strong>{body}</div>"
    )
    return {"text/plain": " ".join(parts), "text/html": markup}, dict(NOTICE_METADATA)
