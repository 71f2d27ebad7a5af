"""Fit a crappifier to real low-resolution images: a Poisson-Gaussian noise model.

Camera images follow ``variance = gain * (mean - offset) + read_noise**2`` (photon
shot noise scaled by the conversion gain in grey levels per photon, plus Gaussian read
noise). :func:`fit_noise_model` measures mean and variance on many small flat patches
of real LR images, fits that line robustly and converts it to a
:class:`~decrappify.config.crappify.CrappifyConfig` in normalised units (a photon
budget at the bright level and a read noise in electrons). Given registered HR images
of the same fields, it also estimates the scale (from the shapes) and the extra PSF
blur between HR and LR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from decrappify.config.crappify import (
    BlurStep,
    CrappifyConfig,
    DownsampleStep,
    GaussianNoiseStep,
    PoissonStep,
    ReadNoiseStep,
)
from decrappify.config.normalization import NormalizationConfig
from decrappify.crappify import degradations as deg
from decrappify.crappify.noise_stats import REGION, NoiseLine, fit_line, patch_stats, regions
from decrappify.crappify.sampling import area_downsample
from decrappify.errors import InputError
from decrappify.io.atomic import atomic_write_text
from decrappify.io.image import Image
from decrappify.normalize import normalize, percentile_range

__all__ = ["FitResult", "fit_noise_model"]

#: Per-image photon budgets spread wider than this ratio make the config sample a range.
_BUDGET_SPREAD = 1.25


@dataclass(frozen=True)
class ImageFit:
    """The noise model of one LR image, in that image's own normalised units.

    Attributes
    ----------
    source : str
        The image's name.
    gain, read_noise, offset : float
        Grey levels per photon, grey levels rms, zero-photon grey level.
    photons : float
        Photons at this image's bright level (``inf`` without signal-dependent noise).
    background : float
        Photons at this image's background level, as a fraction of ``photons``.
    read_noise_electrons : float
        ``read_noise / gain``.
    lo, hi : float
        This image's percentiles (its normalised units, as training normalises it).
    n_patches : int
        Flat patches used.
    """

    source: str
    gain: float
    read_noise: float
    offset: float
    photons: float
    background: float
    read_noise_electrons: float
    lo: float
    hi: float
    n_patches: int


@dataclass(frozen=True)
class FitResult:
    """A fitted noise model and the crappifier that reproduces it.

    Attributes
    ----------
    config : CrappifyConfig
        Crappifier in normalised units (blur if estimated, downsampling, Poisson shot
        noise at ``photons`` with ``background``, read noise), named ``"fitted"``.
    gain : float
        Conversion gain, grey levels (ADU) per photon (0 when no signal-dependent noise
        was found: the config then has Gaussian noise only).
    read_noise : float
        Read noise in grey levels rms.
    offset : float
        Grey level of zero photons.
    offset_estimated : bool
        True when ``offset`` was estimated as the mean of the darkest flat patches
        (assuming they hold no photons: background shot noise then counts as read
        noise), False when given.
    photons : float
        Photon budget at the bright level (normalised 1.0): ``(hi - lo) / gain``.
    background : float
        Photons at the background level (normalised 0) as a fraction of ``photons``.
    read_noise_electrons : float
        ``read_noise / gain``.
    lo, hi : float
        Percentiles of the LR images defining the normalised units.
    r2 : float
        Weighted coefficient of determination of the variance-mean line.
    n_patches : int
        Flat patches used.
    bin_means, bin_variances : tuple of float
        The per-intensity-bin estimates the line was fitted to (for plots).
    scale : int
        Scale of the config (from HR/LR shapes, the argument, or 1).
    blur_sigma : float or None
        Extra Gaussian blur of LR relative to HR, in HR pixels, or None if not estimated.
    notes : tuple of str
        How each quantity was obtained and any caveat.
    per_image : tuple of ImageFit
        The same fit on each image alone, in its own normalised units (images with too
        few flat patches of their own are left out). When their photon budgets differ
        by more than 25 % the config samples the range they span.
    """

    config: CrappifyConfig
    gain: float
    read_noise: float
    offset: float
    offset_estimated: bool
    photons: float
    background: float
    read_noise_electrons: float
    lo: float
    hi: float
    r2: float
    n_patches: int
    bin_means: tuple[float, ...]
    bin_variances: tuple[float, ...]
    scale: int
    blur_sigma: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    per_image: tuple[ImageFit, ...] = field(default_factory=tuple)

    def report(self) -> str:
        """Human-readable summary of the fit.

        Returns
        -------
        str
            Several lines: the fitted line, the derived photon budget and read noise,
            the blur and scale, the resulting config and the notes.
        """
        lines = [
            f"Noise model fitted on {self.n_patches} flat patches in "
            f"{len(self.bin_means)} intensity bins (r2 = {self.r2:.4f})",
            f"  variance = {self.gain:.4g} x (mean - {self.offset:.4g}) + "
            f"{self.read_noise:.4g}^2   [grey levels]",
        ]
        if self.gain > 0:
            lines += [
                f"  gain {self.gain:.4g} grey levels/photon, read noise {self.read_noise:.4g} "
                f"grey levels ({self.read_noise_electrons:.3g} e-), offset {self.offset:.4g}"
                + (" (estimated)" if self.offset_estimated else " (given)"),
                f"  intensity range {self.lo:.4g} - {self.hi:.4g} -> {self.photons:.4g} photons "
                f"at the bright level, background {self.background:.3g} x that",
            ]
        else:
            lines.append(
                f"  no signal-dependent noise: Gaussian noise of {self.read_noise:.4g} grey levels"
            )
        if len(self.per_image) > 1:
            lines.append("  per image (its own normalised units, as training normalises it):")
            lines += [
                f"    {f.source}: {f.photons:.4g} photons at the bright level, read noise "
                f"{f.read_noise_electrons:.3g} e-, background {f.background:.3g} "
                f"(gain {f.gain:.4g}, {f.n_patches} patches)"
                for f in self.per_image
            ]
        blur = "not estimated" if self.blur_sigma is None else f"{self.blur_sigma:.3g} HR pixels"
        lines += [f"  scale {self.scale}, extra blur {blur}", f"  config: {self.config.summary()}"]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def to_yaml(self, path: str | Path | None = None) -> str:
        """YAML of the fitted config (usable with ``--config``), with the fit as comments.

        Parameters
        ----------
        path : str or Path or None
            If given, also write the text there (atomically: a temporary file beside it,
            renamed at the end).

        Returns
        -------
        str
            The YAML text; it loads with ``CrappifyConfig.from_yaml``.

        Raises
        ------
        OutputError
            If the file cannot be written.
        """
        header = "".join(f"# {line}\n" for line in self.report().splitlines())
        text = header + self.config.to_yaml()
        if path is not None:
            atomic_write_text(path, text)
        return text


# --------------------------------------------------------------------------- inputs


def _as_images(images: Any, what: str) -> list[Image]:
    """Accept one image or a sequence of them (Image, numpy or dask arrays)."""
    if isinstance(images, Image) or hasattr(images, "ndim"):
        images = [images]
    out = []
    for i, item in enumerate(images):
        img = item if isinstance(item, Image) else None
        if img is None:
            ndim = getattr(item, "ndim", None)
            if ndim not in (2, 3):
                raise InputError(
                    f"{what}[{i}]: expected a 2D or 3D image, got shape "
                    f"{getattr(item, 'shape', None)}"
                )
            img = Image(item, axes="YX" if ndim == 2 else "ZYX", source=f"{what}[{i}]")
        out.append(img)
    if not out:
        raise InputError(f"{what}: no images given")
    return out


# ------------------------------------------------------------------------ HR pairs


def _pair_scale(lr: Image, hr: Image, index: int) -> int:
    """Integer scale between a HR image and its LR counterpart, from their shapes."""
    ratios = [h / n for h, n in zip(hr.shape[-2:], lr.shape[-2:], strict=True)]
    scale = round(ratios[0])
    if scale < 1 or any(
        abs(h - scale * n) >= scale for h, n in zip(hr.shape[-2:], lr.shape[-2:], strict=True)
    ):
        raise InputError(
            f"hr_images[{index}]: shape {hr.shape} is not an integer multiple of the LR "
            f"shape {lr.shape}"
        )
    return scale


def _estimate_blur(lr: Image, hr: Image, scale: int, notes: list[str]) -> float | None:
    """Extra Gaussian blur (HR pixels) that best maps a registered HR image onto its LR."""
    from scipy import optimize
    from skimage.registration import phase_cross_correlation

    size = min(REGION, lr.shape[-2], lr.shape[-1])
    ly, lx = (lr.shape[-2] - size) // 2, (lr.shape[-1] - size) // 2
    lr_idx = (slice(ly, ly + size), slice(lx, lx + size))
    hr_idx = (slice(ly * scale, (ly + size) * scale), slice(lx * scale, (lx + size) * scale))
    if lr.ndim == 3:
        z = lr.shape[0] // 2
        lr_idx, hr_idx = (z, *lr_idx), (min(z, hr.shape[0] - 1), *hr_idx)
    lr_reg = np.asarray(lr.data[lr_idx], dtype=np.float64)
    hr_reg = np.asarray(hr.data[hr_idx], dtype=np.float32)
    lo, hi = percentile_range(hr_reg)
    hr_n = np.asarray(normalize(hr_reg, lo, hi))
    shift, _, _ = phase_cross_correlation(
        lr_reg, area_downsample(hr_n, scale).astype(np.float64), normalization=None
    )
    if np.max(np.abs(shift)) > 0.5:
        notes.append(
            f"HR/LR pairs are shifted by {tuple(float(s) for s in shift)} LR pixels: "
            "blur not estimated (it needs registered pairs)"
        )
        return None

    def misfit(sigma: float) -> float:
        pred = area_downsample(deg.gaussian_blur(hr_n, sigma=sigma), scale).ravel()
        design = np.stack([pred, np.ones_like(pred)], axis=1).astype(np.float64)
        coef, *_ = np.linalg.lstsq(design, lr_reg.ravel(), rcond=None)
        return float(np.mean((design @ coef - lr_reg.ravel()) ** 2))

    best = optimize.minimize_scalar(
        misfit, bounds=(0.0, 3.0 * scale), method="bounded", options={"xatol": 0.02}
    )
    notes.append("blur estimated on the central region of the first HR/LR pair")
    return float(best.x)


# ----------------------------------------------------------------------------- fit


def fit_noise_model(
    lr_images: Any,
    hr_images: Any = None,
    *,
    scale: int | None = None,
    offset: float | None = None,
    patch_size: int = 8,
    n_bins: int = 24,
    max_pixels: int = 2**22,
    normalization: NormalizationConfig | None = None,
) -> FitResult:
    """Fit a Poisson-Gaussian noise model to real LR images and make a crappifier of it.

    Each image is cut into ``patch_size``-square patches (at most ``max_pixels`` pixels
    per image are read, from regions spread evenly over it, so huge lazy images are
    fine). Each patch gives a mean and a variance around its best-fitting plane (smooth
    gradients do not count as noise); patches touching the dtype limits are dropped. The
    line ``variance = gain * mean + c`` through the flat patches
    (:func:`~decrappify.crappify.noise_stats.fit_line`) gives the gain; the read noise is
    ``sqrt(c + gain * offset)``.

    Parameters
    ----------
    lr_images : Image or array or sequence of them
        Real low-resolution images (2D or stacks) from one microscope setting.
    hr_images : Image or array or sequence of them, optional
        Registered high-resolution images of the same fields (same order). The scale
        is then taken from the shapes and the extra blur of LR relative to HR is
        estimated (least squares over the blur width, after a registration check).
    scale : int, optional
        Scale of the fitted config. Default: from the HR/LR shapes, else 1 (set it with
        ``result.config.with_scale(s)`` or the CLI's ``--scale``).
    offset : float, optional
        The camera's zero-photon grey level (its offset/bias), if known. When omitted,
        the mean of the darkest flat patches is used, i.e. the darkest areas are assumed
        to hold no photons and their noise is all read noise (for crappifying this is
        equivalent: only the sum of background shot noise and read noise matters).
    patch_size : int
        Side of the patches (>= 4).
    n_bins : int
        Most intensity bins (>= 3); fewer when there are few patches (each bin needs
        about 48).
    max_pixels : int
        Pixels read per image.
    normalization : NormalizationConfig, optional
        Percentiles defining the normalised units (default 0.1 / 99.9).

    Returns
    -------
    FitResult
        The fitted model, its config, r2 and a report.

    Raises
    ------
    InputError
        For bad inputs, or too few flat patches to fit (fewer than 3 usable bins).
    """
    if patch_size < 4:
        raise InputError(f"fit_noise_model: patch_size must be >= 4 (got {patch_size})")
    if n_bins < 3:
        raise InputError(f"fit_noise_model: n_bins must be >= 3 (got {n_bins})")
    norm = normalization or NormalizationConfig()
    lrs = _as_images(lr_images, "lr_images")
    notes: list[str] = []

    per_stats = [_image_stats(img, patch_size, max_pixels) for img in lrs]
    (lo, hi), line = _pooled_line(per_stats, patch_size, n_bins, offset, norm)
    offset_estimated = offset is None
    if offset_estimated:
        notes.append("offset = mean of the darkest flat patches (assumed photon-free)")
    notes += line.notes
    per_image = _per_image_fits(lrs, per_stats, patch_size, n_bins, offset, norm)
    scale, blur_sigma = _fit_pairs(lrs, hr_images, scale, notes)
    scale = 1 if scale is None else int(scale)
    steps = _fitted_steps(
        line, per_image, (lo, hi), blur_sigma=blur_sigma, scale=scale, notes=notes
    )
    config = CrappifyConfig(name="fitted", scale=scale, steps=steps, normalization=norm)
    return FitResult(
        config=config,
        gain=line.gain,
        read_noise=line.read_noise,
        offset=line.offset,
        offset_estimated=offset_estimated,
        photons=float(line.photons),
        background=float(line.background),
        read_noise_electrons=line.read_noise / line.gain if line.gain > 0 else math.inf,
        lo=lo,
        hi=hi,
        r2=line.r2,
        n_patches=line.n_patches,
        bin_means=line.bin_means,
        bin_variances=line.bin_variances,
        scale=scale,
        blur_sigma=blur_sigma,
        notes=tuple(notes),
        per_image=per_image,
    )


def _image_stats(
    img: Image, patch_size: int, max_pixels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the patch means and variances of an image's regions, and a sample of its pixels."""
    means, variances, samples = [], [], []
    for region in regions(img, max_pixels):
        m, v = patch_stats(region, patch_size, img.dtype)
        means.append(m)
        variances.append(v)
        samples.append(region.ravel()[:: max(1, region.size // 65536)])
    return np.concatenate(means), np.concatenate(variances), np.concatenate(samples)


def _pooled_line(
    per_stats: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    patch_size: int,
    n_bins: int,
    offset: float | None,
    norm: NormalizationConfig,
) -> tuple[tuple[float, float], NoiseLine]:
    """Fit one line to all images' patches, in the normalised units of all their pixels."""
    means = np.concatenate([m for m, _, _ in per_stats])
    variances = np.concatenate([v for _, v, _ in per_stats])
    lo, hi = percentile_range(np.concatenate([x for _, _, x in per_stats]), norm.low, norm.high)
    return (lo, hi), fit_line(means, variances, patch_size, n_bins, offset, lo, hi)


def _fit_pairs(
    lrs: list[Image], hr_images: Any, scale: int | None, notes: list[str]
) -> tuple[int | None, float | None]:
    """Return the scale and the extra blur of LR that registered HR images show, if given."""
    if hr_images is None:
        notes.append("no HR images: blur not estimated")
        return scale, None
    hrs = _as_images(hr_images, "hr_images")
    scale = _pairs_scale(lrs, hrs, scale)
    notes.append(f"scale {scale} from the HR/LR shapes")
    return scale, _estimate_blur(lrs[0], hrs[0], scale, notes)


def _pairs_scale(lrs: list[Image], hrs: list[Image], scale: int | None) -> int:
    """Return the one scale of all HR/LR pairs, checked against a given ``scale``."""
    if len(hrs) != len(lrs):
        raise InputError(
            f"hr_images: got {len(hrs)} HR images for {len(lrs)} LR images; pairs must match"
        )
    scales = {_pair_scale(lr, hr, i) for i, (lr, hr) in enumerate(zip(lrs, hrs, strict=True))}
    if len(scales) > 1:
        raise InputError(f"hr_images: HR/LR pairs have different scales {sorted(scales)}")
    pair_scale = scales.pop()
    if scale is not None and scale != pair_scale:
        raise InputError(
            f"fit_noise_model: scale {scale} does not match the HR/LR shapes (x{pair_scale})"
        )
    return pair_scale


def _fitted_steps(
    line: NoiseLine,
    per_image: tuple[ImageFit, ...],
    norm_range: tuple[float, float],
    *,
    blur_sigma: float | None,
    scale: int,
    notes: list[str],
) -> list[Any]:
    """Return the crappifier's steps for the fitted blur, scale and noise."""
    steps: list[Any] = []
    if blur_sigma is not None and blur_sigma > 0.25:
        steps.append(BlurStep(sigma=round(blur_sigma, 3)))
    if scale > 1:
        steps.append(DownsampleStep(method="area"))
    spread = _budget_ranges(per_image)
    if spread is not None:
        photon_range, background_range, read_range = spread
        steps.append(PoissonStep(photons=photon_range, background=background_range))
        steps.append(ReadNoiseStep(sigma=read_range))
        notes.append(
            f"photon budgets differ between the images ({photon_range[0]:.4g} - "
            f"{photon_range[1]:.4g} at each one's bright level): the config samples that range"
        )
    elif line.gain > 0:
        steps.append(
            PoissonStep(photons=float(f"{line.photons:.4g}"), background=round(line.background, 4))
        )
        steps.append(ReadNoiseStep(sigma=float(f"{line.read_noise / line.gain:.4g}")))
    else:
        sigma = line.read_noise / (norm_range[1] - norm_range[0])
        steps.append(GaussianNoiseStep(sigma=float(f"{sigma:.4g}")))
    return steps


def _per_image_fits(
    images: list[Image],
    stats: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    patch_size: int,
    n_bins: int,
    offset: float | None,
    norm: NormalizationConfig,
) -> tuple[ImageFit, ...]:
    """Fit each image alone, skipping images too small to fit by themselves."""
    fits = []
    for index, (image, (means, variances, samples)) in enumerate(zip(images, stats, strict=True)):
        lo, hi = percentile_range(samples, norm.low, norm.high)
        try:
            line = fit_line(means, variances, patch_size, n_bins, offset, lo, hi)
        except InputError:
            continue
        fits.append(
            ImageFit(
                source=image.name if image.source else f"lr_images[{index}]",
                gain=line.gain,
                read_noise=line.read_noise,
                offset=line.offset,
                photons=line.photons,
                background=line.background,
                read_noise_electrons=line.read_noise / line.gain if line.gain > 0 else math.inf,
                lo=lo,
                hi=hi,
                n_patches=line.n_patches,
            )
        )
    return tuple(fits)


def _budget_ranges(
    fits: tuple[ImageFit, ...],
) -> tuple[tuple[float, float], tuple[float, float] | float, tuple[float, float] | float] | None:
    """Photon, background and read-noise ranges when the images' budgets differ, else None."""
    if len(fits) < 2 or any(f.gain <= 0 for f in fits):
        return None
    photons = [f.photons for f in fits]
    if max(photons) <= _BUDGET_SPREAD * min(photons):
        return None

    def span(values: list[float]) -> tuple[float, float] | float:
        low, high = float(f"{min(values):.4g}"), float(f"{max(values):.4g}")
        return low if low == high else (low, high)

    return (
        (float(f"{min(photons):.4g}"), float(f"{max(photons):.4g}")),
        span([f.background for f in fits]),
        span([f.read_noise_electrons for f in fits]),
    )
