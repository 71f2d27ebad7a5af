"""Reading and writing microscopy images: TIFF, Zarr v3, OME-Zarr, folders, arrays.

See ``docs/io.md`` for the formats, the metadata kept, atomic writes and resume.
"""

from decrappify.io._blocks import BlockArray
from decrappify.io.atomic import atomic_write, atomic_write_text, partial_path
from decrappify.io.image import Image
from decrappify.io.omezarr import Multiscale, read_ome_zarr_metadata
from decrappify.io.paths import (
    check_output_path,
    expand_inputs,
    natural_key,
    output_format,
    output_path_for,
)
from decrappify.io.read import read_array, read_image
from decrappify.io.validate import check_finite, coerce_dtype
from decrappify.io.write import iter_write_image, write_image

__all__ = [
    "BlockArray",
    "Image",
    "Multiscale",
    "atomic_write",
    "atomic_write_text",
    "check_finite",
    "check_output_path",
    "coerce_dtype",
    "expand_inputs",
    "iter_write_image",
    "natural_key",
    "output_format",
    "output_path_for",
    "partial_path",
    "read_array",
    "read_image",
    "read_ome_zarr_metadata",
    "write_image",
]
