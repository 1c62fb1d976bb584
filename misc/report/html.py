"""HTML of the run report (``result/report.html``): escaping, small pieces (tables, pictures, notes), the CSS and
the page around the sections. Cells and bodies passed in are HTML already; text goes through :func:`esc`."""
from __future__ import annotations

import base64
import html
from typing import Any, Callable, Iterable, Mapping, Sequence

NUMBER_FORMAT = "{:.4f}"  # every number of this run in the report's tables; tests parse the cells back


def format_number(value: float | None) -> str:
    """A run's number as the report shows it: 4 decimals, "n/a" for None."""
    return "n/a" if value is None else NUMBER_FORMAT.format(value)


def esc(value: Any) -> str:
    """``value`` as text safe in HTML content and attribute values."""
    return html.escape(str(value), quote=True)


def png_data_uri(png: bytes) -> str:
    """A ``data:`` URI that embeds the PNG in the page."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img(png: bytes, alt: str, css: str = "") -> str:
    """An embedded PNG."""
    cls = f' class="{esc(css)}"' if css else ""
    return f'<img src="{png_data_uri(png)}" alt="{esc(alt)}"{cls}>'


def table(head: Sequence[str] | None, rows: Iterable[Sequence[str]], css: str = "") -> str:
    """Cells are HTML already (escape text with :func:`esc`); a cell that is a ``<td>``/``<th>`` element already
    is kept as it is. ``head`` None: no header row."""
    cls = f' class="{esc(css)}"' if css else ""
    out = [f"<table{cls}>"]
    if head is not None:
        out.append("<thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead>")
    out.append("<tbody>")
    out += ["<tr>" + "".join(c if c.startswith(("<td", "<th")) else f"<td>{c}</td>" for c in row) + "</tr>"
            for row in rows]
    return "\n".join(out) + "</tbody></table>"


def details(summary: str, body: str, open_: bool = False) -> str:
    """A collapsible block (closed unless ``open_``)."""
    return f"<details{' open' if open_ else ''}><summary>{summary}</summary>\n{body}\n</details>"


def section(anchor: str, title: str, body: str) -> str:
    """A section of the page with its heading; ``anchor`` is its id for the navigation links."""
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>\n{body}\n</section>'


def note(text: str) -> str:
    """A remark in italics: what the run lacks, what is left out."""
    return f'<p class="note">{esc(text)}</p>'


def legend(colors: Mapping[int, tuple[int, int, int]], names: Callable[[int], str]) -> str:
    """Colour swatches of label values."""
    items = [f'<span class="swatch" style="background: rgb{tuple(int(c) for c in rgb)}"></span>{esc(names(v))}'
             for v, rgb in sorted(colors.items())]
    return '<p class="legend">' + " ".join(f'<span class="item">{i}</span>' for i in items) + "</p>"


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1400px;
       padding: 0 24px 48px; color: #222; font-size: 14px; }
h1 { margin: 20px 0 4px; font-size: 24px; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 4px; margin-top: 32px; }
h3 { margin: 18px 0 6px; font-size: 16px; }
nav a { margin-right: 14px; } .sub { color: #666; margin: 0 0 10px; }
table { border-collapse: collapse; margin: 8px 0; } th, td { border: 1px solid #ddd; padding: 4px 8px;
       vertical-align: top; text-align: left; } th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.ok { color: #1b7a2b; } td.bad { color: #9c2b1c; max-width: 620px; }
.muted { color: #999; } .src { color: #888; font-size: 11px; }
.banner { border: 2px solid #e0a800; background: #fff8e1; padding: 10px 14px; border-radius: 6px; margin: 12px 0; }
.banner.okb { border-color: #5cb85c; background: #eef9ee; }
.note { color: #666; font-style: italic; } pre { background: #f7f7f7; padding: 8px; overflow-x: auto; font-size: 12px; }
code { background: #f3f3f3; padding: 1px 4px; border-radius: 3px; }
.kv th { width: 130px; } .figure { max-width: 100%; height: auto; }
.gallery { display: inline-table; margin: 4px 8px 4px 0; }
.gallery td { text-align: center; font-size: 11px; color: #555; padding: 3px; }
.gallery img { display: block; margin: 0 auto 2px; height: 132px; width: auto; }
.gallery img.lbl { image-rendering: pixelated; }
.legend .item { margin-right: 10px; white-space: nowrap; } .swatch { display: inline-block; width: 12px; height: 12px;
       border: 1px solid #888; margin-right: 4px; vertical-align: middle; }
.warnings td { font-size: 12px; } .level-ERROR { color: #b00020; font-weight: bold; } .level-WARNING { color: #8a6d00; }
"""


def page(title: str, subtitle: str, nav: Sequence[tuple[str, str]], body: str) -> str:
    """The whole document: inline CSS, no script, no external resource."""
    links = " ".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t in nav)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>\n'
            f'<body><h1>{esc(title)}</h1><p class="sub">{subtitle}</p><nav>{links}</nav>\n{body}\n</body></html>\n')
