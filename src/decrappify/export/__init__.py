"""bioimage.io model packages of trained decrappify models (``decrappify export``).

The package runs in any bioimage.io consumer without decrappify: its weights are
TorchScript and a state dict whose ``architecture.py`` is generated from the network, its
halo is the measured receptive field, and ``bioimageio.core`` tests it before it is
written. :mod:`.bioimageio` drives the steps; :mod:`.rdf` and :mod:`.readme` write the
text, :mod:`.tensors` the test tensors, :mod:`.weights` and :mod:`.architecture` the
weights, :mod:`.package` runs bioimage.io's own tools.
"""

from decrappify.export.bioimageio import (
    BioimageioExport,
    iter_export_bioimageio,
    measure_geometry,
    parse_people,
    parse_weight_formats,
)
from decrappify.export.rdf import People
from decrappify.export.weights import WEIGHT_FORMATS

__all__ = [
    "WEIGHT_FORMATS",
    "BioimageioExport",
    "People",
    "iter_export_bioimageio",
    "measure_geometry",
    "parse_people",
    "parse_weight_formats",
]
