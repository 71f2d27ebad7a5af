"""The crappify pipeline: sampled parameters, region planning and ``crappify_array``.

A config's steps become *operations* that know, for any output region, which input
region they need (their halo: blur and smoothing radii, the 8x8 JPEG block grid, the
``scale`` of the downsampling). Planning backwards from an output region gives the
HR region to read; running forwards gives exactly the values that processing the whole
image would give for that region, because every noise value depends only on its
global position (:class:`~decrappify.crappify.fields.NoiseField`) and every filter
only on pixels inside its halo.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from decrappify.config.crappify import PARAMS_SEED_KEY, CrappifyConfig
from decrappify.crappify import degradations as deg
from decrappify.crappify.fields import NoiseField
from decrappify.errors import InputError

__all__ = ["crappify_array", "plan_regions", "sample_params"]

Box = tuple[tuple[int, int], tuple[int, int]]
Shape = tuple[int, int]

#: Nanometres per unit, for blur widths given in physical units.
NANOMETERS = {"angstrom": 0.1, "nanometer": 1.0, "micrometer": 1e3, "millimeter": 1e6}


def _check_seed(seed: Any, name: str = "seed") -> int:
    """Return ``seed`` as a non-negative int or raise InputError."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(f"{name} must be a non-negative integer (got {seed!r})")
    return int(seed)


def sample_params(config: CrappifyConfig, seed: int) -> dict[str, Any]:
    """Draw the per-image parameters of a config from a seed.

    Each step has its own generator, ``default_rng([seed, PARAMS_SEED_KEY, index])``,
    so editing one step never changes the values drawn for the others; fixed values
    are kept as they are.

    Parameters
    ----------
    config : CrappifyConfig
        The crappifier.
    seed : int
        Non-negative seed.

    Returns
    -------
    dict
        ``{"seed": seed, "scale": scale, "steps": [{"kind": ..., parameter: value}]}``
        with plain Python values (JSON-serialisable). A ``read_noise`` step without
        ``photons`` receives the budget drawn for the preceding ``poisson`` step.
    """
    seed = _check_seed(seed)
    steps: list[dict[str, Any]] = []
    last_photons: float | None = None
    for index, step in enumerate(config.steps):
        rng = np.random.default_rng([seed, PARAMS_SEED_KEY, index])
        drawn = step.sample(rng)
        if drawn["kind"] == "poisson":
            last_photons = drawn["photons"]
        elif drawn["kind"] == "read_noise" and drawn["photons"] is None:
            drawn["photons"] = last_photons
        steps.append(drawn)
    return {"seed": seed, "scale": config.scale, "steps": steps}


# --------------------------------------------------------------------- operations


@dataclass(frozen=True)
class _Op:
    """One resolved step: what it needs, what it produces and how to run it."""

    index: int
    kind: str
    params: dict[str, Any]

    def out_shape(self, shape: Shape) -> Shape:
        """Shape of the step's output for an input plane of ``shape``."""
        if self.kind == "downsample":
            s = self.params["scale"]
            return (shape[0] // s, shape[1] // s)
        return shape

    def need(self, box: Box, shape: Shape) -> Box:
        """Input region needed to compute the output region ``box``."""
        return (self._need_axis(box[0], shape[0], 0), self._need_axis(box[1], shape[1], 1))

    def _need_axis(self, span: tuple[int, int], n: int, axis: int) -> tuple[int, int]:
        a, b = span
        if self.kind in ("blur", "local_variance_noise"):
            r = deg.kernel_radius(self.params["_sigma"][axis])
            return max(0, a - r), min(n, b + r)
        if self.kind == "jpeg":
            blk = deg.JPEG_BLOCK
            return (a // blk) * blk, min(n, -(-b // blk) * blk)
        if self.kind == "downsample":
            s = self.params["scale"]
            if self.params["method"] == "area":
                return a * s, b * s
            if b <= a:
                return a * s, a * s
            first = deg.bilinear_positions(a, a + 1, s)[0][0]
            last = deg.bilinear_positions(b - 1, b, s)[0][0]
            return int(first), min(n, int(last) + 2)
        return a, b

    def apply(
        self, x: np.ndarray, in_box: Box, out_box: Box, *, seed: int, plane: int, origin: Shape
    ) -> np.ndarray:
        """Compute the output region ``out_box`` from ``x`` covering ``in_box``."""
        crop = (
            slice(out_box[0][0] - in_box[0][0], out_box[0][1] - in_box[0][0]),
            slice(out_box[1][0] - in_box[1][0], out_box[1][1] - in_box[1][0]),
        )
        p = {k: v for k, v in self.params.items() if not k.startswith("_")}
        if self.kind == "downsample":
            s = p["scale"]
            if p["method"] == "area":
                return deg.area_downsample(x, s) if s > 1 else x
            return deg.bilinear_region(x, s, in_start=(in_box[0][0], in_box[1][0]), out_box=out_box)
        if self.kind == "blur":
            return deg.gaussian_blur(x, sigma=self.params["_sigma"])[crop]
        if self.kind == "jpeg":
            return deg.jpeg_compress(x, quality=p["quality"])[crop]
        noise = NoiseField(
            seed,
            key=(self.index, plane),
            origin=(origin[0] + out_box[0][0], origin[1] + out_box[1][0]),
        )
        if self.kind == "local_variance_noise":
            smooth = deg.local_mean(x, p["smooth_sigma"])[crop]
            return deg.add_local_variance_noise(
                x[crop], smooth, rng=noise, gain=p["gain"], min_variance=p["min_variance"]
            )
        fn = {
            "gaussian_noise": deg.gaussian_noise,
            "poisson": deg.poisson_noise,
            "read_noise": deg.read_noise,
            "salt_pepper": deg.salt_pepper,
        }[self.kind]
        return fn(x[crop], rng=noise, **p)


def build_ops(
    params: dict[str, Any],
    *,
    pixel_size: Sequence[float] | float | None = None,
    pixel_unit: str | None = "micrometer",
) -> list[_Op]:
    """Turn sampled parameters into operations, resolving blur widths to pixels.

    Parameters
    ----------
    params : dict
        Output of :func:`sample_params`.
    pixel_size : float or (float, float) or None
        HR pixel size (y, x), needed only for blurs given in physical units.
    pixel_unit : str or None
        Unit of ``pixel_size`` (NGFF name such as ``"micrometer"``).

    Returns
    -------
    list
        One operation per step.
    """
    scale = int(params["scale"])
    factor = 1
    ops = []
    for index, step in enumerate(params["steps"]):
        p = {k: v for k, v in step.items() if k != "kind"}
        kind = step["kind"]
        if kind == "downsample":
            p["scale"] = scale
        elif kind == "blur":
            p["_sigma"] = _blur_sigma_pixels(step, pixel_size, pixel_unit, factor, index)
        elif kind == "local_variance_noise":
            p["_sigma"] = (p["smooth_sigma"], p["smooth_sigma"])
        ops.append(_Op(index=index, kind=kind, params=p))
        if kind == "downsample":
            factor *= scale
    return ops


def _blur_sigma_pixels(
    step: dict[str, Any],
    pixel_size: Sequence[float] | float | None,
    pixel_unit: str | None,
    factor: int,
    index: int,
) -> tuple[float, float]:
    """Blur standard deviation in pixels of the step's grid, per axis (y, x)."""
    width = step["sigma"] if step.get("sigma") is not None else deg.fwhm_to_sigma(step["fwhm"])
    if step.get("unit", "pixel") == "pixel":
        return (float(width), float(width))
    if pixel_size is None:
        raise InputError(
            f"steps.{index}: blur width is in {step['unit']} but the image pixel size is "
            f"unknown; give the pixel size or the blur in pixels"
        )
    if pixel_unit not in NANOMETERS:
        raise InputError(
            f"steps.{index}: blur width is in {step['unit']} but the pixel size unit is "
            f"{pixel_unit!r}; expected one of {sorted(NANOMETERS)}"
        )
    sizes = (pixel_size, pixel_size) if np.isscalar(pixel_size) else tuple(pixel_size)[-2:]  # type: ignore[arg-type]
    width_nm = float(width) * NANOMETERS[step["unit"]]
    return tuple(  # type: ignore[return-value]
        width_nm / (float(size) * NANOMETERS[pixel_unit] * factor) for size in sizes
    )


def stage_shapes(ops: Sequence[_Op], shape: Shape) -> list[Shape]:
    """Plane shape before each operation and after the last one.

    Parameters
    ----------
    ops : sequence
        Operations from :func:`build_ops`.
    shape : tuple of int
        HR plane shape.

    Returns
    -------
    list of tuple
        ``len(ops) + 1`` shapes.
    """
    shapes = [tuple(shape)]
    for op in ops:
        shapes.append(op.out_shape(shapes[-1]))
    return shapes  # type: ignore[return-value]


def plan_regions(ops: Sequence[_Op], shape: Shape, out_box: Box) -> list[Box]:
    """Regions each stage must compute so that the last one yields ``out_box``.

    Parameters
    ----------
    ops : sequence
        Operations from :func:`build_ops`.
    shape : tuple of int
        HR plane shape.
    out_box : tuple of (start, stop)
        Wanted LR region (global LR coordinates).

    Returns
    -------
    list of boxes
        ``len(ops) + 1`` regions; the first is the HR region to read.
    """
    shapes = stage_shapes(ops, shape)
    boxes = [out_box]
    for op, in_shape in zip(reversed(ops), reversed(shapes[:-1]), strict=True):
        boxes.append(op.need(boxes[-1], in_shape))
    return boxes[::-1]


def run_region(
    x: np.ndarray,
    ops: Sequence[_Op],
    boxes: Sequence[Box],
    *,
    seed: int,
    plane: int,
    origin: Shape = (0, 0),
) -> np.ndarray:
    """Run the operations on ``x`` (covering ``boxes[0]``) and return ``boxes[-1]``.

    Parameters
    ----------
    x : numpy.ndarray
        float32 normalised HR region, exactly ``boxes[0]``.
    ops : sequence
        Operations from :func:`build_ops`.
    boxes : sequence of boxes
        Output of :func:`plan_regions`.
    seed : int
        Noise seed.
    plane : int
        Plane index (part of the noise seeds).
    origin : tuple of int
        Global HR position of the plane's first pixel (noise coordinates); divided by
        the scale after the downsampling step.

    Returns
    -------
    numpy.ndarray
        float32 LR region.
    """
    oy, ox = origin
    for op, in_box, out_box in zip(ops, boxes[:-1], boxes[1:], strict=True):
        x = op.apply(x, in_box, out_box, seed=seed, plane=plane, origin=(oy, ox))
        if op.kind == "downsample":
            oy, ox = oy // op.params["scale"], ox // op.params["scale"]
    return x


def resolved_params(params: dict[str, Any], ops: Sequence[_Op]) -> dict[str, Any]:
    """Add the effective blur width in pixels to the blur steps of sampled parameters.

    Parameters
    ----------
    params : dict
        Output of :func:`sample_params`.
    ops : sequence
        Operations built from it.

    Returns
    -------
    dict
        A copy; blur steps gain ``sigma_pixels`` ([y, x] on the grid they act on).
    """
    steps = []
    for step, op in zip(params["steps"], ops, strict=True):
        step = dict(step)
        if op.kind == "blur":
            step["sigma_pixels"] = [float(s) for s in op.params["_sigma"]]
        steps.append(step)
    return {**params, "steps": steps}


def crappify_array(
    x: Any,
    config: CrappifyConfig,
    *,
    seed: int,
    offset: tuple[int, int] = (0, 0),
    plane: int = 0,
    pixel_size: Sequence[float] | float | None = None,
    pixel_unit: str = "micrometer",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Crappify one normalised 2D HR array (a training patch or a whole plane).

    Parameters
    ----------
    x : array_like
        2D HR image in normalised units (float32; other dtypes are converted), at least
        ``config.scale`` pixels on each side.
    config : CrappifyConfig
        The crappifier.
    seed : int
        Non-negative seed: it draws the parameters (:func:`sample_params`) and the
        noise. Give each training sample its own seed.
    offset : tuple of int
        Global (y, x) position of ``x[0, 0]`` in its image: noise is generated on the
        image's global grid of noise cells, so patches of one image at different
        offsets get different noise. Borders of ``x`` are reflected: only the
        interior (away from the borders by the steps' halos) equals the same region of
        the whole image crappified at once, and only when ``offset`` is a multiple of
        the scale (and of 8 x the scale for a JPEG step after the downsampling).
    plane : int
        Plane index (part of the noise seeds; the parameters depend on ``seed`` only,
        so the frames of a 2.5D sample share them when given the same seed).
    pixel_size : float or (float, float) or None
        HR pixel size, needed only for blurs given in physical units.
    pixel_unit : str
        Unit of ``pixel_size``.

    Returns
    -------
    lr : numpy.ndarray
        float32 LR array in normalised units, shape ``(H // scale, W // scale)``; not
        clipped (map back with :func:`decrappify.normalize.denormalize` to clip and
        quantise to a dtype).
    params : dict
        The sampled parameters (:func:`sample_params`), blur steps with their width in
        pixels (``sigma_pixels``).

    Raises
    ------
    InputError
        For a non-2D input, NaN/Inf values, an image smaller than the scale, a negative
        offset or plane, or a physical blur without a pixel size.
    """
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2:
        raise InputError(f"crappify_array: expected a 2D image, got shape {arr.shape}")
    if min(arr.shape) < config.scale:
        raise InputError(
            f"crappify_array: image of {arr.shape[0]}x{arr.shape[1]} pixels is smaller than "
            f"the scale {config.scale}"
        )
    if not np.isfinite(arr).all():
        raise InputError("crappify_array: input contains NaN or Inf values")
    oy, ox = (_check_seed(o, "offset") for o in offset)
    plane = _check_seed(plane, "plane")
    params = sample_params(config, seed)
    ops = build_ops(params, pixel_size=pixel_size, pixel_unit=pixel_unit)
    lr_shape = stage_shapes(ops, arr.shape)[-1]
    boxes = plan_regions(ops, arr.shape, ((0, lr_shape[0]), (0, lr_shape[1])))
    (y0, y1), (x0, x1) = boxes[0]
    lr = run_region(
        arr[y0:y1, x0:x1], ops, boxes, seed=params["seed"], plane=plane, origin=(oy, ox)
    )
    lr = np.ascontiguousarray(lr, dtype=np.float32)
    if np.shares_memory(lr, arr):  # no step copied (e.g. scale 1 and no noise)
        lr = lr.copy()
    return lr, resolved_params(params, ops)


def halo(ops: Sequence[_Op], shape: Shape, starts: Sequence[int], axis: int) -> int:
    """Largest distance the HR region of an LR chunk extends beyond the chunk.

    Parameters
    ----------
    ops : sequence
        Operations from :func:`build_ops`.
    shape : tuple of int
        HR plane shape.
    starts : sequence of int
        LR chunk boundaries along ``axis`` (``0, c1, c2, ..., n``).
    axis : int
        0 for y, 1 for x.

    Returns
    -------
    int
        The halo in HR pixels (>= 0).
    """
    scale = math.prod(op.params["scale"] for op in ops if op.kind == "downsample")
    depth = 0
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        need = plan_regions(ops, shape, ((a, b), (a, b)))[0][axis]
        depth = max(depth, a * scale - need[0], need[1] - b * scale)
    return depth
