"""The crappifier's noise-free forward model and its noise, for a plane or any part of it.

A model trained on crappified data learned to invert its crappifier; its *forward model*
is the crappifier's blur and downsampling steps without the noise, each range at its
median (:func:`forward_model`), and :func:`noise_sigma` is the noise the crappifier adds
at a given clean level. Both are what the data-consistency map
(:mod:`decrappify.crappify.consistency`) compares a prediction with its input by.

:class:`ForwardModel` holds the forward model of one HR image shape as banded per-axis
operators (:mod:`decrappify.crappify.forward_operator`), so that a region, a block or a
whole plane is degraded with the same numbers, on numpy arrays or on torch tensors of a
prediction's device. Pure numpy: no torch.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from decrappify.config.crappify import CrappifyConfig
from decrappify.crappify.degradations import kernel_radius
from decrappify.crappify.forward_operator import (
    NUMPY,
    Arrays,
    AxisStep,
    Band,
    apply_2d,
    axis_band,
)
from decrappify.crappify.pipeline import build_ops
from decrappify.errors import InputError

__all__ = [
    "FORWARD_KINDS",
    "ForwardModel",
    "consistency_halo",
    "forward_model",
    "noise_sigma",
    "white_noise_gain",
]

#: Steps of the noise-free forward model (the deterministic, linear part of a crappifier).
FORWARD_KINDS = ("blur", "downsample")


def _central_params(config: CrappifyConfig) -> dict[str, Any]:
    """Every step at the median of its ranges, read-noise budgets shared as when sampling."""
    steps: list[dict[str, Any]] = []
    last_photons = None
    for step in config.steps:
        central = step.central()
        if central["kind"] == "poisson":
            last_photons = central["photons"]
        elif central["kind"] == "read_noise" and central["photons"] is None:
            central["photons"] = last_photons
        steps.append(central)
    return {"seed": 0, "scale": config.scale, "steps": steps}


def _forward_ops(config: CrappifyConfig, pixel_size: Any, pixel_unit: str | None) -> list[Any]:
    params = _central_params(config)
    params["steps"] = [s for s in params["steps"] if s["kind"] in FORWARD_KINDS]
    return build_ops(params, pixel_size=pixel_size, pixel_unit=pixel_unit)


def forward_model(
    hr: Any,
    config: CrappifyConfig,
    *,
    pixel_size: Any = None,
    pixel_unit: str | None = "micrometer",
) -> np.ndarray:
    """Degrade a normalised HR image with the crappifier's blur and downsampling, no noise.

    Parameters
    ----------
    hr : array-like
        2D image in normalised units on the HR grid (a prediction, or a region of one
        starting at a multiple of the scale).
    config : CrappifyConfig
        The model's crappifier; ranges are taken at their median, noise, JPEG and
        salt-and-pepper steps are left out.
    pixel_size : float or (float, float) or None
        HR pixel size, needed only for blurs given in physical units.
    pixel_unit : str or None
        Unit of ``pixel_size``.

    Returns
    -------
    numpy.ndarray
        float32 image of shape ``(H // scale, W // scale)``.
    """
    x = np.asarray(hr, dtype=np.float32)
    if x.ndim != 2:
        raise InputError(f"forward model: expected a 2D image, got shape {x.shape}")
    model = ForwardModel.build(config, x.shape, pixel_size=pixel_size, pixel_unit=pixel_unit)
    return np.array(model.degrade(x, (0, 0), model.lr_box(), NUMPY), dtype=np.float32)


def _axis_steps(
    config: CrappifyConfig, pixel_size: Any, pixel_unit: str | None
) -> tuple[tuple[AxisStep, ...], tuple[AxisStep, ...]]:
    """List the forward model's linear steps along Y and along X."""
    axes: tuple[list[AxisStep], list[AxisStep]] = ([], [])
    for op in _forward_ops(config, pixel_size, pixel_unit):
        for axis, steps in enumerate(axes):
            if op.kind == "blur":
                steps.append(AxisStep("blur", float(op.params["_sigma"][axis])))
            else:
                steps.append(AxisStep(op.params["method"], int(op.params["scale"])))
    return tuple(axes[0]), tuple(axes[1])


@functools.lru_cache(maxsize=16)
def _bands(key: str, shape: tuple[int, int], pixel_size: Any, unit: str | None) -> Any:
    config = CrappifyConfig.model_validate_json(key)
    steps = _axis_steps(config, pixel_size, unit)
    return tuple(axis_band(axis, int(n)) for axis, n in zip(steps, shape, strict=True))


@dataclass(frozen=True)
class ForwardModel:
    """The forward model and the consistency arithmetic for one HR image shape.

    Its per-axis operators (:class:`~decrappify.crappify.forward_operator.Band`) are
    built once per process and shape (they are not pickled with it), so that a block, a
    region or a whole plane is degraded with the same numbers.

    Attributes
    ----------
    config : CrappifyConfig
        The crappifier.
    hr_shape : tuple of int
        ``(H, W)`` of the HR plane.
    pixel_size : tuple of float or None
        HR pixel size (Y, X), for blurs in physical units.
    pixel_unit : str or None
        Its unit.
    """

    config: CrappifyConfig
    hr_shape: tuple[int, int]
    pixel_size: tuple[float, float] | None = None
    pixel_unit: str | None = "micrometer"

    @classmethod
    def build(
        cls,
        config: CrappifyConfig,
        hr_shape: tuple[int, ...],
        *,
        pixel_size: Any = None,
        pixel_unit: str | None = "micrometer",
    ) -> ForwardModel:
        """Describe the forward model of an image (checks the blur's units now)."""
        if pixel_size is not None and not np.isscalar(pixel_size):
            pixel_size = tuple(float(v) for v in tuple(pixel_size)[-2:])
        model = cls(config, (int(hr_shape[-2]), int(hr_shape[-1])), pixel_size, pixel_unit)
        model.bands  # noqa: B018  (raises now for a blur in units without a pixel size)
        return model

    @property
    def bands(self) -> tuple[Band, Band]:
        """The operators along Y and X (HR columns, LR rows)."""
        return _bands(
            self.config.model_dump_json(), self.hr_shape, self.pixel_size, self.pixel_unit
        )

    @property
    def lr_shape(self) -> tuple[int, int]:
        """Shape of the degraded plane."""
        by, bx = self.bands
        return (by.rows, bx.rows)

    def lr_box(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """Return the whole degraded plane as a box."""
        h, w = self.lr_shape
        return ((0, h), (0, w))

    def degrade(self, hr: Any, origin: tuple[int, int], box: Any, arrays: Arrays = NUMPY) -> Any:
        """Degrade an HR region placed at ``origin``; return the LR ``box`` of the result.

        Parameters
        ----------
        hr : array
            2D normalised HR region (numpy, or a tensor of ``arrays``); the rest of the
            plane counts as zero, so the boxes of an image's blocks add up to the whole.
        origin : tuple of int
            HR (Y, X) position of ``hr[0, 0]``.
        box : pair of (start, stop)
            LR rows and columns to return.
        arrays : Arrays
            Where the products run.

        Returns
        -------
        array
            float32, the box's shape (of ``arrays``).
        """
        return apply_2d(self.bands, box, hr, origin, arrays)


def _white_noise_transfer(op: Any) -> float:
    """Factor by which a linear step multiplies the variance of white noise."""
    if op.kind == "downsample":
        s = int(op.params["scale"])
        if op.params["method"] == "area":
            return 1.0 / (s * s)
        return 0.25 if s % 2 == 0 else 1.0  # bilinear: 2x2 mean (even) or centre pixel
    if op.kind == "blur":
        return math.prod(white_noise_gain(sigma) for sigma in op.params["_sigma"] if sigma > 0)
    return 1.0


def noise_sigma(
    signal: Any,
    config: CrappifyConfig,
    *,
    pixel_size: Any = None,
    pixel_unit: str | None = "micrometer",
    min_sigma: float = 0.01,
) -> np.ndarray:
    """Noise standard deviation the crappifier gives an LR pixel of a given clean level.

    Shot noise ``(max(x, 0) + background) / photons``, read noise ``(sigma /
    photons)**2``, Gaussian ``sigma**2`` and local-variance ``gain * max(x, 0) +
    min_variance`` add up; noise added before a blur or the downsampling is reduced by
    what that step does to white noise. Each range is taken at its median. JPEG and
    salt-and-pepper are not counted.

    Parameters
    ----------
    signal : array-like or torch.Tensor
        Clean LR intensities in normalised units (the forward model of the prediction).
    config : CrappifyConfig
        The crappifier.
    pixel_size, pixel_unit
        As :func:`forward_model`.
    min_sigma : float
        Floor of the standard deviation, in normalised units (a noise-free crappifier
        would otherwise make every rounding error infinitely significant).

    Returns
    -------
    numpy.ndarray
        float32 standard deviation per pixel, at least ``min_sigma`` (a tensor of the
        same kind for a torch ``signal``).
    """
    numpy_in = isinstance(signal, np.ndarray | np.generic | list | tuple | float | int)
    x = np.asarray(signal, dtype=np.float64) if numpy_in else signal
    x = x.clip(min=0.0)
    params = _central_params(config)
    ops = build_ops(params, pixel_size=pixel_size, pixel_unit=pixel_unit)
    constant, gain = 0.0, 0.0  # variance = gain * x + constant
    for i, step in enumerate(params["steps"]):
        kind = step["kind"]
        transfer = math.prod(_white_noise_transfer(later) for later in ops[i + 1 :])
        if kind == "gaussian_noise":
            constant += transfer * step["sigma"] ** 2
        elif kind == "local_variance_noise":
            gain += transfer * step["gain"]
            constant += transfer * step["min_variance"]
        elif kind == "poisson":
            gain += transfer / step["photons"]
            constant += transfer * step["background"] / step["photons"]
        elif kind == "read_noise":
            constant += transfer * (step["sigma"] / step["photons"]) ** 2
    sigma = (x * gain + constant) ** 0.5
    sigma = sigma.clip(min=float(min_sigma))
    return sigma.astype(np.float32) if numpy_in else sigma


def white_noise_gain(sigma: float) -> float:
    """``sum(w**2)`` of scipy's 1D Gaussian kernel: its factor on white noise variance.

    In 2D (the outer product of two such kernels) it is also the standard deviation of
    white unit noise after the filter, which :func:`data_consistency` divides by.
    """
    radius = kernel_radius(sigma)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return float(np.sum((taps / taps.sum()) ** 2))


def consistency_halo(
    config: CrappifyConfig,
    *,
    window: float = 2.0,
    pixel_size: Any = None,
    pixel_unit: str | None = "micrometer",
) -> int:
    """LR pixels of context a tile needs on each side for exact consistency maps.

    Parameters
    ----------
    config : CrappifyConfig
        The crappifier.
    window : float
        The averaging window of :func:`data_consistency`.
    pixel_size, pixel_unit
        As :func:`forward_model`.

    Returns
    -------
    int
        Halo in LR pixels: the forward model's reach (blur radii, bilinear
        interpolation) plus the window's radius.
    """
    ops = _forward_ops(config, pixel_size, pixel_unit)
    reach = 0.0  # in pixels of the current grid
    for op in ops:
        if op.kind == "blur":
            reach += max(kernel_radius(s) for s in op.params["_sigma"])
        elif op.kind == "downsample":
            s = int(op.params["scale"])
            reach = math.ceil(reach / s) + (1 if op.params["method"] == "bilinear" else 0)
    return int(math.ceil(reach)) + (kernel_radius(window) if window > 0 else 0)
