"""The self-contained HTML page: inline CSS, figures as base64 PNG, no external URL anywhere.

Text that may hold a URL (a spec comment, an error message) is defanged (`https[:]//...`), so the
page neither loads nor links anything outside itself and opens offline.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

_URL = re.compile(r"\b(https?)://", re.IGNORECASE)

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1360px; color: #222;
       padding: 0 1rem; line-height: 1.4; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem;
     border-bottom: 1px solid #ddd; }
p.headline { font-size: 1.1rem; margin: 0.3rem 0; }
div.scroll { overflow-x: auto; max-width: 100%; }
table.data, table.meta { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
table.data th, table.data td, table.meta th, table.meta td { border: 1px solid #ccc;
     padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
table.data th { background: #f2f2f2; }
table.data td.col0 { max-width: 18rem; }
table.data td.col0::first-line { font-weight: 600; }
table.meta td { overflow-wrap: anywhere; }
table.meta th { background: #fafafa; font-weight: normal; color: #555; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85rem; color: #555; }
ul.notes { font-size: 0.85rem; color: #444; overflow-wrap: anywhere; }
pre { background: #f7f7f7; padding: 0.75rem; overflow-x: auto; font-size: 0.85rem; }
"""


def defang(text: str) -> str:
    """'https://x' -> 'https[:]//x', so no text becomes a link or a fetch."""
    return _URL.sub(r"\1[:]//", text)


def notes_list(notes: Sequence[str]) -> str:
    if not notes:
        return ""
    items = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    return f'<ul class="notes">{items}</ul>'


def meta_table(rows: Mapping[str, str]) -> str:
    body = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows.items()
    )
    return f'<div class="scroll"><table class="meta">{body}</table></div>'


def figure_block(png: Path, caption: str) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    alt = html.escape(caption)
    return (
        f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">'
        f"<figcaption>{alt}</figcaption></figure>"
    )


def pre_block(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


def headline_block(lines: Sequence[str]) -> str:
    return "".join(f'<p class="headline">{html.escape(line)}</p>' for line in lines)


def page(title: str, sections: Sequence[tuple[str, str]], lead: str = "") -> str:
    """A whole HTML document: a title, `lead` (HTML) under it, then (heading, body HTML)
    sections; URLs defanged. It reads on a phone: a viewport meta, and tables that scroll
    inside their own container."""
    body = "".join(f"<h2>{html.escape(h)}</h2>\n{content}\n" for h, content in sections)
    document = (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n{lead}\n{body}</body></html>\n"
    )
    return defang(document)
