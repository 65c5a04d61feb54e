"""Reports: results tables, Recall@N curves and example images as Markdown and HTML."""

from structvpr.report.builder import ReportFigure, ReportRow, ReportSection, ReportTable, write_report

__all__ = ["ReportFigure", "ReportRow", "ReportSection", "ReportTable", "write_report"]
