"""The HTML page every report is: one self-contained file (inline CSS, a few lines of hand-written JS, images
as ``data:`` URIs or inline SVG), built with the standard library (``html.escape`` and f-strings).

    html = document("Predictions", subtitle, [section("Scores", table(...))], warnings=[...])
    write_page("report.html", html)

Tables (:func:`table`) sort by any column when its header is clicked (again: the other way) and, with
``filters``, narrow to rows whose name holds the typed text and whose status is the chosen one. Every cell
carries its sort value (``data-v``: a number, or text); empty values sort last either way. Nothing is
fetched: no font, no script, no stylesheet, no image comes from outside the file.
"""
from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from clifvqa_core.fileio import atomic_write

__all__ = ["Column", "Cell", "esc", "num", "data_uri", "image", "table", "section", "document", "write_page",
           "warning_box", "definition_list"]


def esc(text: Any) -> str:
    """Text for HTML (quotes too: safe inside attributes)."""
    return html.escape(str(text), quote=True)


def num(v: Any, digits: int = 3) -> str:
    """A number for display; '-' for None / NaN."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, int):
        return str(v)
    return f"{float(v):.{digits}f}"


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image(data: bytes, mime: str, alt: str, cls: str = "", width: int | None = None) -> str:
    """An inline ``<img>`` (``data:`` URI)."""
    w = f' width="{width}"' if width else ""
    c = f' class="{cls}"' if cls else ""
    return f'<img src="{data_uri(data, mime)}" alt="{esc(alt)}"{c}{w}>'


@dataclass(frozen=True)
class Column:
    """A table column: ``key`` (the header's data-col), ``label`` shown, ``numeric`` sort, ``help`` as the
    header's tooltip and under the table."""

    key: str
    label: str
    numeric: bool = False
    help: str = ""


@dataclass(frozen=True)
class Cell:
    """``html`` shown; ``sort`` the value it sorts by (None: empty, sorts last)."""

    html: str
    sort: Any = None

    @classmethod
    def number(cls, v: Any, digits: int = 3) -> "Cell":
        ok = v is not None and not (isinstance(v, float) and not math.isfinite(v))
        return cls(num(v, digits), float(v) if ok else None)

    @classmethod
    def text(cls, v: Any) -> "Cell":
        return cls(esc(v), str(v))


def _sort_attr(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.9g}"
    return esc(v)


def table(table_id: str, columns: Sequence[Column], rows: Iterable[Sequence[Cell]], *,
          names: Sequence[str] | None = None, statuses: Sequence[str] | None = None, filters: bool = False,
          caption: str = "", foot: Sequence[Sequence[Cell]] = ()) -> str:
    """A sortable table. ``names`` / ``statuses`` (one per row) are what the name and status filters match
    (``filters`` shows them); rows keep their order until a header is clicked. ``foot``: rows that stay
    below the others (a mean +- std row), never sorted."""
    rows = list(rows)
    head = "".join(f'<th data-col="{esc(c.key)}" data-type="{"num" if c.numeric else "text"}"'
                   f'{f" title={chr(34)}{esc(c.help)}{chr(34)}" if c.help else ""} tabindex="0">'
                   f'{esc(c.label)}<span class="arrow"></span></th>' for c in columns)
    body = []
    for k, row in enumerate(rows):
        attrs = f' data-name="{esc(names[k])}"' if names else ""
        attrs += f' data-status="{esc(statuses[k])}"' if statuses else ""
        cells = "".join(f'<td data-v="{_sort_attr(c.sort)}">{c.html}</td>' for c in row)
        body.append(f"<tr{attrs}>{cells}</tr>")
    bar = ""
    if filters:
        opts = "".join(f'<option value="{esc(s)}">{esc(s)}</option>' for s in sorted(set(statuses or ())))
        bar = (f'<div class="filters"><label>name contains <input type="search" data-filter-name="{table_id}" '
               f'placeholder="part of a file name"></label> <label>status <select data-filter-status="{table_id}">'
               f'<option value="">any</option>{opts}</select></label> <span class="count" data-count="{table_id}">'
               f'{len(rows)} of {len(rows)} rows</span></div>')
    tfoot = "".join("<tr>" + "".join(f"<td>{c.html}</td>" for c in row) + "</tr>" for row in foot)
    tfoot = f"<tfoot>{tfoot}</tfoot>" if tfoot else ""
    notes = "".join(f"<li><b>{esc(c.label)}</b>: {esc(c.help)}</li>" for c in columns if c.help)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (f'{bar}<div class="scroll"><table class="sortable" id="{table_id}">{cap}<thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody>{tfoot}</table></div>'
            + (f'<details class="help" open><summary>what the columns mean</summary><ul>{notes}</ul></details>'
               if notes else ""))


def section(title: str, body: str, intro: str = "", anchor: str = "") -> str:
    a = f' id="{esc(anchor)}"' if anchor else ""
    p = f'<p class="intro">{intro}</p>' if intro else ""
    return f"<section{a}><h2>{esc(title)}</h2>{p}{body}</section>"


def warning_box(text: str) -> str:
    return f'<div class="warning" role="alert">{text}</div>'


def definition_list(items: Iterable[tuple[str, str]]) -> str:
    """``(term, html)`` pairs as a compact two-column list."""
    return '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


_CSS = """
:root { --fg: #1d1d1f; --muted: #5f6368; --line: #d9dce1; --bg: #ffffff; --alt: #f6f7f9; --warn: #b00020; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg);
       background: var(--bg); margin: 0 auto; padding: 18px 28px 40px; max-width: 1400px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid var(--line);
     padding-bottom: 4px; } h3 { font-size: 15px; margin: 16px 0 6px; }
.subtitle { color: var(--muted); margin: 0 0 12px; }
.intro { color: var(--muted); max-width: 95ch; margin: 4px 0 10px; }
.warning { border: 2px solid var(--warn); color: var(--warn); background: #fff4f5; padding: 8px 12px; margin: 10px 0;
           font-weight: 600; border-radius: 4px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 6px 0; font-variant-numeric: tabular-nums; }
caption { text-align: left; color: var(--muted); padding: 2px 0 6px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: middle; }
th { background: var(--alt); position: sticky; top: 0; cursor: pointer; white-space: nowrap; user-select: none; }
th:hover { background: #e8ebf0; } th .arrow { color: var(--muted); padding-left: 4px; }
th[aria-sort=ascending] .arrow::after { content: "\\25B2"; }
th[aria-sort=descending] .arrow::after { content: "\\25BC"; }
td[data-v] { white-space: nowrap; } td.wrap, td .wrap { white-space: normal; }
tbody tr:nth-child(even) { background: #fbfbfc; } tfoot td { border-top: 2px solid var(--line); }
tr[data-status=error] td { background: #fff4f5; }
.status-error { color: var(--warn); font-weight: 600; } .status-ok { color: #1b7f3b; }
.reason { color: var(--warn); white-space: normal; max-width: 46ch; display: inline-block; }
.thumb { display: block; border-radius: 2px; }
.filters { margin: 6px 0; display: flex; gap: 18px; align-items: center; flex-wrap: wrap; }
.filters input, .filters select { font: inherit; padding: 2px 6px; } .count { color: var(--muted); }
.help { color: var(--muted); margin: 4px 0 12px; } .help ul { margin: 4px 0; padding-left: 20px; max-width: 110ch; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 6px 0; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; }
.metrics { display: flex; gap: 10px; flex-wrap: wrap; margin: 8px 0; }
.metric { border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; min-width: 110px; }
.metric b { display: block; font-size: 20px; } .metric span { color: var(--muted); font-size: 12px; }
.charts { display: flex; gap: 18px; flex-wrap: wrap; align-items: flex-start; }
figure { margin: 6px 0; } figcaption { color: var(--muted); font-size: 12px; max-width: 80ch; }
.desc { font-size: 12px; white-space: normal; min-width: 220px; }
.desc div { display: flex; align-items: center; gap: 6px; }
.bar { display: inline-block; height: 8px; background: #4c78a8; border-radius: 2px; }
.chance { color: var(--muted); }
.panel img { max-width: 100%; height: auto; border: 1px solid var(--line); }
footer { color: var(--muted); margin-top: 30px; font-size: 12px; }
"""

#: Sorting and filtering, nothing else.
_JS = """
(function () {
  function key(td, numeric) {
    var v = td ? td.getAttribute('data-v') : '';
    if (v === null || v === '') return null;
    return numeric ? parseFloat(v) : v.toLowerCase();
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      function sort() {
        var numeric = th.getAttribute('data-type') === 'num';
        var dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[col], numeric), y = key(b.cells[col], numeric);
          if (x === null && y === null) return 0;
          if (x === null) return 1;
          if (y === null) return -1;
          return (x < y ? -1 : x > y ? 1 : 0) * dir;
        });
        var frag = document.createDocumentFragment();
        rows.forEach(function (r) { frag.appendChild(r); });
        body.appendChild(frag);
      }
      th.addEventListener('click', sort);
      th.addEventListener('keydown', function (e) { if (e.key === 'Enter') sort(); });
    });
  });
  function filter(id) {
    var table = document.getElementById(id);
    var name = document.querySelector('[data-filter-name="' + id + '"]');
    var status = document.querySelector('[data-filter-status="' + id + '"]');
    var text = name ? name.value.toLowerCase() : '', want = status ? status.value : '';
    var shown = 0, rows = table.tBodies[0].rows;
    Array.prototype.forEach.call(rows, function (r) {
      var ok = (r.getAttribute('data-name') || '').toLowerCase().indexOf(text) >= 0 &&
               (!want || r.getAttribute('data-status') === want);
      r.style.display = ok ? '' : 'none';
      if (ok) shown += 1;
    });
    var count = document.querySelector('[data-count="' + id + '"]');
    if (count) count.textContent = shown + ' of ' + rows.length + ' rows';
  }
  document.querySelectorAll('[data-filter-name], [data-filter-status]').forEach(function (el) {
    var id = el.getAttribute('data-filter-name') || el.getAttribute('data-filter-status');
    el.addEventListener('input', function () { filter(id); });
    el.addEventListener('change', function () { filter(id); });
  });
})();
"""


def document(title: str, subtitle: str, body: Sequence[str], warnings: Sequence[str] = (), footer: str = "") -> str:
    """The whole page: a title, a subtitle line, warning boxes (HTML), the sections, a footer."""
    warn = "".join(warning_box(w) for w in warnings)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
            f'style-src \'unsafe-inline\'; script-src \'unsafe-inline\'">'
            f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
            f'<header><h1>{esc(title)}</h1>{warn}<div class="subtitle">{subtitle}</div></header>'
            f'<main>{"".join(body)}</main><footer>{footer}</footer><script>{_JS}</script></body></html>\n')


def write_page(path: str | Path, text: str) -> Path:
    """Write the page atomically (one line naming the path when it cannot be written)."""
    return atomic_write(Path(path), text, what="cannot write the report")
