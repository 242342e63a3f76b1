"""Figures and a self-contained HTML report, drawn from a results store."""

from normscope.report.figures import draw
from normscope.report.html import build_report

__all__ = ["build_report", "draw"]
