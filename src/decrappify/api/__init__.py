"""The core API the CLI and napari call: crappify, sample, train, predict, evaluate, export, demo.

Each long operation comes in two forms: ``iter_<name>(...)``, a generator of
:class:`decrappify.events.Progress` events that returns the result (what shells drive
with progress bars and cancel), and ``<name>(...)``, which runs it to the end.
Heavy modules (torch, dask) are imported inside the functions, so importing this
package is cheap.
"""

from decrappify.api.common import FileResult, file_seed, iter_batch
from decrappify.api.crappify import (
    crappify,
    crappify_config,
    fit_crappifier,
    iter_crappify,
    iter_sample,
)
from decrappify.api.demo import DemoReport, demo, iter_demo
from decrappify.api.evaluate import EvaluationReport, evaluate, iter_evaluate, parse_baselines
from decrappify.api.export import (
    BioimageioExport,
    export_bioimageio,
    iter_export_bioimageio,
)
from decrappify.api.predict import (
    iter_predict,
    iter_predict_image,
    predict,
    predict_config,
    predict_region,
    trust_maps,
)
from decrappify.api.train import (
    iter_train,
    model_info,
    model_location,
    self_check_summary,
    starting_points,
    train,
    train_config,
)

__all__ = [
    "BioimageioExport",
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
]
