"""The demo report's two renderings of one list of blocks (``("h1", text)``, ``("h2", text)``, ``("p", text)``,
``("ul", items)``, ``("table", header, rows)``, ``("img", path, caption)``): Markdown, and a self-contained HTML
page with the images inlined."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path


def to_markdown(bl: list[tuple], out: Path) -> str:
    lines = []
    for block in bl:
        kind = block[0]
        if kind == "h1":
            lines += [f"# {block[1]}", ""]
        elif kind == "h2":
            lines += [f"## {block[1]}", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "ul":
            lines += [f"- {x}" for x in block[1]] + [""]
        elif kind == "table":
            header, rows = block[1], block[2]
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(r) + " |" for r in rows] + [""]
        elif kind == "img":
            lines += [f"![{block[2]}]({Path(block[1]).relative_to(out)})", f"*{block[2]}*", ""]
    return "\n".join(lines)


def inline(text: str) -> str:
    """Escaped text with Markdown `code` spans rendered as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def to_html(bl: list[tuple]) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>eksft demo report</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.45}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}figcaption{color:#555}"
        "code{background:#f3f3f3;padding:0 .2em;border-radius:3px}"
        "</style></head><body>"
    ]
    for block in bl:
        kind = block[0]
        if kind in ("h1", "h2", "p"):
            parts.append(f"<{kind}>{inline(block[1])}</{kind}>")
        elif kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{inline(x)}</li>" for x in block[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block[1])
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in block[2])
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        elif kind == "img":
            data = base64.b64encode(Path(block[1]).read_bytes()).decode()
            parts.append(
                f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(block[2])}'>"
                f"<figcaption>{html.escape(block[2])}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)
