"""Image-quality metrics for restorations: PSNR, SSIM, NRMSE, FRC, baselines and reports.

Pure numpy / scipy / scikit-image (no torch). See ``docs/metrics.md`` for what each
number means and how to read the comparison figure.
"""

from decrappify.metrics.baselines import METHOD_ORDERS, upsample
from decrappify.metrics.core import (
    METRIC_NAMES,
    affine_fit,
    default_data_range,
    evaluate_pair,
    normalize_minmse,
    psnr,
    ssim,
)
from decrappify.metrics.figure import comparison_figure
from decrappify.metrics.frc import FRCResult, frc, frc_single
from decrappify.metrics.planes import resize_plane
from decrappify.metrics.report import MetricsTable, format_table, results_to_json, write_csv
from decrappify.metrics.stack import PREDICTION, StackResult, evaluate_stack, iter_evaluate_stack

__all__ = [
    "METHOD_ORDERS",
    "METRIC_NAMES",
    "PREDICTION",
    "FRCResult",
    "MetricsTable",
    "StackResult",
    "affine_fit",
    "comparison_figure",
    "default_data_range",
    "evaluate_pair",
    "evaluate_stack",
    "format_table",
    "frc",
    "frc_single",
    "iter_evaluate_stack",
    "normalize_minmse",
    "psnr",
    "resize_plane",
    "results_to_json",
    "ssim",
    "upsample",
    "write_csv",
]
