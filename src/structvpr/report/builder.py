"""Write `report.md` and `report.html` from result rows, plots and example images.

Every results row names its dataset, split and counts, so a number can never be read without
knowing which split it came from.
"""

from __future__ import annotations

import html
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


FIGURE_KINDS = ("plot", "photo")


@dataclass
class ReportFigure:
    """An image file (relative to the report folder) with a caption.

    kind "plot": a chart saved by `report.figures.save_plot` (its PNG carries its axis labels;
    `write_report` refuses one without); "photo": images such as example retrievals.
    """

    path: str
    caption: str
    kind: str = "plot"


@dataclass
class ReportTable:
    """A small table: column names and rows of cells (already formatted as text)."""

    columns: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class ReportSection:
    """A titled block of text, tables and figures (in that order)."""

    title: str
    text: str = ""
    figures: list[ReportFigure] = field(default_factory=list)
    tables: list[ReportTable] = field(default_factory=list)


def plot_recall_curves(rows: list[ReportRow], out_png: Path) -> Path:
    """Plot Recall@N against N (linear axis, a tick at every N) for every row and save a PNG."""
    from structvpr.report.figures import plot_recall_curves as plot_curves

    title = f"{rows[0].dataset} / {rows[0].split}" if rows else ""
    return plot_curves({row.method: row.recalls for row in rows}, out_png, title)


def _markdown_cells(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"


def _table_markdown(table: ReportTable) -> str:
    lines = [_markdown_cells(table.columns), "|" + "---|" * len(table.columns)]
    lines += [_markdown_cells(row) for row in table.rows]
    if table.caption:
        lines += ["", f"*{table.caption}*"]
    return "\n".join(lines)


def _table_html(table: ReportTable) -> str:
    head = "".join(f"<th>{html.escape(column)}</th>" for column in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in table.rows)
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _check_figures(out_dir: Path, sections: list[ReportSection]) -> None:
    """FileNotFoundError for a missing image; ValueError for an unknown kind or an unlabelled plot."""
    from structvpr.report.figures import axis_labels

    for section in sections:
        for figure in section.figures:
            path = out_dir / figure.path
            if not path.is_file():
                raise FileNotFoundError(f"{path}: report figure does not exist")
            if figure.kind not in FIGURE_KINDS:
                raise ValueError(f"{path}: figure kind {figure.kind!r}, expected one of {FIGURE_KINDS}")
            if figure.kind == "plot" and not all(axis_labels(path)):
                raise ValueError(
                    f"{path}: plot without axis labels in the file (save it with structvpr.report.figures.save_plot)"
                )


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
figcaption{font-size:90%;color:#555}pre{background:#f4f4f4;padding:8px;white-space:pre-wrap}
caption{caption-side:bottom;text-align:left;font-size:90%;color:#555}td{overflow-wrap:anywhere}"""


def write_report(
    out_dir: str | Path, title: str, rows: list[ReportRow], sections: list[ReportSection], intro: str = ""
) -> tuple[Path, Path]:
    """Write `report.md` and `report.html` in `out_dir`; figure paths are relative to it.

    Raises FileNotFoundError naming the figure when a referenced image is missing, so a report
    never links to nothing, and ValueError for a plot whose file carries no axis labels.
    """
    out_dir = Path(out_dir)
    _check_figures(out_dir, sections)
    md = [f"# {title}", "", intro, "", "## Results", "", _markdown_table(rows), ""]
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>", "<h2>Results</h2>", _html_table(rows)]
    for section in sections:
        md += [f"## {section.title}", "", section.text, ""]
        body += [f"<h2>{html.escape(section.title)}</h2>"]
        if section.text:
            body.append(f"<pre>{html.escape(section.text)}</pre>")
        for table in section.tables:
            md += [_table_markdown(table), ""]
            body.append(_table_html(table))
        for figure in section.figures:
            md += [f"![{figure.caption}]({figure.path})", "", f"*{figure.caption}*", ""]
            body.append(
                f'<figure data-kind="{figure.kind}"><img src="{html.escape(figure.path)}" '
                f'alt="{html.escape(figure.caption)}"><figcaption>{html.escape(figure.caption)}</figcaption></figure>'
            )
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
        f"</title><style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    atomic_write_text(md_path, "\n".join(md) + "\n")
    atomic_write_text(html_path, page)
    return md_path, html_path
