"""Where layers lie in the viewer: the visible region, the current plane, LR regions.

Geometry on public viewer state (camera, dims) and on layers; how images are put on one
grid for scoring is :mod:`decrappify.metrics.alignment`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from decrappify.errors import InputError

Box = tuple[tuple[float, float], tuple[float, float]]


def canvas_size(viewer: Any) -> tuple[int, int]:
    """Height and width of the viewer's canvas in screen pixels.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.

    Returns
    -------
    (int, int)
        ``viewer.canvas.size`` (napari >= 0.9); 600 x 800 when unknown.
    """
    canvas = getattr(viewer, "canvas", None)
    size = getattr(canvas, "size", None)
    if size is not None and len(size) == 2 and min(size) > 0:
        return int(size[0]), int(size[1])
    return 600, 800


def _camera(viewer: Any) -> Any:
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def visible_data_box(viewer: Any, layer: Any) -> Box:
    """The canvas' field of view in the data coordinates of an image layer's Y and X axes.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer, in 2D display with the layer's Y and X axes on screen.
    layer : napari.layers.Layer
        The layer.

    Returns
    -------
    ((y0, y1), (x0, x1))
        Continuous data coordinates (pixel centres at integers) of the bounding box of
        the four canvas corners.

    Raises
    ------
    InputError
        In 3D display, or when the screen does not show the layer's last two axes.
    """
    dims = viewer.dims
    if dims.ndisplay != 2:
        raise InputError("preview: switch the viewer to 2D display first")
    n_world = len(dims.point)
    if tuple(dims.displayed) != (n_world - 2, n_world - 1):
        raise InputError(
            f"preview: the canvas shows axes {tuple(dims.displayed)}; show the Y/X plane "
            "(the last two axes) to preview"
        )
    height, width = canvas_size(viewer)
    camera = _camera(viewer)
    cy, cx = (float(c) for c in tuple(camera.center)[-2:])
    zoom = float(camera.zoom)
    half_h, half_w = height / zoom / 2, width / zoom / 2
    point = np.asarray(dims.point, dtype=float)
    corners = []
    for y in (cy - half_h, cy + half_h):
        for x in (cx - half_w, cx + half_w):
            world = point.copy()
            world[-2:] = (y, x)
            corners.append(np.asarray(layer.world_to_data(world), dtype=float)[-2:])
    stacked = np.stack(corners)
    low, high = stacked.min(axis=0), stacked.max(axis=0)
    return (float(low[0]), float(high[0])), (float(low[1]), float(high[1]))


def current_plane(viewer: Any, layer: Any) -> int:
    """Index of the plane of a 3D layer shown at the viewer's current position.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.
    layer : napari.layers.Layer
        A 3D layer (0 is returned for 2D layers).

    Returns
    -------
    int
        The plane index, clipped to the layer's planes.
    """
    shape = layer.data[0].shape if getattr(layer, "multiscale", False) else layer.data.shape
    if len(shape) < 3:
        return 0
    position = np.asarray(layer.world_to_data(viewer.dims.point), dtype=float)
    return int(np.clip(np.round(position[-3]), 0, shape[-3] - 1))


def lr_region(
    box: Box, scale: int, lr_shape: tuple[int, int], *, margin: int = 1
) -> tuple[slice, slice]:
    """LR pixels whose HR blocks meet a box given in HR data coordinates.

    LR pixel ``j`` covers HR pixels ``[j * scale, (j + 1) * scale)``, i.e. the continuous
    HR coordinates ``[j * scale - 0.5, (j + 1) * scale - 0.5)``.

    Parameters
    ----------
    box : ((y0, y1), (x0, x1))
        HR data coordinates (pixel centres at integers).
    scale : int
        The crappifier's downsampling factor.
    lr_shape : (int, int)
        LR height and width.
    margin : int
        LR pixels added on each side.

    Returns
    -------
    (slice, slice)
        Y and X slices of the LR image, clipped to it (possibly empty).
    """
    out = []
    for (low, high), size in zip(box, lr_shape, strict=True):
        start = math.floor((low + 0.5) / scale) - margin
        stop = math.floor((high + 0.5) / scale) + 1 + margin
        out.append(slice(int(np.clip(start, 0, size)), int(np.clip(stop, 0, size))))
    return out[0], out[1]
