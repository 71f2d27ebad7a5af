"""Reading and writing microscopy images: TIFF, Zarr v3, OME-Zarr, folders, arrays."""

from decrappify.io.image import Image

__all__ = ["Image"]
