"""Reports: results tables, Recall@N curves and example images as Markdown and HTML."""

from structvpr.report.builder import ReportRow, write_report

__all__ = ["ReportRow", "write_report"]
