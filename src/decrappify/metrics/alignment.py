"""How images are put on one pixel grid before scoring, from where they lie in the world.

Pure geometry on :class:`decrappify.io.Image` records (pixel size, translate, units),
shared by ``decrappify evaluate`` and napari's Compare widget. Conventions are those of
napari and NGFF: pixel ``i`` of an axis has its centre at ``translate + i * pixel_size``
and covers half a pixel on either side; a derived LR image of factor ``s`` has its pixel
``j`` centred over the ``s x s`` block it came from (``Image.with_data(yx_factor=s)``).

:func:`plan_comparison` decides whether a prediction, its ground truth and an LR input
lie on the same grid (``exact``), on the same grid but with a smaller common region
(``crop``), or cover the same field of view with other pixel sizes (``resize``), and
refuses layers that do not overlay; lengths in other units are converted first
(:func:`in_units_of`, with ``pint``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from decrappify.errors import InputError
from decrappify.io import Image

#: Positions are equal when they differ by less than this fraction of a pixel.
GRID_TOLERANCE = 1e-3


# ----------------------------------------------------------------------------- units


def _unit_factor(unit: str | None, target: str | None) -> float | None:
    """Factor converting lengths (or times) in ``unit`` to ``target``, None if impossible."""
    if unit == target:
        return 1.0
    if unit is None or target is None:
        return None
    import pint

    registry = pint.get_application_registry()
    try:
        return float(registry.Quantity(1.0, unit).to(target).magnitude)
    except (pint.errors.PintError, AttributeError, ValueError):
        return None


def in_units_of(image: Image, reference: Image) -> Image:
    """Express ``image``'s pixel size and translate in the units of ``reference``.

    Parameters
    ----------
    image : Image
        The record to convert.
    reference : Image
        The record whose units to use (same number of axes).

    Returns
    -------
    Image
        ``image`` itself when the units already match or cannot be converted, else a
        copy with converted ``pixel_size``, ``translate`` and ``units``.
    """
    if image.units == reference.units or image.units is None or reference.units is None:
        return image
    if image.ndim != reference.ndim:
        return image
    factors = [_unit_factor(u, r) for u, r in zip(image.units, reference.units, strict=True)]
    if any(f is None for f in factors):
        return image
    scale = tuple(s * f for s, f in zip(image.scale, factors, strict=True))  # type: ignore[operator]
    shift = image.translate or (0.0,) * image.ndim
    translate = tuple(t * f for t, f in zip(shift, factors, strict=True))  # type: ignore[operator]
    return replace(image, pixel_size=scale, units=reference.units, translate=translate)


# ----------------------------------------------------------------------------- grids


def origin(image: Image) -> tuple[float, ...]:
    """World position of the centre of the first pixel along each axis.

    Parameters
    ----------
    image : Image
        The record.

    Returns
    -------
    tuple of float
        ``translate`` (zeros when None).
    """
    return tuple(float(t) for t in (image.translate or (0.0,) * image.ndim))


def extent(image: Image, axis: int) -> tuple[float, float]:
    """World interval covered by an axis: from the first pixel's edge to the last's.

    Parameters
    ----------
    image : Image
        The record.
    axis : int
        Axis index (negative counts from the end).

    Returns
    -------
    (float, float)
        ``translate - size / 2`` and ``translate + (n - 1/2) * size``.
    """
    size, start = image.scale[axis], origin(image)[axis]
    return start - size / 2, start + (image.shape[axis] - 0.5) * size


def _close(a: float, b: float, pixel: float) -> bool:
    return abs(a - b) <= GRID_TOLERANCE * pixel


def same_pixels(a: Image, b: Image, axes: tuple[int, ...] = (-2, -1)) -> bool:
    """Whether two records have the same pixel size and origin along ``axes``.

    Parameters
    ----------
    a, b : Image
        The records (in the same units).
    axes : tuple of int
        Axes to compare.

    Returns
    -------
    bool
        True when sizes and origins agree within a thousandth of a pixel.
    """
    return all(
        _close(a.scale[i], b.scale[i], b.scale[i])
        and _close(origin(a)[i], origin(b)[i], b.scale[i])
        for i in axes
    )


def same_field_of_view(a: Image, b: Image, axes: tuple[int, ...] = (-2, -1)) -> bool:
    """Whether two records cover the same world interval along ``axes`` (within half a pixel).

    Parameters
    ----------
    a, b : Image
        The records (in the same units); ``b``'s pixel size sets the tolerance.
    axes : tuple of int
        Axes to compare.

    Returns
    -------
    bool
        True when both ends agree within half a pixel of ``b``.
    """
    for i in axes:
        (a0, a1), (b0, b1) = extent(a, i), extent(b, i)
        if abs(a0 - b0) > b.scale[i] / 2 or abs(a1 - b1) > b.scale[i] / 2:
            return False
    return True


def describe_extent(image: Image) -> str:
    """Y/X world intervals of a record, for messages.

    Parameters
    ----------
    image : Image
        The record.

    Returns
    -------
    str
        For example ``"y 0-512, x 0-512 micrometer"``.
    """
    unit = f" {image.units[-1]}" if image.units else ""
    parts = [
        f"{label} {a:.6g}-{b:.6g}"
        for label, (a, b) in zip("yx", (extent(image, -2), extent(image, -1)), strict=True)
    ]
    return ", ".join(parts) + unit


@dataclass(frozen=True)
class ComparePlan:
    """How a prediction, its ground truth and an optional LR input are put on one grid.

    Parameters
    ----------
    mode : {"exact", "crop", "resize"}
        ``"exact"``: same grids. ``"crop"``: same origin and pixel size, the common
        region from the first pixel is compared (an LR whose HR size was not a multiple
        of the scale). ``"resize"``: the prediction (and the baselines) are resampled
        onto the ground-truth grid, which covers the same field of view.
    scale : int or None
        Integer factor between the LR and the ground-truth grids, if known.
    n_planes : int
        Planes compared (1 for 2D images).
    """

    mode: Literal["exact", "crop", "resize"]
    scale: int | None
    n_planes: int

    def evaluate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`decrappify.metrics.iter_evaluate_stack`.

        Returns
        -------
        dict
            ``crop``, ``resize`` and ``scale``.
        """
        return {"crop": self.mode == "crop", "resize": self.mode == "resize", "scale": self.scale}

    def describe(self, pred: Image, gt: Image) -> str:
        """Say in a sentence how the prediction was put on the ground truth's grid.

        Parameters
        ----------
        pred, gt : Image
            The prediction and the ground truth the plan was made for.

        Returns
        -------
        str
            For ``resize``: the prediction's grid and the ground truth's, and that it
            was resampled; for ``crop``: that only the common region was scored; for
            ``exact``: that the grids agree.
        """
        pred = in_units_of(pred, gt)
        mine, theirs = _grid_text(pred), _grid_text(gt)
        if self.mode == "resize":
            return (
                f"prediction {pred.source!r} ({mine}) was resampled bicubically onto the "
                f"ground truth's grid ({theirs}) before scoring"
            )
        if self.mode == "crop":
            return (
                f"the images lie on one grid but differ in size (prediction {mine}, ground "
                f"truth {theirs}, or a smaller LR input): the common region from the first "
                "pixel was scored"
            )
        return f"prediction and ground truth share one grid ({theirs})"


def _grid_text(image: Image) -> str:
    """``"256x256, pixel size 16 nanometer"`` (no unit when it is unknown)."""
    h, w = image.shape[-2:]
    unit = f" {image.units[-1]}" if image.units else ""
    return f"{h}x{w}, pixel size {image.scale[-1]:.4g}{unit}"


def plan_comparison(pred: Image, gt: Image, lr: Image | None = None) -> ComparePlan:
    """Decide how to compare layers from where they lie in the world, or refuse.

    Parameters
    ----------
    pred : Image
        The prediction.
    gt : Image
        The ground truth; the others are converted to its units.
    lr : Image or None
        The low-resolution input, for the interpolation baselines.

    Returns
    -------
    ComparePlan
        The mode and the LR factor.

    Raises
    ------
    InputError
        When the layers differ in dimensions or planes, or do not cover the same region
        (the message gives both world extents).
    """
    pred = in_units_of(pred, gt)
    _check_planes(pred, gt, "prediction")
    if pred.shape[-2:] == gt.shape[-2:] and same_pixels(pred, gt):
        modes = {"exact"}
    elif same_pixels(pred, gt):
        modes = {"crop"}
    elif same_field_of_view(pred, gt):
        modes = {"resize"}
    else:
        raise InputError(
            f"prediction {pred.source!r} does not overlay ground truth {gt.source!r}: it "
            f"covers {describe_extent(pred)}, the ground truth {describe_extent(gt)}; give "
            "both layers the same field of view (scale and translate)"
        )
    scale = None
    if lr is not None:
        lr = in_units_of(lr, gt)
        _check_planes(lr, gt, "LR input")
        lr_mode, scale = _lr_mode(lr, gt)
        modes.add(lr_mode)
    if {"crop", "resize"} <= modes:
        raise InputError(
            f"prediction {pred.source!r} needs resampling onto ground truth {gt.source!r} but "
            "the LR input only covers part of it; crop the layers to a common region first"
        )
    mode = "resize" if "resize" in modes else "crop" if "crop" in modes else "exact"
    n_planes = gt.shape[0] if gt.ndim == 3 else 1
    return ComparePlan(mode=mode, scale=scale, n_planes=n_planes)  # type: ignore[arg-type]


def _check_planes(image: Image, gt: Image, label: str) -> None:
    if image.ndim != gt.ndim:
        raise InputError(
            f"{label} {image.source!r} is {image.ndim}D {image.shape} but ground truth "
            f"{gt.source!r} is {gt.ndim}D {gt.shape}"
        )
    if gt.ndim == 3:
        if image.shape[0] != gt.shape[0]:
            raise InputError(
                f"{label} {image.source!r} has {image.shape[0]} planes but ground truth "
                f"{gt.source!r} has {gt.shape[0]}"
            )
        if not same_pixels(image, gt, axes=(0,)):
            raise InputError(
                f"{label} {image.source!r} has planes at {origin(image)[0]:.6g} + k * "
                f"{image.scale[0]:.6g} but ground truth {gt.source!r} at "
                f"{origin(gt)[0]:.6g} + k * {gt.scale[0]:.6g}; give them the same Z scale "
                "and translate"
            )


def _lr_mode(lr: Image, gt: Image) -> tuple[str, int | None]:
    """How the LR grid relates to the GT grid: an integer factor with centred blocks, or not."""
    factors = [lr.scale[i] / gt.scale[i] for i in (-2, -1)]
    s = round(factors[0])
    integer = s >= 1 and all(abs(f - s) <= GRID_TOLERANCE * s for f in factors)
    if integer:
        expected = [origin(gt)[i] + (s - 1) / 2 * gt.scale[i] for i in (-2, -1)]
        centred = all(
            _close(origin(lr)[i], e, gt.scale[i]) for i, e in zip((-2, -1), expected, strict=True)
        )
        if centred:
            if all(lr.shape[i] * s == gt.shape[i] for i in (-2, -1)):
                return "exact", s
            return "crop", s
    if same_field_of_view(lr, gt):
        return "resize", s if integer else None
    raise InputError(
        f"LR input {lr.source!r} does not overlay ground truth {gt.source!r}: it covers "
        f"{describe_extent(lr)}, the ground truth {describe_extent(gt)}; the LR pixel size "
        "must be an integer multiple of the ground truth's, each LR pixel centred on its "
        "block (as the Crappify widget makes it)"
    )
