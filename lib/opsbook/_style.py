"""The one stylesheet of the archive's pages (report.html and index.html), inlined.

Dark on light, system fonts, monospace for code; badges and boxes for the classes the
steps API emits (`ob-step`, `ob-finding`, `ob-verdict`, `ob-action`, `ob-badge ob-*`,
`ob-table`); the few pygments and ANSI classes nbconvert's basic template produces; and
print rules. No web fonts, no url(), nothing to fetch.
"""

from __future__ import annotations

import re

_CSS = """
:root{--ink:#1f2937;--muted:#6b7280;--line:#e5e7eb;--bg:#f5f6f8;--card:#fff;--code:#f6f8fa;
--pass:#15803d;--pass-bg:#dcfce7;--fail:#b91c1c;--fail-bg:#fee2e2;--warn:#a16207;--warn-bg:#fef3c7;
--info:#1d4ed8;--info-bg:#dbeafe;--dry:#6d28d9;--dry-bg:#ede9fe;
--mono:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);line-height:1.5;
font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1080px;margin:0 auto;padding:24px 20px 48px}
a{color:var(--info)}
h1{font-size:26px;margin:2px 0 12px;display:flex;align-items:center;gap:12px;flex-wrap:wrap}
h2{font-size:13px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);margin:0 0 8px}
h3{font-size:13px;color:var(--muted);margin:12px 0 4px}
code,pre,kbd{font-family:var(--mono);font-size:13px}
code{background:var(--code);padding:1px 4px;border-radius:4px}
pre{margin:0;white-space:pre-wrap;word-break:break-word}
.ob-head,.ob-box{background:var(--card);border:1px solid var(--line);border-radius:10px;
padding:16px 20px;margin:0 0 14px}
.ob-head{border-top:6px solid var(--info)}
.ob-s-pass{border-top-color:var(--pass)}.ob-s-fail{border-top-color:var(--fail)}
.ob-s-warn{border-top-color:var(--warn)}
.ob-kicker{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.08em}
.ob-meta{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:8px 20px;margin:0}
.ob-meta dt{font-size:11px;color:var(--muted);text-transform:uppercase;letter-spacing:.05em}
.ob-meta dd{margin:0;font-family:var(--mono);font-size:13px;overflow-wrap:anywhere}
.ob-badge{display:inline-block;font:600 11px/1.6 var(--mono);text-transform:uppercase;
letter-spacing:.04em;padding:1px 8px;border-radius:999px;border:1px solid currentColor;
white-space:nowrap;vertical-align:middle}
h1 .ob-badge{font-size:13px;padding:2px 10px}
.ob-pass{color:var(--pass);background:var(--pass-bg)}.ob-fail{color:var(--fail);background:var(--fail-bg)}
.ob-warn{color:var(--warn);background:var(--warn-bg)}.ob-info{color:var(--info);background:var(--info-bg)}
.ob-dry{color:var(--dry);background:var(--dry-bg)}
.ob-applied{color:#fff;background:var(--pass);border-color:var(--pass)}
.ob-verdict-box{border-left:8px solid var(--muted)}
.ob-v-pass{border-left-color:var(--pass)}.ob-v-fail{border-left-color:var(--fail)}
.ob-v-warn{border-left-color:var(--warn)}
.ob-cause{font:700 24px/1.3 var(--mono);margin:0 0 4px}
.ob-v-pass .ob-cause{color:var(--pass)}.ob-v-fail .ob-cause{color:var(--fail)}
.ob-v-warn .ob-cause{color:var(--warn)}
.ob-evidence{margin:0;padding-left:20px}.ob-evidence li{margin:2px 0}
.ob-k{color:var(--muted)}
.ob-remedy{margin-top:10px;padding:8px 12px;background:var(--code);border-radius:6px}
.ob-remedy strong{margin-right:6px}
.ob-error-box{border-color:#fca5a5;background:#fff7f7}
.ob-error-box h2{color:var(--fail)}
.ob-error,.ob-error-inline{color:var(--fail);font-family:var(--mono);font-size:13px}
pre.ob-error{background:var(--fail-bg);padding:8px 12px;border-radius:6px}
.ob-cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:8px 28px}
.ob-steps,.ob-findings{margin:0;padding-left:22px}.ob-steps li,.ob-findings li{margin:3px 0}
.ob-dim{color:var(--muted);font-size:12px}
.ob-table{border-collapse:collapse;width:100%;font-size:13px;margin:4px 0}
.ob-table th{text-align:left;font-weight:600;color:var(--muted);border-bottom:2px solid var(--line);padding:6px 8px}
.ob-table td{border-bottom:1px solid var(--line);padding:6px 8px;vertical-align:top}
.ob-table tr:nth-child(even) td{background:#fafafa}
.ob-nb-title{margin:26px 0 10px}
.ob-cell{background:var(--card);border:1px solid var(--line);border-radius:8px;margin:0 0 10px;
padding:10px 16px;scroll-margin-top:12px}
.ob-cell-markdown{background:transparent;border-color:transparent;padding:4px 16px}
.ob-cell-params{background:#fbfbf4;border-style:dashed}
.ob-cell-failed{border:2px solid var(--fail);box-shadow:0 0 0 4px var(--fail-bg)}
.ob-cell:target{box-shadow:0 0 0 4px var(--info-bg)}
.ob-cell-label{font:11px var(--mono);color:var(--muted);margin-bottom:4px}
.ob-cell-label a{color:inherit;text-decoration:none}
.ob-cell-failed .ob-cell-label{color:var(--fail);font-weight:700}
.input_area .highlight{background:var(--code);border:1px solid var(--line);border-radius:6px;
padding:8px 12px;overflow-x:auto}
.input_area pre{white-space:pre}
.output_area{margin-top:8px}
.output_text pre,.output_stream pre{padding:2px 0}
.output_stderr pre{background:#fffbeb;padding:4px 8px;border-radius:4px}
.output_error pre{background:#fff5f5;padding:8px 12px;border-radius:6px;color:#111}
.output_png img,.output_svg img,.output_jpeg img{max-width:100%;height:auto}
.output_html{overflow-x:auto}
.rendered_html table:not(.ob-table){border-collapse:collapse;font-size:13px}
.rendered_html table:not(.ob-table) th,.rendered_html table:not(.ob-table) td{
border-bottom:1px solid var(--line);padding:4px 8px;text-align:left}
.rendered_html table.dataframe td{text-align:right}
.rendered_html h1,.rendered_html h2,.rendered_html h3{text-transform:none;letter-spacing:0;
color:var(--ink);display:block}
.rendered_html h1{font-size:22px}.rendered_html h2{font-size:18px}.rendered_html h3{font-size:15px}
.anchor-link{visibility:hidden;margin-left:6px;text-decoration:none;color:var(--muted)}
h1:hover .anchor-link,h2:hover .anchor-link,h3:hover .anchor-link{visibility:visible}
.ob-step{margin:4px 0;font-weight:600;font-size:16px}
.ob-step-n{font:600 11px var(--mono);color:#fff;background:var(--ink);padding:2px 8px;
border-radius:4px;margin-right:6px;text-transform:uppercase;vertical-align:middle}
.ob-step-end{margin:2px 0;font-size:14px}
.ob-finding{margin:6px 0;padding:6px 10px;border-left:3px solid var(--warn);background:#fffdf5}
.ob-finding ul,.ob-verdict ul,.ob-action ul{margin:4px 0;padding-left:20px;font-size:13px}
.ob-verdict{margin:8px 0;padding:10px 14px;border-radius:8px;border:1px solid var(--line);
border-left:6px solid var(--muted)}
.ob-verdict-pass{border-left-color:var(--pass)}.ob-verdict-fail{border-left-color:var(--fail)}
.ob-verdict-warn{border-left-color:var(--warn)}.ob-verdict-title{font-weight:700}
.ob-action{margin:6px 0;padding:6px 10px;border:1px solid var(--line);border-radius:6px}
.ob-hint{font-size:13px;color:var(--muted);margin-top:4px}
.ob-done pre{background:var(--code);padding:8px 12px;border-radius:6px}
.ob-note{font-size:13px;color:var(--muted);border:1px dashed var(--line);padding:8px 12px;border-radius:6px}
.ob-chart svg{max-width:100%;height:auto}
.ob-foot{margin-top:28px;font-size:12px;color:var(--muted);text-align:center}
.ob-filter{font:14px var(--mono);padding:6px 10px;border:1px solid var(--line);border-radius:6px;
width:100%;max-width:420px;margin-bottom:10px}
.ansi-bold{font-weight:700}.ansi-underline{text-decoration:underline}
.ansi-black-fg{color:#3e424d}.ansi-red-fg,.ansi-red-intense-fg{color:#b22b31}
.ansi-green-fg,.ansi-green-intense-fg{color:#007427}.ansi-yellow-fg,.ansi-yellow-intense-fg{color:#b27d12}
.ansi-blue-fg,.ansi-blue-intense-fg{color:#0065ca}.ansi-magenta-fg,.ansi-magenta-intense-fg{color:#a03196}
.ansi-cyan-fg,.ansi-cyan-intense-fg{color:#258f8f}.ansi-white-fg{color:#a1a6b2}
.ansi-red-bg{background:#fde2e2}.ansi-green-bg{background:#dcfce7}.ansi-yellow-bg{background:#fef3c7}
@media print{
body{background:#fff;font-size:12px}main{max-width:none;padding:0}
.ob-head,.ob-box,.ob-cell{break-inside:avoid;box-shadow:none}
.ob-cell{border-color:#ccc}.input_area pre{white-space:pre-wrap}
a{color:inherit;text-decoration:none}.ob-filter{display:none}
.ob-badge{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
"""

# pygments token classes, scoped to code blocks (`.highlight`) so outputs keep theirs
_PYGMENTS = {
    "c c1 cm ch cs cp": "color:#6a737d;font-style:italic",
    "k kn kd kc kr ow": "color:#8250df;font-weight:600",
    "kt": "color:#8250df",
    "s s1 s2 sa sb sc sd se sh si sr ss": "color:#0a3069",
    "m mi mf mh mo il": "color:#0550ae",
    "nb bp nd": "color:#953800",
    "nf fm": "color:#6639ba",
    "nc nn": "color:#1f6feb",
    "o": "color:#cf222e",
    "err": "color:#b91c1c",
}
_CSS += "".join(
    ",".join(f".highlight .{c}" for c in classes.split()) + "{" + style + "}"
    for classes, style in _PYGMENTS.items()
)

# One line per rule is readable above; shipped without the line breaks after `}`.
PAGE_CSS = re.sub(r"\n+", "", _CSS).strip()
