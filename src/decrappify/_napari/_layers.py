"""From napari layers to :class:`decrappify.io.Image` records and back.

The widgets never hand napari layers to the core: they build an ``Image`` from a layer
(:func:`layer_to_image`: the pixels as they are, lazy or not, the axes, the pixel size
from ``scale``, the units and ``translate``) and turn results back into layer keyword
arguments (:func:`image_layer_kwargs`) so that a derived image overlays its source.
Only public napari attributes are used (the widgets receive a public-only viewer proxy).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from decrappify.errors import InputError
from decrappify.io import Image, coerce_dtype

#: Key of the layer ``metadata`` entry decrappify reads and writes.
META_KEY = "decrappify"
#: napari's name for "no physical unit".
PIXEL_UNIT = "pixel"
#: napari axis labels that mean time.
_TIME_LABELS = {"t", "time"}
#: Contrast limits of a consistency layer, in noise standard deviations (beyond 4: flagged).
CONSISTENCY_LIMIT = 5.0
#: How the trust-map layers are shown (an uncertainty layer's contrast: from its data).
TRUST_DISPLAY: dict[str, dict[str, Any]] = {
    "uncertainty": {"colormap": "magma", "blending": "additive"},
    "consistency": {
        "colormap": "PiYG",
        "contrast_limits": (-CONSISTENCY_LIMIT, CONSISTENCY_LIMIT),
        "blending": "translucent",
        "opacity": 0.7,
    },
}


#: Name endings of the layers the widgets derive, and what each is (a layer opened again
#: from a file keeps its name, not its metadata).
DERIVED_SUFFIXES = {
    " crappified": "crappified",
    " crappified preview": "preview",
    " super-resolved": "super-resolved",
    " super-resolved preview": "preview",
    " uncertainty": "uncertainty",
    " consistency": "consistency",
    " error": "error",
    " bicubic": "baseline",
    "training preview": "preview",
}


def derived_role(layer: Any) -> str | None:
    """What a layer the widgets made is: not an acquisition to train on or to score against.

    Parameters
    ----------
    layer : napari.layers.Layer
        The layer.

    Returns
    -------
    str or None
        ``"crappified"``, ``"super-resolved"``, ``"uncertainty"``, ``"consistency"``,
        ``"error"``, ``"baseline"`` or ``"preview"``, from the decrappify metadata the
        widget gave it or else its name; None for anything else.
    """
    meta = (getattr(layer, "metadata", None) or {}).get(META_KEY) or {}
    if meta.get("role"):
        return str(meta["role"])
    if meta.get("trust_map"):
        return str(meta["trust_map"])
    if "predict" in meta:
        return "super-resolved"
    if "crappify" in meta:
        return "crappified"
    name = str(getattr(layer, "name", ""))
    for suffix, role in sorted(DERIVED_SUFFIXES.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix) or name == suffix.strip():
            return role
    return None


def breakable(path: str) -> str:
    """A path a word-wrapped label can break after each separator (zero-width spaces).

    Parameters
    ----------
    path : str
        A file or folder path.

    Returns
    -------
    str
        The path with U+200B after every ``/`` and ``\\``: it reads the same, and wraps
        instead of running past the label's edge.
    """
    return path.replace("/", "/\u200b").replace("\\", "\\\u200b")


def layer_to_image(layer: Any) -> Image:
    """Describe an image layer as an :class:`~decrappify.io.Image` (no pixel is copied).

    Parameters
    ----------
    layer : napari.layers.Image
        A single-channel 2D or 3D image layer (multiscale layers give their
        full-resolution level).

    Returns
    -------
    Image
        ``data`` is the layer's array (numpy or dask; unsupported dtypes are converted as
        :func:`decrappify.io.coerce_dtype` does: float64 to float32, int32 to the
        smallest unsigned type holding the values ...); ``axes`` come from the metadata
        decrappify's reader stored, else ``"YX"``/``"ZYX"`` (``"TYX"`` when the first
        axis label is ``t``); ``pixel_size`` is the layer's ``scale`` (None when the scale
        is all ones in pixel units); ``units`` the layer's units (None when any is
        ``pixel``); ``translate`` the layer's translate; ``source`` the layer name.

    Raises
    ------
    InputError
        For a layer that is not an image, an RGB layer, a layer that is not 2D or 3D,
        a rotated or sheared layer, or an unsupported pixel type.
    """
    name = str(getattr(layer, "name", "layer"))
    if not _is_image_layer(layer):
        raise InputError(f"{name}: expected an image layer, got a {type(layer).__name__} layer")
    if getattr(layer, "rgb", False):
        raise InputError(
            f"{name}: expected a single-channel image, got an RGB layer; split the channels "
            "first (right-click the layer > Split RGB)"
        )
    data = layer.data[0] if layer.multiscale else layer.data
    if data.ndim not in (2, 3):
        raise InputError(
            f"{name}: expected a 2D or 3D single-channel image, got shape {tuple(data.shape)}"
        )
    check_axis_aligned(layer)
    pixel_size, units = layer_pixel_size(layer)
    translate = tuple(float(t) for t in layer.translate)
    return Image(
        coerce_dtype(data, name),
        axes=layer_axes(layer, data.ndim),
        pixel_size=pixel_size,
        units=units,
        source=name,
        translate=translate if any(translate) else None,
    )


def _is_image_layer(layer: Any) -> bool:
    from napari.layers import Image as ImageLayer

    return isinstance(layer, ImageLayer)


def check_axis_aligned(layer: Any) -> None:
    """Refuse layers whose pixels are rotated or sheared in the world.

    Parameters
    ----------
    layer : napari.layers.Layer
        The layer.

    Raises
    ------
    InputError
        When ``rotate`` is not the identity or ``shear`` is not zero (an
        :class:`~decrappify.io.Image` only carries a scale and a translation; the
        ``affine`` applied after them is copied to derived layers instead).
    """
    rotate = np.asarray(layer.rotate, dtype=float)
    shear = np.asarray(layer.shear, dtype=float)
    if not np.allclose(rotate, np.eye(rotate.shape[0])) or not np.allclose(shear, 0):
        raise InputError(
            f"{layer.name}: rotated or sheared layers are not supported; reset the layer's "
            "rotate and shear (or put the transform in its affine) first"
        )


def layer_axes(layer: Any, ndim: int) -> str:
    """Axes of a layer: from decrappify metadata, else from the axis labels and ``ndim``.

    Parameters
    ----------
    layer : napari.layers.Layer
        The layer.
    ndim : int
        2 or 3.

    Returns
    -------
    str
        ``"YX"``, ``"ZYX"`` or ``"TYX"``.
    """
    info = (getattr(layer, "metadata", None) or {}).get(META_KEY) or {}
    axes = info.get("axes")
    if isinstance(axes, str) and len(axes) == ndim and axes in ("YX", "ZYX", "TYX"):
        return axes
    if ndim == 2:
        return "YX"
    labels = tuple(str(a).lower() for a in getattr(layer, "axis_labels", ()) or ())
    if labels and labels[0] in _TIME_LABELS:
        return "TYX"
    return "ZYX"


def layer_pixel_size(layer: Any) -> tuple[tuple[float, ...] | None, tuple[str, ...] | None]:
    """Pixel size and units of a layer, or None where they are unknown.

    Parameters
    ----------
    layer : napari.layers.Layer
        The layer.

    Returns
    -------
    pixel_size : tuple of float or None
        The layer's ``scale``; None when it is all ones and every unit is ``pixel``.
    units : tuple of str or None
        The unit names (``"micrometer"`` ...); None when any axis is in ``pixel``.
    """
    scale = tuple(float(s) for s in layer.scale)
    names = tuple(str(u) for u in getattr(layer, "units", ()) or ())
    units = names if names and PIXEL_UNIT not in names else None
    if units is None and all(s == 1.0 for s in scale):
        return None, None
    return scale, units


def image_layer_kwargs(image: Image, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments of ``viewer.add_image`` that place ``image`` where it belongs.

    Parameters
    ----------
    image : Image
        The record (its ``data`` is not included).
    **overrides
        Other layer arguments (``name``, ``contrast_limits``, ``colormap`` ...); a
        ``metadata`` dict is merged with the decrappify entry.

    Returns
    -------
    dict
        ``name``, ``scale`` (the pixel size, ones when unknown), ``translate``,
        ``units`` (when known) and ``metadata={"decrappify": {axes, pixel_size, units,
        source}}`` plus the overrides.
    """
    meta = {
        "axes": image.axes,
        "pixel_size": image.pixel_size,
        "units": image.units,
        "source": image.source,
    }
    extra_meta = dict(overrides.pop("metadata", None) or {})
    extra_meta[META_KEY] = {**meta, **(extra_meta.get(META_KEY) or {})}
    kwargs: dict[str, Any] = {
        "name": image.name,
        "scale": tuple(float(s) for s in image.scale),
        "translate": tuple(float(t) for t in image.translate or (0.0,) * image.ndim),
        "metadata": extra_meta,
    }
    if image.units is not None:
        kwargs["units"] = tuple(image.units)
    kwargs.update(overrides)
    return kwargs


def display_kwargs(layer: Any) -> dict[str, Any]:
    """Contrast limits and colormap of a layer, to show a derived image the same way.

    Parameters
    ----------
    layer : napari.layers.Image
        The source layer.

    Returns
    -------
    dict
        ``contrast_limits``, ``colormap``, ``gamma`` and ``affine`` of ``layer``.
    """
    return {
        "contrast_limits": tuple(float(c) for c in layer.contrast_limits),
        "colormap": layer.colormap.name,
        "gamma": float(layer.gamma),
        "affine": np.asarray(layer.affine.affine_matrix),
    }


def find_layer(viewer: Any, name: str | None) -> Any:
    """The viewer's layer called ``name``, or None.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.
    name : str or None
        Layer name.

    Returns
    -------
    napari.layers.Layer or None
        The layer.
    """
    if not name:
        return None
    for layer in viewer.layers:
        if layer.name == name:
            return layer
    return None


def set_or_add_image(viewer: Any, data: Any, kwargs: dict[str, Any]) -> Any:
    """Replace the data and placement of the image layer named ``kwargs["name"]``, or add it.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.
    data : array or list of arrays
        The pixels.
    kwargs : dict
        Layer arguments, as from :func:`image_layer_kwargs`.

    Returns
    -------
    napari.layers.Image
        The updated or new layer.
    """
    layer = find_layer(viewer, kwargs["name"])
    if layer is not None and (not _is_image_layer(layer) or layer.ndim != np.ndim(data)):
        viewer.layers.remove(layer)
        layer = None
    if layer is None:
        return viewer.add_image(data, **kwargs)
    if "units" in kwargs:
        layer.units = kwargs["units"]
    layer.scale = kwargs["scale"]
    layer.translate = kwargs["translate"]
    layer.data = data
    layer.metadata = kwargs.get("metadata", {})
    for key in ("contrast_limits", "colormap", "gamma", "affine"):
        if key in kwargs:
            setattr(layer, key, kwargs[key])
    return layer


def crappified_scale(layer: Any) -> int | None:
    """The factor a layer was crappified by, when decrappify's Crappify widget made it.

    Parameters
    ----------
    layer : napari.layers.Layer or None
        The layer.

    Returns
    -------
    int or None
        ``metadata["decrappify"]["crappify"]["config"]["scale"]``, or None.
    """
    info = (getattr(layer, "metadata", None) or {}).get(META_KEY) or {}
    config = (info.get("crappify") or {}).get("config") or {}
    scale = config.get("scale") if isinstance(config, dict) else None
    return int(scale) if isinstance(scale, int) and not isinstance(scale, bool) else None


def trust_layer_kwargs(image: Image, key: str, **overrides: Any) -> dict[str, Any]:
    """Layer arguments of a trust map: placed like :func:`image_layer_kwargs`, shown as such.

    Parameters
    ----------
    image : Image
        The map (``uncertainty`` or ``consistency``).
    key : str
        Which map: ``uncertainty`` (magma, 0 to the 99.5th percentile of the centre of its
        middle plane) or ``consistency`` (a diverging map over ±5 noise standard
        deviations, pink where the prediction is brighter than the input explains).
    **overrides
        ``name``, ``metadata`` ...

    Returns
    -------
    dict
        Keyword arguments of ``viewer.add_image``.
    """
    shown = dict(TRUST_DISPLAY[key])
    if "contrast_limits" not in shown:
        data = image.data
        lead = tuple(n // 2 for n in data.shape[:-2])
        window = []
        for n in data.shape[-2:]:
            start = max(0, (int(n) - 1024) // 2)
            window.append(slice(start, min(int(n), start + 1024)))
        part = np.asarray(data[(*lead, *window)], dtype=np.float64)
        high = float(np.percentile(part, 99.5)) if part.size else 0.0
        shown["contrast_limits"] = (0.0, high if high > 0 else 1.0)
    return image_layer_kwargs(image, **{**shown, **overrides})
