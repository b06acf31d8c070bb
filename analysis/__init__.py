"""Analysis of frogs trial records: load ``results.jsonl`` files into one tidy table,
success rates with Wilson intervals, the paper's figures, and an HTML report.

Reads nothing but the records (docs/records.md) and the tensors they point to.
"""

from analysis.figures import (
    FigureSet,
    make_figures,
    plot_ablation,
    plot_angular_per_epoch,
    plot_clean_accuracy,
    plot_defenses,
    plot_outliers,
    plot_perceptibility,
    plot_poison_count,
    plot_transfer,
)
from analysis.load import LoadResult, NoRecordsError, find_results, load_records
from analysis.report import write_report
from analysis.stats import (
    PARAM_COLUMNS,
    UnknownColumnError,
    ablation_arm,
    compares_defenses,
    defense_table,
    parameter_columns,
    success_table,
    varying_parameters,
    wilson_interval,
)
from analysis.tensor_figures import plot_feature_space, plot_poison_grid, project_features

__all__ = [
    "PARAM_COLUMNS",
    "FigureSet",
    "LoadResult",
    "NoRecordsError",
    "UnknownColumnError",
    "ablation_arm",
    "compares_defenses",
    "defense_table",
    "find_results",
    "load_records",
    "make_figures",
    "parameter_columns",
    "plot_ablation",
    "plot_angular_per_epoch",
    "plot_clean_accuracy",
    "plot_defenses",
    "plot_feature_space",
    "plot_outliers",
    "plot_perceptibility",
    "plot_poison_count",
    "plot_poison_grid",
    "plot_transfer",
    "project_features",
    "success_table",
    "varying_parameters",
    "wilson_interval",
    "write_report",
]
