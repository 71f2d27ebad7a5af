"""The core API the CLI and napari call: crappify, sample, train, predict, evaluate, export, demo.

Each long operation comes in two forms: ``iter_<name>(...)``, a generator of
:class:`decrappify.events.Progress` events that returns the result (what shells drive
with progress bars and cancel), and ``<name>(...)``, which runs it to the end.
Heavy modules (torch, dask) are imported inside the functions, so importing this
package is cheap.
"""

from decrappify.api._compare import (
    METRIC_NAMES,
    METRIC_TITLES,
    PREDICTION,
    Comparison,
    iter_compare,
    write_metrics,
)
from decrappify.api._crappify import (
    crappify,
    crappify_config,
    fit_crappifier,
    iter_crappify,
    iter_sample,
)
from decrappify.api._demo import DEMO_RECIPE, DemoReport, demo, iter_demo
from decrappify.api._evaluate import EvaluationReport, evaluate, iter_evaluate, parse_baselines
from decrappify.api._export import (
    BioimageioExport,
    export_bioimageio,
    iter_export_bioimageio,
)
from decrappify.api._images import crappify_image, intensity_range, sample_image
from decrappify.api._models import iter_copy_model, release_device_memory
from decrappify.api._predict import (
    iter_predict,
    iter_predict_image,
    predict,
    predict_config,
    predict_region,
    trust_maps,
)
from decrappify.api._train import (
    iter_train,
    model_info,
    model_location,
    self_check_summary,
    starting_points,
    train,
    train_config,
)
from decrappify.api.common import FileResult, file_seed, iter_batch

__all__ = [
    "DEMO_RECIPE",
    "METRIC_NAMES",
    "METRIC_TITLES",
    "PREDICTION",
    "BioimageioExport",
    "Comparison",
    "DemoReport",
    "EvaluationReport",
    "FileResult",
    "crappify",
    "crappify_config",
    "demo",
    "evaluate",
    "export_bioimageio",
    "file_seed",
    "fit_crappifier",
    "iter_batch",
    "iter_compare",
    "iter_crappify",
    "iter_demo",
    "iter_evaluate",
    "iter_export_bioimageio",
    "iter_predict",
    "iter_predict_image",
    "iter_sample",
    "iter_train",
    "model_info",
    "model_location",
    "parse_baselines",
    "predict",
    "predict_config",
    "predict_region",
    "self_check_summary",
    "starting_points",
    "train",
    "train_config",
    "trust_maps",
    "write_metrics",
    "crappify_image",
    "intensity_range",
    "iter_copy_model",
    "release_device_memory",
    "sample_image",
]
