"""Show things: rich HTML in Jupyter (and in the archived HTML), plain text in logs.

Every output is a MIME bundle with both `text/html` and `text/plain`, so Jupyter shows
the HTML, papermill's log and a terminal show the text, and nbconvert keeps the HTML.
Outside a kernel it prints the plain text.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

BADGES = {
    "passed": "pass",
    "pass": "pass",
    "healthy": "pass",
    "applied": "applied",
    "failed": "fail",
    "fail": "fail",
    "error": "fail",
    "critical": "fail",
    "refused": "fail",
    "warning": "warn",
    "warn": "warn",
    "dry-run": "dry",
    "skipped": "info",
    "info": "info",
}

ICONS = {"pass": "✔", "fail": "✘", "warn": "▲", "info": "•", "dry": "◇", "applied": "✔"}


def in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def show(html_text: str, plain: str) -> None:
    if in_kernel():
        from IPython.display import display

        display({"text/html": html_text, "text/plain": plain}, raw=True)
    else:
        print(plain)


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def badge(status: str) -> str:
    kind = BADGES.get(status, "info")
    return f'<span class="ob-badge ob-{kind}">{esc(status)}</span>'


def icon(status: str) -> str:
    return ICONS.get(BADGES.get(status, "info"), "•")


def fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def evidence_items(evidence: Any) -> list[str]:
    if evidence is None:
        return []
    if isinstance(evidence, Mapping):
        return [f"{k}: {fmt_value(v)}" for k, v in evidence.items()]
    if isinstance(evidence, (list, tuple)):
        return [fmt_value(e) for e in evidence]
    return [fmt_value(evidence)]


def html_list(items: Iterable[str]) -> str:
    body = "".join(f"<li>{esc(i)}</li>" for i in items)
    return f"<ul>{body}</ul>" if body else ""


def table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None
) -> tuple[str, str]:
    """(html, plain) for a list of dict rows."""
    if not rows:
        return "<p><em>no rows</em></p>", "(no rows)"
    cols = list(columns or rows[0].keys())
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(fmt_value(r.get(c, '')))}</td>" for c in cols) + "</tr>"
        for r in rows
    )
    widths = [max(len(c), *(len(fmt_value(r.get(c, ""))) for r in rows)) for c in cols]
    widths = [min(w, 48) for w in widths]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))
    plain = [line, "  ".join("-" * w for w in widths)]
    for r in rows:
        plain.append(
            "  ".join(
                fmt_value(r.get(c, ""))[:w].ljust(w) for c, w in zip(cols, widths, strict=True)
            )
        )
    return f'<table class="ob-table"><tr>{head}</tr>{body}</table>', "\n".join(plain)


def show_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, title: str = ""
) -> None:
    html_text, plain = table(rows, columns)
    if title:
        html_text = f"<p><strong>{esc(title)}</strong></p>{html_text}"
        plain = f"{title}\n{plain}"
    show(html_text, plain)
