"""A written report as terminal text: its verdict, its tables fitted to a width
(`mtl_tune.terminal`: the least needed columns go first and are named, no row name is cut),
its remarks, its page."""

from __future__ import annotations

from mtl_tune.reports._output import ReportResult
from mtl_tune.terminal import PIPE_WIDTH, fit_table, terminal_width, wrap

__all__ = ["PIPE_WIDTH", "fit_table", "report_text", "terminal_width"]

def report_text(result: ReportResult, width: int) -> str:
    """What `mtl-tune report ...` prints: every table, the remarks, then the page to open."""
    out: list[str] = [line for lead in result.headline
                      for line in wrap(lead, width, subsequent_indent="  ")]
    for title, frame in result.displays.values():
        lines, dropped = fit_table(frame, width)
        out += ["", title, *lines]
        if dropped:
            out += wrap(
                f"(left out to fit {width} columns: {', '.join(dropped)}; all are in the report)",
                width,
            )
    for remark in result.remarks:
        out += wrap(f"note: {remark}", width, subsequent_indent="  ")
    target = result.page if result.page is not None else result.folder
    out += ["", f"report: {target}"]
    return "\n".join(out)
