"""Training data settings: patch size, sampling, background rejection, augmentation, validation.

Every model derives from :class:`~decrappify.config.base.StrictModel` (unknown fields are
errors, bounds are checked, messages are one line). The settings that depend on the
crappifier (the patch size must be divisible by its ``scale``) are checked by
:meth:`DataConfig.check_scale` when the data pipeline is built.
"""

from __future__ import annotations

import math

from pydantic import Field, field_validator

from decrappify.config.base import StrictModel
from decrappify.config.normalization import NormalizationConfig
from decrappify.errors import InputError

#: The U-Net halves its input five times, so HR patches must be a multiple of this.
PATCH_MULTIPLE = 32

#: Default HR patch side (``DataConfig.patch_size``) when super-resolving (scale >= 2).
PATCH_SIZE = 256
#: Default patch side at scale 1 (restoration): the generator's input is the whole
#: patch, so 128 px still leave its deepest features 8x8 (the 256-px default at 4x
#: leaves 4x4) at a quarter of the cost per step; on the W2S real frames it trains
#: 3x the steps in the same budget and scores ~1.2 dB higher (docs/benchmarks.md).
RESTORATION_PATCH_SIZE = 128


def default_patch_size(scale: int) -> int:
    """Return the default HR patch side for a super-resolution factor.

    Parameters
    ----------
    scale : int
        Super-resolution factor (1: restoration without upsampling).

    Returns
    -------
    int
        :data:`RESTORATION_PATCH_SIZE` at scale 1, else :data:`PATCH_SIZE`.
    """
    return RESTORATION_PATCH_SIZE if scale == 1 else PATCH_SIZE


class AugmentConfig(StrictModel):
    """Random augmentation of each training sample (never applied to validation crops).

    Parameters
    ----------
    dihedral : bool
        Apply one of the 8 flips / 90-degree rotations, identically to the LR input and
        the HR target.
    contrast : tuple of float
        Range ``[min, max]`` of the gain ``c`` in ``x -> c * x + b``, applied to the
        normalised HR patch before it is crappified (to both images of an aligned
        LR/HR pair). ``[1, 1]`` disables it.
    brightness : float
        The offset ``b`` is drawn uniformly in ``[-brightness, brightness]`` (normalised
        units, where 1 is the bright signal level) and added to both the LR input and
        the HR target after crappifying (shot noise would clip a negative offset
        applied before). 0 disables it.
    intensity_probability : float
        Probability that a sample gets the contrast/brightness jitter at all.
    lr_noise : float
        Extra Gaussian noise on the LR input only: its standard deviation is drawn
        uniformly in ``[0, lr_noise]`` per sample (normalised units). 0 disables it.
    """

    dihedral: bool = True
    contrast: tuple[float, float] = (0.5, 1.5)
    brightness: float = Field(0.2, ge=0.0, le=1.0)
    intensity_probability: float = Field(0.75, ge=0.0, le=1.0)
    lr_noise: float = Field(0.0, ge=0.0, le=1.0)

    @field_validator("contrast")
    @classmethod
    def _check_contrast(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0.0 < low <= high <= 10.0:
            raise ValueError(f"must be [min, max] with 0 < min <= max <= 10 (got {list(value)})")
        return value


class BackgroundConfig(StrictModel):
    """Rejection of empty (background) patches, common in microscopy.

    A candidate patch is rejected when the standard deviation of its target plane is
    below ``std_fraction`` times the image's standard deviation (both in normalised
    units; the image's is computed once per image: exactly for images up to 4
    megapixels, from 64 random windows for larger ones). After
    ``max_tries`` candidates the one with the largest standard deviation is used, so
    sampling never loops forever on an empty image.

    Parameters
    ----------
    enabled : bool
        Reject background patches.
    std_fraction : float
        Threshold as a fraction of the image's standard deviation.
    max_tries : int
        Candidates drawn per sample at most.
    """

    enabled: bool = True
    std_fraction: float = Field(0.25, gt=0.0, le=10.0)
    max_tries: int = Field(10, ge=1, le=1000)


class ValidationConfig(StrictModel):
    """How the validation data is split off and sampled.

    The split is by image, never by patch: ``count`` images (or, if None, a
    ``fraction`` of them, at least one) are held out. With a single input stack the
    split is by planes (a contiguous block at the end); with a single 2D image, as a
    fallback, a strip at the bottom (or right) edge is held out. Validation uses
    ``patches`` fixed crops: positions and crappify seeds are the same every epoch and
    every run with the same ``DataConfig.seed``.

    Parameters
    ----------
    fraction : float
        Fraction of the images (planes of a single stack, rows or columns of a single
        2D image) held out; 0 disables validation.
    count : int or None
        Number of images held out (planes for a single stack); overrides ``fraction``.
    patches : int
        Number of fixed validation crops.
    size : int or None
        Side of the validation crops in HR pixels (a multiple of 32). None: twice the
        training patch, at least 256 and at most the validation images allow. Crops
        larger than the training patches score the network as inference uses it, on
        more context than it was trained on: a network that learnt to lean on the
        borders of its small training patches scores badly there, and is not chosen.
    """

    fraction: float = Field(0.1, ge=0.0, le=0.9)
    count: int | None = Field(None, ge=0)
    patches: int = Field(32, ge=1, le=100_000)
    size: int | None = Field(None, ge=32, le=4096)

    @field_validator("size")
    @classmethod
    def _check_size(cls, value: int | None) -> int | None:
        if value is not None and value % 32:
            raise ValueError(f"must be a multiple of 32 (got {value})")
        return value

    @property
    def enabled(self) -> bool:
        """Whether any validation data is held out."""
        return self.count != 0 if self.count is not None else self.fraction > 0


class DataConfig(StrictModel):
    """Settings of the training data pipeline.

    Parameters
    ----------
    patch_size : int
        Side of the square HR patch in pixels; a multiple of 32 (the U-Net depth) and
        divisible by the crappifier's scale. The LR input is ``patch_size // scale``.
        256 by default; :func:`~decrappify.api.train_config` picks 128 at scale 1
        unless it is set (:func:`default_patch_size`).
    n_frames : int
        Number of neighbouring planes stacked as input channels (2.5D); odd, the target
        is the centre plane. 1 for plain 2D training.
    batch_size : int
        Patches per training batch.
    samples_per_epoch : int
        Random patches per epoch.
    seed : int
        Seed of everything random: the split, patch positions, crappify seeds,
        augmentation and the validation crops.
    num_workers : int or None
        DataLoader worker processes making training batches (0: in the main process).
        None (default): chosen for the device, 0 on the CPU (the steps use every core)
        and half the cores (up to 8) on a GPU
        (:func:`decrappify.data.dataset.default_workers`). The batches are the same
        with any number.
    normalization : NormalizationConfig or None
        Percentile normalisation applied per image. None (default): the crappify
        config's ``normalization`` (its noise parameters are defined in those units),
        or the 0.1/99.9 defaults in paired mode. Giving one that differs from the
        crappify config's is an error.
    background : BackgroundConfig
        Background patch rejection.
    augment : AugmentConfig
        Training augmentation.
    validation : ValidationConfig
        Validation split and fixed crops.
    """

    # 256-pixel HR patches (64 LR pixels of context at 4x): on 128-pixel patches an "lr"
    # network learns to lean on the patch borders and fails on whole images
    patch_size: int = Field(PATCH_SIZE, ge=PATCH_MULTIPLE, le=4096)
    n_frames: int = Field(1, ge=1, le=15)
    batch_size: int = Field(4, ge=1, le=4096)
    samples_per_epoch: int = Field(1024, ge=1, le=100_000_000)
    seed: int = Field(0, ge=0)
    num_workers: int | None = Field(None, ge=0, le=64)
    normalization: NormalizationConfig | None = None
    background: BackgroundConfig = Field(default_factory=BackgroundConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)

    @field_validator("patch_size")
    @classmethod
    def _check_patch_multiple(cls, value: int) -> int:
        if value % PATCH_MULTIPLE:
            raise ValueError(f"must be a multiple of {PATCH_MULTIPLE} for the U-Net")
        return value

    @field_validator("n_frames")
    @classmethod
    def _check_odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError("must be odd so that the target is the centre plane")
        return value

    def resolve_normalization(self, crappify: NormalizationConfig | None) -> NormalizationConfig:
        """Return the normalisation to use, given the crappify config's (if any).

        Parameters
        ----------
        crappify : NormalizationConfig or None
            The crappify config's ``normalization``; None in paired mode.

        Returns
        -------
        NormalizationConfig
            ``self.normalization`` if set, else ``crappify``, else the defaults.

        Raises
        ------
        InputError
            If both are given and differ.
        """
        if self.normalization is None:
            return crappify if crappify is not None else NormalizationConfig()
        if crappify is not None and crappify != self.normalization:
            raise InputError(
                f"data.normalization: percentiles {self.normalization.low}/"
                f"{self.normalization.high} differ from the crappify config's "
                f"{crappify.low}/{crappify.high}; set them in one place"
            )
        return self.normalization

    def check_scale(self, scale: int) -> None:
        """Check that the patch size suits a super-resolution scale.

        Parameters
        ----------
        scale : int
            The crappifier's (or the LR/HR pairs') integer scale.

        Raises
        ------
        InputError
            If the patch size is not divisible by ``scale``.
        """
        if scale < 1:
            raise InputError(f"scale: must be a positive integer (got {scale})")
        if self.patch_size % scale:
            multiple = PATCH_MULTIPLE * scale // math.gcd(PATCH_MULTIPLE, scale)
            raise InputError(
                f"data.patch_size: must be divisible by the scale {scale} so that the LR patch "
                f"is whole, e.g. a multiple of {multiple} (got {self.patch_size})"
            )
