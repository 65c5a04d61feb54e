"""Write `report.md` and `report.html` from result rows, plots and example images.

Every results row names its dataset, split and counts, so a number can never be read without
knowing which split it came from.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path

from structvpr.io_utils import atomic_write_text


@dataclass
class ReportRow:
    """One results-table row: a method evaluated on one dataset split."""

    method: str
    dataset: str
    split: str
    num_queries: int
    num_database: int
    recalls: dict[int, float]
    note: str = ""


@dataclass
class ReportFigure:
    """An image file (relative to the report folder) with a caption."""

    path: str
    caption: str


@dataclass
class ReportSection:
    """A titled block of text and figures."""

    title: str
    text: str = ""
    figures: list[ReportFigure] = field(default_factory=list)


def plot_recall_curves(rows: list[ReportRow], out_png: Path) -> Path:
    """Plot Recall@N against N for every row (one line per method) and save a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.5, 3.8), dpi=110)
    for row in rows:
        ns = sorted(row.recalls)
        axis.plot(ns, [100 * row.recalls[n] for n in ns], marker="o", label=row.method)
    axis.set_xlabel("N")
    axis.set_ylabel("Recall@N (%)")
    if rows:
        axis.set_title(f"{rows[0].dataset} / {rows[0].split}")
    axis.set_xscale("log")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(f".{out_png.stem}.tmp.png")
    figure.savefig(tmp)
    plt.close(figure)
    os.replace(tmp, out_png)
    return out_png


def _markdown_table(rows: list[ReportRow]) -> str:
    ns = sorted({n for row in rows for n in row.recalls})
    header = "| method | dataset | split | queries | database | " + " | ".join(f"R@{n}" for n in ns) + " | note |"
    rule = "|" + "---|" * (6 + len(ns))
    lines = [header, rule]
    for row in rows:
        recalls = " | ".join(f"{100 * row.recalls[n]:.1f}" if n in row.recalls else "-" for n in ns)
        lines.append(
            f"| {row.method} | {row.dataset} | {row.split} | {row.num_queries} | "
            f"{row.num_database} | {recalls} | {row.note} |"
        )
    return "\n".join(lines)


def _html_table(rows: list[ReportRow]) -> str:
    ns = sorted({n for row in rows for n in row.recalls})
    head = "".join(
        f"<th>{html.escape(t)}</th>"
        for t in ["method", "dataset", "split", "queries", "database", *[f"R@{n}" for n in ns], "note"]
    )
    body = []
    for row in rows:
        cells = [
            row.method,
            row.dataset,
            row.split,
            str(row.num_queries),
            str(row.num_database),
            *[f"{100 * row.recalls[n]:.1f}" if n in row.recalls else "-" for n in ns],
            row.note,
        ]
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}figure{margin:1em 0}img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:90%;color:#555}pre{background:#f4f4f4;padding:8px}"""


def write_report(
    out_dir: str | Path, title: str, rows: list[ReportRow], sections: list[ReportSection], intro: str = ""
) -> tuple[Path, Path]:
    """Write `report.md` and `report.html` in `out_dir`; figure paths are relative to it.

    Raises FileNotFoundError naming the figure when a referenced image is missing, so a report
    never links to nothing.
    """
    out_dir = Path(out_dir)
    for section in sections:
        for figure in section.figures:
            if not (out_dir / figure.path).is_file():
                raise FileNotFoundError(f"{out_dir / figure.path}: report figure does not exist")
    md = [f"# {title}", "", intro, "", "## Results", "", _markdown_table(rows), ""]
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>", "<h2>Results</h2>", _html_table(rows)]
    for section in sections:
        md += [f"## {section.title}", "", section.text, ""]
        body += [f"<h2>{html.escape(section.title)}</h2>"]
        if section.text:
            body.append(f"<pre>{html.escape(section.text)}</pre>")
        for figure in section.figures:
            md += [f"![{figure.caption}]({figure.path})", "", f"*{figure.caption}*", ""]
            body.append(
                f'<figure><img src="{html.escape(figure.path)}" alt="{html.escape(figure.caption)}">'
                f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>"
            )
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
        f"</title><style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    atomic_write_text(md_path, "\n".join(md) + "\n")
    atomic_write_text(html_path, page)
    return md_path, html_path
