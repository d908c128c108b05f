"""One report per analysis run: ``report.html`` (figures inline, no server needed), ``report.md``, ``metrics.json``.

A ``Report`` collects sections of text, tables and matplotlib figures in order. Figures are also written as PNG
files under ``figures/`` so the Markdown report can link them and users can reuse them.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instructir.io import write_json


@dataclass
class _Block:
    kind: str  # "heading", "text", "table", "figure", "html"
    payload: Any


@dataclass
class Report:
    """An ordered list of headings, paragraphs, tables and figures, rendered to HTML and Markdown."""

    title: str
    blocks: list[_Block] = field(default_factory=list)
    _figures: dict[str, bytes] = field(default_factory=dict)

    def heading(self, text: str) -> None:
        """Start a section."""
        self.blocks.append(_Block("heading", text))

    def text(self, paragraph: str) -> None:
        """A paragraph of plain text."""
        self.blocks.append(_Block("text", paragraph))

    def table(self, rows: list[dict[str, Any]], caption: str = "") -> None:
        """A table whose columns are the first row's keys; floats print with 3 decimals."""
        if rows:
            self.blocks.append(_Block("table", (caption, rows)))

    def figure(self, fig: Any, name: str, caption: str = "") -> None:
        """A matplotlib figure, stored as PNG (``figures/NAME.png``) and closed."""
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        self._figures[name] = buffer.getvalue()
        self.blocks.append(_Block("figure", (name, caption)))

    def raw_html(self, snippet: str, markdown_note: str = "") -> None:
        """Trusted HTML (an interactive plot) for report.html; ``markdown_note`` stands in for it in report.md."""
        self.blocks.append(_Block("html", (snippet, markdown_note)))

    def write(self, out_dir: str | Path, metrics: dict[str, Any]) -> Path:
        """Write report.html, report.md, metrics.json and figures/*.png into ``out_dir``; return the HTML path."""
        out = Path(out_dir)
        (out / "figures").mkdir(parents=True, exist_ok=True)
        for name, png in self._figures.items():
            (out / "figures" / f"{name}.png").write_bytes(png)
        write_json(metrics, out / "metrics.json")
        (out / "report.md").write_text(self.to_markdown(), encoding="utf-8")
        (out / "report.html").write_text(self.to_html(), encoding="utf-8")
        return out / "report.html"

    def to_markdown(self) -> str:
        """The report as Markdown, figures linked from ``figures/``."""
        lines = [f"# {self.title}", ""]
        for block in self.blocks:
            if block.kind == "heading":
                lines += [f"## {block.payload}", ""]
            elif block.kind == "text":
                lines += [block.payload, ""]
            elif block.kind == "table":
                caption, rows = block.payload
                columns = list(rows[0])
                lines += [f"*{caption}*", ""] if caption else []
                lines.append("| " + " | ".join(columns) + " |")
                lines.append("|" + "---|" * len(columns))
                for row in rows:
                    cells = [_cell(row.get(column)).replace("|", "\\|") for column in columns]
                    lines.append("| " + " | ".join(cells) + " |")
                lines.append("")
            elif block.kind == "figure":
                name, caption = block.payload
                lines += [f"![{caption or name}](figures/{name}.png)", ""]
                lines += [f"*{caption}*", ""] if caption else []
            elif block.kind == "html" and block.payload[1]:
                lines += [block.payload[1], ""]
        return "\n".join(lines)

    def to_html(self) -> str:
        """The report as one self-contained HTML page (figures as data URIs)."""
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        for block in self.blocks:
            if block.kind == "heading":
                parts.append(f"<h2>{html.escape(block.payload)}</h2>")
            elif block.kind == "text":
                parts.append(f"<p>{html.escape(block.payload)}</p>")
            elif block.kind == "table":
                caption, rows = block.payload
                columns = list(rows[0])
                parts.append("<table>")
                if caption:
                    parts.append(f"<caption>{html.escape(caption)}</caption>")
                parts.append("<tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in columns) + "</tr>")
                for row in rows:
                    cells = "".join(f"<td>{html.escape(_cell(row.get(c)))}</td>" for c in columns)
                    parts.append(f"<tr>{cells}</tr>")
                parts.append("</table>")
            elif block.kind == "figure":
                name, caption = block.payload
                data = base64.b64encode(self._figures[name]).decode("ascii")
                parts.append(f"<figure><img alt='{html.escape(caption or name)}' src='data:image/png;base64,{data}'>")
                parts.append(f"<figcaption>{html.escape(caption)}</figcaption></figure>" if caption else "</figure>")
            elif block.kind == "html":
                parts.append(block.payload[0])
        parts.append("</body></html>")
        return "\n".join(parts)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px}"
    "th{background:#f3f3f3}caption{text-align:left;font-style:italic;padding:4px 0}"
    "img{max-width:100%}figcaption{font-style:italic;color:#555}"
)
