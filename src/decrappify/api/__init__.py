"""The core API the CLI and napari call: crappify, sample, train, predict, evaluate, demo.

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
from decrappify.api.evaluate import EvaluationReport, evaluate, iter_evaluate, parse_baselines

__all__ = [
    "EvaluationReport",
    "FileResult",
    "crappify",
    "crappify_config",
    "evaluate",
    "file_seed",
    "fit_crappifier",
    "iter_batch",
    "iter_crappify",
    "iter_evaluate",
    "iter_sample",
    "parse_baselines",
]
