"""Building blocks of the self-contained diagnosis page (`tools.report`): escaping, inline images, tables and
sections.

Everything that comes from the data (video ids, labels, groups, paths, error messages) goes through `esc`: it is
text on the page, never markup, and never a bidirectional control that would draw a name backwards. The page also declares a Content-Security-Policy that allows no script and no
request at all (images are `data:` URLs), so even markup that slipped through could neither run nor fetch.
"""

from __future__ import annotations

import base64
import html
from typing import Iterable, Optional, Sequence

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1180px; padding: 0 16px 48px; color: #222; }
h1 { margin-top: 24px; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 4px; margin-top: 36px; }
h3 { margin-bottom: 6px; } .what { color: #444; background: #f4f6f8; border-left: 4px solid #1f77b4; padding: 8px 12px; }
.bad { color: #b00020; font-weight: 600; } .good { color: #1a7f37; font-weight: 600; } .note { color: #666; font-size: 12px; }
table { border-collapse: collapse; margin: 8px 0; } td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f4f6f8; } td.text, th.text { text-align: left; }
.thumbs { display: flex; flex-wrap: wrap; gap: 10px; } figure { margin: 0; width: 180px; font-size: 12px; }
figure img { display: block; image-rendering: auto; } .pair { display: flex; gap: 4px; }
.strip img { width: 58px; height: 58px; } figcaption { word-break: break-all; }
nav a { margin-right: 12px; } details summary { cursor: pointer; color: #1f77b4; }
.warn { color: #9a6700; font-weight: 600; } .charts { display: flex; flex-wrap: wrap; gap: 8px; }
.charts > div { display: flex; flex-direction: column; } h3, code { overflow-wrap: anywhere; }
svg { max-width: 100%; height: auto; }
body, td, th { overflow-wrap: anywhere; } th abbr { text-decoration: none; }
"""
HEADER_CHARS = 12  # a confusion table's column header: a class name cut to this many characters (in full on hover)


# Unicode's bidirectional controls: text after U+202E (RIGHT-TO-LEFT OVERRIDE) is drawn backwards, so the file
# '\u202egnp.exe.mp4' would read as '4pm.exe.png', and an isolate left open reorders the text after it.
_BIDI_CONTROLS = {c: f"[U+{c:04X}]" for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F,
                                             0x061C)}


def esc(text) -> str:
    """Data as page text (quotes too, so it is safe inside attributes); bidirectional controls are shown as
    [U+202E] rather than obeyed, so a name reads as the characters it holds (right-to-left letters stay as
    they are: they only order themselves)."""
    return html.escape(str(text).translate(_BIDI_CONTROLS), quote=True)


def jpeg_img(data: bytes, alt: str, size: Optional[int] = None) -> str:
    """An inline JPEG (a `data:` URL: nothing is fetched)."""
    width = f' width="{size}" height="{size}"' if size else ""
    return f'<img src="data:image/jpeg;base64,{base64.b64encode(data).decode("ascii")}" alt="{esc(alt)}"{width}>'


def table(header: Sequence[str], rows: Iterable[Sequence], text_columns: Sequence[int] = (0,)) -> str:
    """A table; cells are escaped unless wrapped in `Raw`."""
    def cell(tag, i, value):
        cls = ' class="text"' if i in text_columns else ""
        shown = value.html if isinstance(value, Raw) else esc(_shown(value))
        return f"<{tag}{cls}>{shown}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


class Raw:
    """Markup made by this module or `tools.charts` (never data), to put in a table cell as it is."""

    def __init__(self, markup: str):
        self.html = markup


def _shown(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "" if value is None else str(value)


def section(anchor: str, title: str, what: str, body: str, sources: Sequence[str] = ()) -> str:
    """A section: its title, one paragraph saying what it shows and what to do about it, its content, and the
    artifacts it was read from."""
    listed = "".join(f"<li><code>{esc(s)}</code></li>" for s in sources)
    where = f'<p class="note">Read from:</p><ul class="note">{listed}</ul>' if sources else ""
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2><p class="what">{what}</p>{body}{where}</section>'


def heat_table(matrix: Sequence[Sequence[int]], names: Sequence[str]) -> str:
    """A confusion matrix as a table shaded by each row's share (true class rows, predicted class columns; the
    column headers cut short, in full in their title)."""
    head = "<tr><th class=\"text\">true \\ predicted</th>" + "".join(f"<th>{_header(n)}</th>" for n in names) + "</tr>"
    rows = []
    for name, row in zip(names, matrix):
        total = sum(row) or 1
        cells = "".join(f'<td style="background: rgba(31,119,180,{v / total:.2f})">{v}</td>' for v in row)
        rows.append(f'<tr><th class="text">{esc(name)}</th>{cells}</tr>')
    return f"<table>{head}{''.join(rows)}</table>"


def _header(name) -> str:
    """A class name as a column header: cut to HEADER_CHARS characters (the full name in its title), so a table
    of long names stays within the page."""
    text = str(name)
    if len(text) <= HEADER_CHARS:
        return esc(text)
    return f'<abbr title="{esc(text)}">{esc(text[:HEADER_CHARS - 1])}…</abbr>'


def document(title: str, nav: Sequence[tuple[str, str]], body: str, generated: str) -> str:
    links = "".join(f'<a href="#{esc(anchor)}">{esc(label)}</a>' for anchor, label in nav)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{esc(title)}</h1><p class=\"note\">{esc(generated)}</p><nav>{links}</nav>{body}</body></html>\n")
