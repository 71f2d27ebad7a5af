"""LR/HR training pairs made on the fly from HR images (pure: numpy, no torch).

:class:`PairMaker` turns a key (a few integers, e.g. ``(0, epoch, index)``) into one
deterministic training pair:

1. a patch position is drawn from the regions (:class:`~decrappify.data.patches.PatchSampler`),
   optionally rejecting background patches (:class:`~decrappify.config.data.BackgroundConfig`);
   only the patch window is read from the (possibly lazy, huge) image;
2. the patch is percentile-normalised with its *image's* ``lo, hi`` (computed once per
   image by :func:`image_stats`), as float32 in normalised units, whatever the dtype;
3. the HR patch gets the contrast/brightness jitter, then is crappified by
   :func:`decrappify.crappify.crappify_array` with a seed derived from the key (for 2.5D,
   every frame with the same seed, hence the same sampled parameters, and its own plane
   index, hence its own noise);
4. in paired mode (user-supplied aligned LR/HR images), the LR patch is read at the
   matching position instead, the LR normalised with the *LR image's* own percentiles
   and the HR with the HR image's, and the jitter is applied to both;
5. optional extra Gaussian noise on the LR, then the same dihedral transform on both.

The key's seed sequence is split into three independent streams (position, crappify,
augmentation), so switching augmentation on or off does not move the patches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np

from decrappify.config.data import DataConfig
from decrappify.config.normalization import NormalizationConfig
from decrappify.crappify import crappify_array
from decrappify.data.augment import (
    IDENTITY,
    AugmentParams,
    add_noise,
    dihedral,
    draw_augment,
    jitter_intensity,
)
from decrappify.data.patches import (
    PatchPosition,
    PatchSampler,
    Region,
    materialize,
    neighbour_planes,
    read_window,
    whole_region,
)
from decrappify.errors import InputError
from decrappify.io import Image, read_array, read_image
from decrappify.normalize import normalize, percentile_range

if TYPE_CHECKING:
    from decrappify.config.crappify import CrappifyConfig

#: First entry of the keys of training samples: ``(TRAIN_KEY, epoch, index)``.
TRAIN_KEY = 0
#: First entry of the keys of validation crops: ``(VALIDATION_KEY, crop)``.
VALIDATION_KEY = 1
#: Entropy key of the windows that estimate an image's standard deviation.
STATS_KEY = 2
#: Error message when both or neither of a crappify config and LR images are given.
EITHER_CRAPPIFY_OR_PAIRS = (
    "training data: give either a crappify config (pairs made from HR images) or aligned "
    "LR images (paired mode), not both or neither"
)
#: Images with at most this many pixels get an exact standard deviation (read whole).
EXACT_STATS_SIZE = 2**22
#: Random windows read to estimate the standard deviation of larger images.
STATS_WINDOWS = 64


@dataclass(frozen=True)
class ImageStats:
    """Per-image intensity statistics, computed once and cached.

    Parameters
    ----------
    lo, hi : float
        Low and high percentiles (raw units): normalised = ``(x - lo) / (hi - lo)``.
    std : float
        Standard deviation of the image in normalised units (see :func:`image_stats`),
        the reference of background rejection.
    """

    lo: float
    hi: float
    std: float


@dataclass(frozen=True)
class Pair:
    """One training pair and how it was made.

    Parameters
    ----------
    lr : numpy.ndarray
        Input, float32 normalised, shape ``(n_frames, p // scale, p // scale)``.
    hr : numpy.ndarray
        Target, float32 normalised, shape ``(1, p, p)``.
    position : PatchPosition
        Where the patch lies (HR pixels; the target plane).
    planes : tuple of int
        The planes stacked as input frames.
    crappify_seed : int or None
        Seed passed to ``crappify_array`` (None in paired mode).
    augment : AugmentParams
        The augmentation applied.
    tries : int
        Candidates drawn by background rejection.
    """

    lr: np.ndarray
    hr: np.ndarray
    position: PatchPosition
    planes: tuple[int, ...]
    crappify_seed: int | None
    augment: AugmentParams
    tries: int


def as_image(item: Any, *, role: str = "image", index: int = 0) -> Image:
    """Return an :class:`Image` for an image record, a path or an array.

    Parameters
    ----------
    item : Image, str, Path or array-like
        An image record (returned as is), a path read by
        :func:`decrappify.io.read_image` (lazily for large files), or a 2D (``"YX"``) /
        3D (``"ZYX"``) numpy, zarr or dask array (array-likes other than numpy and
        dask are wrapped lazily in dask; dtypes are converted as ``read_image`` does).
    role : str
        What the item is, for error messages (``"HR image"``, ``"LR image"``).
    index : int
        Its position in the input list, names arrays in error messages.

    Returns
    -------
    Image
        The record.

    Raises
    ------
    InputError
        If the item is not a readable single-channel 2D or 3D image.
    """
    if isinstance(item, Image):
        return item
    if isinstance(item, str | Path):
        return read_image(item)
    if getattr(item, "ndim", None) is None or getattr(item, "shape", None) is None:
        raise InputError(
            f"{role} {index}: expected an Image, a path or an array, got {type(item).__name__}"
        )
    if not isinstance(item, np.ndarray | da.Array):
        # zarr and other array-likes: read lazily, chunk by chunk, through dask
        item = da.from_array(item, chunks=getattr(item, "chunks", "auto"), asarray=False)
    return read_array(item, source=f"{role} {index}")


def image_stats(
    image: Image,
    normalization: NormalizationConfig,
    *,
    patch_size: int,
    seed: int = 0,
) -> ImageStats:
    """Compute an image's percentiles and its standard deviation in normalised units.

    The percentiles come from :func:`decrappify.normalize.percentile_range` (a bounded
    sample for lazy images). The standard deviation is exact for images of at most
    ``EXACT_STATS_SIZE`` pixels and otherwise estimated from ``STATS_WINDOWS`` random
    ``patch_size`` windows, so memory and reads stay bounded.

    Parameters
    ----------
    image : Image
        The image.
    normalization : NormalizationConfig
        Which percentiles.
    patch_size : int
        Side of the windows (clipped to the image size).
    seed : int
        Seed of the window positions.

    Returns
    -------
    ImageStats
        ``lo``, ``hi`` and ``std``.
    """
    lo, hi = percentile_range(image.data, normalization.low, normalization.high)
    if math.prod(image.shape) <= EXACT_STATS_SIZE:
        values = [materialize(image.data)]
    else:
        size = min(patch_size, *image.shape[-2:])
        sampler = PatchSampler([whole_region(0, image.shape)], size)
        rng = np.random.default_rng([seed, STATS_KEY])
        values = []
        for _ in range(STATS_WINDOWS):
            pos = sampler.draw(rng)
            planes = (pos.plane,) if image.ndim == 3 else None
            values.append(read_window(image.data, planes, pos.row, pos.col, size))
    pixels = np.concatenate([v.ravel() for v in values])
    _check_signal(
        image, pixels, exact=len(values) == 1 and values[0].size == math.prod(image.shape)
    )
    std = float(np.std(pixels, dtype=np.float64))
    return ImageStats(float(lo), float(hi), std / (float(hi) - float(lo)))


def _check_signal(image: Image, pixels: np.ndarray, *, exact: bool) -> None:
    """Refuse a training image with NaN/Inf pixels, or one that is constant (no signal)."""
    where = "" if exact else " (in the windows sampled)"
    if pixels.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(pixels)))
        if bad:
            raise InputError(
                f"{_name(image)}: {bad} NaN or Inf pixels{where}; training needs finite "
                "values, fix or leave out the image"
            )
    if pixels.size == 0 or pixels.min() != pixels.max():
        return
    if not exact:
        # a large image: its windows may all have fallen on flat background
        low, high = percentile_range(image.data, 0.0, 100.0)
        if not (low == float(pixels.min()) and high == low + 1.0):
            return
    raise InputError(
        f"{_name(image)}: every pixel{where} is {pixels.flat[0]:g}; a constant image gives "
        "no training signal, leave it out"
    )


class PairMaker:
    """Make deterministic LR/HR pairs from regions of images.

    Exactly one of ``crappify`` (pairs crappified on the fly from the HR images) and
    ``lr_images`` (user-supplied LR images aligned with the HR images: same planes,
    ``lr.shape[-2:] == hr.shape[-2:] // scale``) must be given.

    Parameters
    ----------
    hr_images : sequence of Image or array-like
        High-resolution images (targets).
    regions : sequence of Region
        Where patches may lie (``Region.image`` indexes ``hr_images``), e.g. one half of
        :func:`~decrappify.data.patches.split_by_image`.
    config : DataConfig
        Patch size, frames, background rejection, augmentation, normalisation, seed.
    crappify : CrappifyConfig or None
        The degradation making the LR input.
    lr_images : sequence of Image or array-like or None
        Aligned low-resolution images, in paired mode.
    stats, lr_stats : sequence of ImageStats or None
        Precomputed statistics per HR / LR image (shared between the training and the
        validation maker); computed here for the images the regions use when None.

    Raises
    ------
    InputError
        On inconsistent inputs: both or neither of ``crappify`` / ``lr_images``, LR/HR
        shapes that do not match an integer scale, a patch size not divisible by the
        scale, ``n_frames > 1`` with 2D images, regions smaller than the patch.
    """

    def __init__(
        self,
        hr_images: Sequence[Any],
        regions: Sequence[Region],
        config: DataConfig,
        *,
        crappify: CrappifyConfig | None = None,
        lr_images: Sequence[Any] | None = None,
        stats: Sequence[ImageStats | None] | None = None,
        lr_stats: Sequence[ImageStats | None] | None = None,
    ) -> None:
        if (crappify is None) == (lr_images is None):
            raise InputError(EITHER_CRAPPIFY_OR_PAIRS)
        self.config = config
        self.crappify = crappify
        self.hr_images = [as_image(x, role="HR image", index=i) for i, x in enumerate(hr_images)]
        self.lr_images = (
            None
            if lr_images is None
            else [as_image(x, role="LR image", index=i) for i, x in enumerate(lr_images)]
        )
        self.paired = self.lr_images is not None
        if self.lr_images is not None:
            self.scale = pair_scale(self.hr_images, self.lr_images)
        else:
            assert crappify is not None
            self.scale = int(crappify.scale)
        config.check_scale(self.scale)
        self.normalization = config.resolve_normalization(
            crappify.normalization if crappify is not None else None
        )
        self.patch_size = config.patch_size
        self.lr_patch_size = config.patch_size // self.scale
        self.regions = tuple(regions)
        used = sorted({r.image for r in self.regions})
        if any(not 0 <= i < len(self.hr_images) for i in used):
            raise InputError(f"regions refer to images {used}, but {len(self.hr_images)} given")
        inputs = self.lr_images if self.lr_images is not None else self.hr_images
        if config.n_frames > 1:
            for i in used:
                if inputs[i].ndim != 3:
                    raise InputError(
                        f"{_name(inputs[i])}: n_frames={config.n_frames} needs a stack "
                        f"(ZYX or TYX), got a 2D image of shape {inputs[i].shape}"
                    )
        self.sampler = PatchSampler(
            self.regions,
            self.patch_size,
            grid=self.scale if self.paired else 1,
            names=[_name(im) for im in self.hr_images],
        )
        self.stats = self._fill_stats(self.hr_images, stats, used)
        self.lr_stats = (
            None
            if self.lr_images is None
            else self._fill_stats(self.lr_images, lr_stats, used, patch=self.lr_patch_size)
        )

    def _fill_stats(
        self,
        images: list[Image],
        given: Sequence[ImageStats | None] | None,
        used: list[int],
        patch: int | None = None,
    ) -> list[ImageStats | None]:
        stats = list(given) if given is not None else [None] * len(images)
        if len(stats) != len(images):
            raise InputError(
                f"stats: expected one entry per image ({len(images)}), got {len(stats)}"
            )
        for i in used:
            if stats[i] is None:
                stats[i] = image_stats(
                    images[i],
                    self.normalization,
                    patch_size=patch or self.patch_size,
                    seed=self.config.seed,
                )
        return stats

    @property
    def n_positions(self) -> int:
        """Number of distinct patch positions in the regions."""
        return self.sampler.n_positions

    def make(self, key: Sequence[int], *, augment: bool = True) -> Pair:
        """Make the pair of a key: the same key always gives the same pair.

        Parameters
        ----------
        key : sequence of int
            Non-negative integers, combined with ``config.seed`` (``(TRAIN_KEY, epoch,
            index)`` for training samples, ``(VALIDATION_KEY, crop)`` for validation).
        augment : bool
            Apply the configured augmentation (False for validation).

        Returns
        -------
        Pair
            ``lr`` (n_frames, p/s, p/s) and ``hr`` (1, p, p), float32 normalised.
        """
        position_seq, crappify_seq, augment_seq = np.random.SeedSequence(
            [self.config.seed, *[int(k) for k in key]]
        ).spawn(3)
        position, target, tries = self._draw_position(np.random.default_rng(position_seq))
        aug_rng = np.random.default_rng(augment_seq)
        params = draw_augment(aug_rng, self.config.augment) if augment else IDENTITY
        region = self.regions[position.region]
        planes = neighbour_planes(position.plane, self.config.n_frames, region.planes)
        seed: int | None = None
        if self.paired:
            lr, hr = self._paired(position, planes, target, params)
        else:
            seed = int(crappify_seq.generate_state(1)[0])
            lr, hr = self._crappified(position, planes, target, params, seed)
        lr = add_noise(lr, params.lr_noise, aug_rng)
        return Pair(
            lr=dihedral(lr, params.dihedral),
            hr=dihedral(hr, params.dihedral),
            position=position,
            planes=planes,
            crappify_seed=seed,
            augment=params,
            tries=tries,
        )

    def _draw_position(self, rng: np.random.Generator) -> tuple[PatchPosition, np.ndarray, int]:
        """Draw a position, rejecting background; return it, its raw target plane, tries."""
        background = self.config.background
        tries = background.max_tries if background.enabled else 1
        best: tuple[float, PatchPosition, np.ndarray] | None = None
        for attempt in range(1, tries + 1):
            position = self.sampler.draw(rng)
            target = self._read(self.hr_images, position, (position.plane,), self.patch_size)
            if not background.enabled:
                return position, target, attempt
            stats = self.stats[position.image]
            assert stats is not None
            std = float(np.std(target, dtype=np.float64)) / (stats.hi - stats.lo)
            if std >= background.std_fraction * stats.std:
                return position, target, attempt
            if best is None or std > best[0]:
                best = (std, position, target)
        assert best is not None
        return best[1], best[2], tries

    def _read(
        self,
        images: list[Image],
        position: PatchPosition,
        planes: tuple[int, ...],
        size: int,
        factor: int = 1,
    ) -> np.ndarray:
        image = images[position.image]
        return read_window(
            image.data,
            planes if image.ndim == 3 else None,
            position.row // factor,
            position.col // factor,
            size,
        )

    def _crappified(
        self,
        position: PatchPosition,
        planes: tuple[int, ...],
        target: np.ndarray,
        params: AugmentParams,
        seed: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        stats = self.stats[position.image]
        assert stats is not None and self.crappify is not None
        if self.config.n_frames == 1:
            raw = target
        else:
            raw = self._read(self.hr_images, position, planes, self.patch_size)
        image = self.hr_images[position.image]
        _check_finite(raw, image, position)
        hr = jitter_intensity(normalize(raw, stats.lo, stats.hi), params.contrast, 0.0)
        pixel_size = image.pixel_size[-2:] if image.pixel_size is not None else None
        unit = image.units[-1] if image.units is not None else None
        lr = np.stack(
            [
                crappify_array(
                    frame,
                    self.crappify,
                    seed=seed,
                    plane=plane if image.ndim == 3 else 0,
                    pixel_size=pixel_size,
                    pixel_unit=unit,  # type: ignore[arg-type]
                )[0]
                for frame, plane in zip(hr, planes, strict=True)
            ]
        )
        half = self.config.n_frames // 2
        target = hr[half : half + 1]
        return (
            jitter_intensity(lr, 1.0, params.brightness),
            jitter_intensity(target, 1.0, params.brightness),
        )

    def _paired(
        self,
        position: PatchPosition,
        planes: tuple[int, ...],
        target: np.ndarray,
        params: AugmentParams,
    ) -> tuple[np.ndarray, np.ndarray]:
        assert self.lr_images is not None and self.lr_stats is not None
        hr_stats = self.stats[position.image]
        lr_stats = self.lr_stats[position.image]
        assert hr_stats is not None and lr_stats is not None
        raw_lr = self._read(self.lr_images, position, planes, self.lr_patch_size, self.scale)
        _check_finite(raw_lr, self.lr_images[position.image], position)
        _check_finite(target, self.hr_images[position.image], position)
        lr = jitter_intensity(
            normalize(raw_lr, lr_stats.lo, lr_stats.hi), params.contrast, params.brightness
        )
        hr = jitter_intensity(
            normalize(target, hr_stats.lo, hr_stats.hi), params.contrast, params.brightness
        )
        return lr, hr

    def describe(self) -> dict[str, Any]:
        """Summarise the data for the model metadata.

        Returns
        -------
        dict
            JSON-friendly: mode, scale, patch sizes, frames, the images (source, shape,
            dtype, axes, the ``lo``/``hi`` used), regions, number of positions, the
            crappify config, normalisation, background rejection, augmentation, seed.
        """
        images = []
        for i, image in enumerate(self.hr_images):
            entry: dict[str, Any] = _image_entry(image, self.stats[i])
            if self.lr_images is not None and self.lr_stats is not None:
                entry["lr"] = _image_entry(self.lr_images[i], self.lr_stats[i])
            images.append(entry)
        return {
            "mode": "paired" if self.paired else "crappify",
            "scale": self.scale,
            "patch_size": self.patch_size,
            "lr_patch_size": self.lr_patch_size,
            "n_frames": self.config.n_frames,
            "n_images": len({r.image for r in self.regions}),
            "images": images,
            "regions": [r.to_dict() for r in self.regions],
            "positions": self.n_positions,
            "crappify": None if self.crappify is None else self.crappify.model_dump(mode="json"),
            "normalization": self.normalization.model_dump(mode="json"),
            "background": self.config.background.model_dump(mode="json"),
            "augment": self.config.augment.model_dump(mode="json"),
            "seed": self.config.seed,
        }


def pair_scale(hr_images: Sequence[Image], lr_images: Sequence[Image]) -> int:
    """Infer the integer scale of aligned LR/HR image pairs and check it is consistent.

    Parameters
    ----------
    hr_images, lr_images : sequence of Image
        The pairs, in the same order.

    Returns
    -------
    int
        ``s`` such that every ``lr.shape[-2:] == hr.shape[-2:] // s`` with the same planes.

    Raises
    ------
    InputError
        If the lists differ in length or a pair does not match the scale.
    """
    if len(hr_images) != len(lr_images):
        raise InputError(
            f"paired data: expected one LR image per HR image, got {len(lr_images)} LR "
            f"for {len(hr_images)} HR"
        )
    scale: int | None = None
    for hr, lr in zip(hr_images, lr_images, strict=True):
        if hr.ndim != lr.ndim or hr.shape[:-2] != lr.shape[:-2] or min(lr.shape[-2:]) < 1:
            raise InputError(
                f"{_name(lr)}: expected an LR image with the planes of {_name(hr)} "
                f"{hr.shape}, got shape {lr.shape}"
            )
        s = hr.shape[-2] // lr.shape[-2]
        expected = tuple(n // s for n in hr.shape[-2:]) if s >= 1 else None
        if s < 1 or expected != lr.shape[-2:] or (scale is not None and s != scale):
            want = f"{scale}" if scale is not None else "an integer"
            raise InputError(
                f"{_name(lr)}: expected LR Y/X = HR Y/X // scale with {want} scale for "
                f"{_name(hr)} {hr.shape[-2:]}, got {lr.shape[-2:]}"
            )
        scale = s
    assert scale is not None
    return scale


def _check_finite(window: np.ndarray, image: Image, position: PatchPosition) -> None:
    """Raise InputError naming the image when a patch holds NaN or Inf values."""
    if window.dtype.kind == "f" and not np.isfinite(window).all():
        raise InputError(
            f"{_name(image)}: expected finite values, got NaN or Inf in the patch at plane "
            f"{position.plane}, row {position.row}, column {position.col}"
        )


def _name(image: Image) -> str:
    return image.source or "image"


def _image_entry(image: Image, stats: ImageStats | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "source": image.source,
        "shape": list(image.shape),
        "dtype": str(image.dtype),
        "axes": image.axes,
    }
    if stats is not None:
        entry.update(lo=stats.lo, hi=stats.hi)
    return entry
