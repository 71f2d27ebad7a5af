"""A crappifier's noise-free forward model as banded per-axis operators (pure numpy).

The blur and downsampling steps of a crappifier are linear and act on each axis on its
own, so degrading an HR image ``P`` is ``A(P) = M_y @ P @ M_x.T``: one matrix per axis
(:class:`Band`, the rows of the whole axis with their few non-zero weights, borders
reflected as :func:`scipy.ndimage.gaussian_filter1d` does). A region, a block or a whole
plane is degraded with the rows and columns of the same two matrices, so the pieces of
an image add up to the whole exactly (up to float rounding) -- which is how the
data-consistency map is made block by block while a prediction runs
(:mod:`decrappify.predict.trust_blocks`).

The matrices are applied with ``@`` in groups of rows (:func:`apply_rows`), each group
touching only the input rows its band reaches, through an :class:`Arrays` backend:
:data:`NUMPY` here, torch tensors on the model's device in
:mod:`decrappify.predict.device_arrays`; the arithmetic is written once for both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from decrappify.crappify.degradations import bilinear_positions, kernel_radius

__all__ = [
    "NUMPY",
    "Arrays",
    "AxisStep",
    "Band",
    "NumpyArrays",
    "apply_2d",
    "apply_rows",
    "axis_band",
    "blur_band",
    "reach",
]

Span = tuple[int, int]
"""``(start, stop)`` of one axis, stop excluded."""

#: Output rows applied together by :func:`apply_rows`.
GROUP = 64


class Arrays(Protocol):
    """Where the operators' arithmetic runs: numpy on the CPU, or torch on a device."""

    def asarray(self, values: np.ndarray) -> Any:
        """Put a numpy array where the computation runs (float32)."""

    def zeros(self, shape: tuple[int, ...]) -> Any:
        """Allocate float32 zeros there."""

    def numpy(self, values: Any) -> np.ndarray:
        """Bring an array back as numpy."""


class NumpyArrays:
    """The :class:`Arrays` of the numpy path (``dtype`` float64 or float32)."""

    def __init__(self, dtype: Any = np.float32) -> None:
        self.dtype = np.dtype(dtype)

    def asarray(self, values: np.ndarray) -> np.ndarray:
        """Return ``values`` in this backend's dtype."""
        return np.asarray(values, dtype=self.dtype)

    def zeros(self, shape: tuple[int, ...]) -> np.ndarray:
        """Allocate zeros in this backend's dtype."""
        return np.zeros(shape, dtype=self.dtype)

    def numpy(self, values: Any) -> np.ndarray:
        """Return ``values`` as they are (already numpy)."""
        return np.asarray(values)


#: The numpy backend (float32).
NUMPY = NumpyArrays()


@dataclass(frozen=True)
class AxisStep:
    """One linear step along an axis.

    ``blur`` (``value`` = sigma), ``area`` or ``bilinear`` downsampling (``value`` = the
    factor).
    """

    kind: str
    value: float

    def out_length(self, length: int) -> int:
        """Length of the axis after this step."""
        return length if self.kind == "blur" else length // int(self.value)


@dataclass(frozen=True)
class Band:
    """The rows of a 1D linear operator: row ``i`` weighs inputs ``start[i] + k``.

    Attributes
    ----------
    start : numpy.ndarray
        int64, first input index of each row (non-decreasing).
    weights : numpy.ndarray
        float64 ``(rows, width)``; zero beyond a row's reach.
    length : int
        Length of the input axis.
    """

    start: np.ndarray
    weights: np.ndarray
    length: int

    @property
    def rows(self) -> int:
        """Number of output rows."""
        return int(self.start.shape[0])

    @property
    def width(self) -> int:
        """Input indices each row spans (its band)."""
        return int(self.weights.shape[1])

    def support(self, rows: Span) -> Span:
        """Input indices the rows ``[r0, r1)`` reach."""
        r0, r1 = rows
        if r1 <= r0:
            return (0, 0)
        return int(self.start[r0]), min(self.length, int(self.start[r1 - 1]) + self.width)

    def reaching(self, cols: Span) -> Span:
        """Output rows whose band meets the input indices ``[c0, c1)``."""
        c0, c1 = cols
        first = int(np.searchsorted(self.start + self.width, c0, side="right"))
        last = int(np.searchsorted(self.start, c1, side="left"))
        return first, max(first, last)

    def dense(self, rows: Span, cols: Span) -> np.ndarray:
        """Write out rows ``[r0, r1)`` over the input indices ``[c0, c1)`` (float32)."""
        (r0, r1), (c0, c1) = rows, cols
        out = np.zeros((r1 - r0, c1 - c0), dtype=np.float64)
        index = self.start[r0:r1, None] + np.arange(self.width)[None, :] - c0
        keep = (index >= 0) & (index < c1 - c0)
        row = np.broadcast_to(np.arange(r1 - r0)[:, None], index.shape)
        np.add.at(out, (row[keep], index[keep]), self.weights[r0:r1][keep])
        return out.astype(np.float32)

    def then(self, later: Band) -> Band:
        """Compose: the operator ``later ∘ self`` (``self`` applied first)."""
        first = self.start[later.start]  # where each composed row starts
        reach = self.start[np.minimum(later.start + later.width - 1, self.rows - 1)]
        width = int(np.max(reach - first)) + self.width if later.rows else 1
        weights = np.zeros((later.rows, width), dtype=np.float64)
        rows = np.arange(later.rows)
        for j in range(later.width):
            mid = np.minimum(later.start + j, self.rows - 1)
            offset = self.start[mid] - first
            cols = offset[:, None] + np.arange(self.width)[None, :]
            values = later.weights[:, j, None] * self.weights[mid]
            np.add.at(weights, (np.broadcast_to(rows[:, None], cols.shape), cols), values)
        return Band(first.astype(np.int64), weights, self.length)


def blur_band(length: int, sigma: float) -> Band:
    """Gaussian blur of an axis, borders reflected (scipy's ``mode="reflect"``).

    Parameters
    ----------
    length : int
        Axis length.
    sigma : float
        Standard deviation in pixels; a kernel of radius 0 is the identity.

    Returns
    -------
    Band
        ``length`` rows; the weights of :func:`scipy.ndimage.gaussian_filter1d`.
    """
    radius = kernel_radius(sigma)
    if radius == 0:
        return Band(np.arange(length, dtype=np.int64), np.ones((length, 1)), length)
    taps = np.exp(-0.5 / float(sigma) ** 2 * np.arange(-radius, radius + 1) ** 2)
    taps /= taps.sum()
    width = min(2 * radius + 1, length)
    rows = np.arange(length)
    start = np.clip(rows - radius, 0, length - width).astype(np.int64)
    virtual = rows[:, None] + np.arange(-radius, radius + 1)[None, :]
    period = 2 * length
    folded = np.mod(virtual, period)
    folded = np.where(folded >= length, period - 1 - folded, folded)  # d c b a | a b c d
    weights = np.zeros((length, width))
    np.add.at(weights, (np.broadcast_to(rows[:, None], folded.shape), folded - start[:, None]),
              np.broadcast_to(taps, folded.shape))  # fmt: skip
    return Band(start, weights, length)


def _downsample_band(length: int, scale: int, method: str) -> Band:
    """Area (block mean) or bilinear (centre) downsampling of an axis by ``scale``."""
    rows = length // scale
    if method == "area":
        start = np.arange(rows, dtype=np.int64) * scale
        return Band(start, np.full((rows, scale), 1.0 / scale), length)
    index, weight = bilinear_positions(0, rows, scale)
    width = min(2, length)
    start = np.clip(index, 0, length - width).astype(np.int64)
    upper = np.minimum(index + 1, length - 1)
    weights = np.zeros((rows, width))
    r = np.arange(rows)
    np.add.at(weights, (r, index - start), 1.0 - weight.astype(np.float64))
    np.add.at(weights, (r, upper - start), weight.astype(np.float64))
    return Band(start, weights, length)


def axis_band(steps: tuple[AxisStep, ...], length: int) -> Band:
    """Compose the forward model along one axis of ``length`` HR pixels into one band.

    Parameters
    ----------
    steps : tuple of AxisStep
        The blur and downsampling steps, in order.
    length : int
        HR length of the axis.

    Returns
    -------
    Band
        Rows on the final grid, columns on the HR axis.
    """
    band = Band(np.arange(length, dtype=np.int64), np.ones((length, 1)), length)
    for step in steps:
        n = band.rows
        if step.kind == "blur":
            band = band.then(blur_band(n, step.value))
        else:
            band = band.then(_downsample_band(n, int(step.value), step.kind))
    return band


def apply_rows(band: Band, rows: Span, x: Any, origin: int, arrays: Arrays) -> Any:
    """Apply the rows ``[r0, r1)`` of an operator to ``x`` along its first axis.

    Parameters
    ----------
    band : Band
        The operator.
    rows : Span
        Output rows.
    x : array
        2D, its first axis the input indices ``[origin, origin + len(x))`` (a numpy
        array or a tensor of ``arrays``); indices outside count as zero.
    origin : int
        Input index of ``x[0]``.
    arrays : Arrays
        Where the products run.

    Returns
    -------
    array
        ``(r1 - r0, x.shape[1])``, float32 (of ``arrays``).
    """
    r0, r1 = rows
    out = arrays.zeros((r1 - r0, int(x.shape[1])))
    for g0 in range(r0, r1, GROUP):
        g1 = min(g0 + GROUP, r1)
        c0, c1 = band.support((g0, g1))
        c0, c1 = max(c0, origin), min(c1, origin + int(x.shape[0]))
        if c1 > c0:
            matrix = arrays.asarray(band.dense((g0, g1), (c0, c1)))
            out[g0 - r0 : g1 - r0] = matrix @ x[c0 - origin : c1 - origin]
    return out


def apply_2d(
    bands: tuple[Band, Band],
    box: tuple[Span, Span],
    x: Any,
    origin: tuple[int, int],
    arrays: Arrays,
) -> Any:
    """``M_y[box rows] @ x @ M_x[box cols].T`` for an ``x`` placed at ``origin``.

    Parameters
    ----------
    bands : (Band, Band)
        The operators along Y and X.
    box : pair of Span
        Output rows and columns.
    x : array
        2D input region (numpy or a tensor of ``arrays``).
    origin : tuple of int
        Input (Y, X) index of ``x[0, 0]``.
    arrays : Arrays
        Where the products run.

    Returns
    -------
    array
        The output box, float32 (of ``arrays``).
    """
    by, bx = bands
    rows = apply_rows(by, box[0], x, origin[0], arrays)
    return apply_rows(bx, box[1], rows.T, origin[1], arrays).T


def reach(band: Band, blocks: list[Span]) -> int:
    """Output rows a block's inputs reach beyond the block's own output rows.

    Parameters
    ----------
    band : Band
        A downsampling (or blurring) operator.
    blocks : list of Span
        Input ranges that map onto whole output ranges (multiples of the factor).

    Returns
    -------
    int
        The largest spill over all blocks, on either side (output rows).
    """
    factor = max(1, band.length // max(1, band.rows))
    spill = 0
    for c0, c1 in blocks:
        r0, r1 = band.reaching((c0, c1))
        spill = max(spill, c0 // factor - r0, r1 - math.ceil(c1 / factor))
    return spill
