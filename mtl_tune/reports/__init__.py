"""Finished (or running) study -> tables, figures and reports.

Reports read a study only through `mtl_tune.studies` (its results frame: one row per trial and
epoch); `report_ablation` and `report_search` turn it into a report folder (Markdown, LaTeX,
CSV, one self-contained HTML page, PNG and SVG figures). Data collection and drawing are
separate functions (`collect_*`, `draw_*`).
"""

from mtl_tune.reports._ablation import report_ablation
from mtl_tune.reports._dev_table import add_significance, dev_table
from mtl_tune.reports._environment import Usage, usage
from mtl_tune.reports._figures import (
    ScoreBars,
    collect_learning_curves,
    collect_score_bars,
    draw_learning_curves,
    draw_score_bars,
)
from mtl_tune.reports._output import FORMATS, ReportResult
from mtl_tune.reports._paired import PairedComparison, holm, paired_comparison, significance_mark
from mtl_tune.reports._search import report_search, top_configurations
from mtl_tune.reports._search_figures import (
    collect_history,
    collect_param_effects,
    draw_history,
    draw_importances,
    draw_param_effects,
)
from mtl_tune.reports._seeds_advice import SeedsAdvice, advice_text, seeds_advice
from mtl_tune.reports._selection import status_label
from mtl_tune.reports._stats import SeedSummary, seeds_for_power, summarize_seeds
from mtl_tune.reports._terminal import fit_table, report_text, terminal_width
from mtl_tune.reports._test_table import evaluate_test_split

__all__ = [
    "FORMATS",
    "PairedComparison",
    "ReportResult",
    "ScoreBars",
    "SeedSummary",
    "SeedsAdvice",
    "Usage",
    "add_significance",
    "advice_text",
    "collect_history",
    "collect_learning_curves",
    "collect_param_effects",
    "collect_score_bars",
    "dev_table",
    "draw_history",
    "draw_importances",
    "draw_learning_curves",
    "draw_param_effects",
    "draw_score_bars",
    "evaluate_test_split",
    "fit_table",
    "holm",
    "paired_comparison",
    "report_ablation",
    "report_search",
    "report_text",
    "seeds_advice",
    "seeds_for_power",
    "significance_mark",
    "status_label",
    "summarize_seeds",
    "terminal_width",
    "top_configurations",
    "usage",
]
