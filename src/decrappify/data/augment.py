"""Training augmentation (pure numpy): dihedral transforms, intensity jitter, input noise.

All functions take an explicit :class:`numpy.random.Generator` (or already drawn
parameters) so that any augmented sample can be regenerated from its seed. The
parameters of one sample are drawn once by :func:`draw_augment` and applied to the LR
input and the HR target consistently:

- the 8 dihedral transforms (:func:`dihedral`) are applied identically to both, on the
  last two axes (block-averaging the HR commutes with them, so LR/HR alignment holds);
- the contrast/brightness jitter ``x -> c * x + b`` (:func:`jitter_intensity`): the gain
  ``c`` is applied to the normalised HR *before* it is crappified, so that the noise
  model sees the jittered intensities (a dimmer or brighter sample), and the offset
  ``b`` to both LR and HR *after* crappifying: an offset is what a different
  normalisation looks like, and shot noise clips negative intensities, so an offset
  applied before the Poisson step would be partly undone in the LR and the pair
  would disagree. For aligned LR/HR pairs both go on both images;
- extra Gaussian noise (:func:`add_noise`) goes on the LR input only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from decrappify.config.data import AugmentConfig

#: Number of dihedral transforms (4 rotations, each with or without a flip).
N_DIHEDRAL = 8


@dataclass(frozen=True)
class AugmentParams:
    """The augmentation drawn for one sample.

    Parameters
    ----------
    dihedral : int
        Index in ``[0, 8)`` of the dihedral transform (see :func:`dihedral`).
    contrast : float
        Gain ``c`` of the intensity jitter.
    brightness : float
        Offset ``b`` of the intensity jitter (normalised units).
    lr_noise : float
        Standard deviation of the Gaussian noise added to the LR input.
    """

    dihedral: int = 0
    contrast: float = 1.0
    brightness: float = 0.0
    lr_noise: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the parameters as a plain dict.

        Returns
        -------
        dict
            Field name to value.
        """
        return asdict(self)


#: No augmentation (validation crops).
IDENTITY = AugmentParams()


def draw_augment(rng: np.random.Generator, config: AugmentConfig) -> AugmentParams:
    """Draw the augmentation parameters of one sample.

    The same number of values is drawn whatever the configuration, so switching one
    augmentation on or off does not change the others.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    config : AugmentConfig
        Which augmentations and their ranges.

    Returns
    -------
    AugmentParams
        The parameters; identity values for disabled augmentations.
    """
    k, u_apply, u_contrast, u_brightness, u_noise = (
        int(rng.integers(N_DIHEDRAL)),
        *rng.random(4).tolist(),
    )
    jitter = u_apply < config.intensity_probability
    low, high = config.contrast
    return AugmentParams(
        dihedral=k if config.dihedral else 0,
        contrast=low + (high - low) * u_contrast if jitter else 1.0,
        brightness=config.brightness * (2.0 * u_brightness - 1.0) if jitter else 0.0,
        lr_noise=config.lr_noise * u_noise,
    )


def dihedral(x: np.ndarray, k: int) -> np.ndarray:
    """Apply one of the 8 dihedral transforms to the last two axes.

    ``k`` in 0..3 rotates by ``k`` quarter turns (``numpy.rot90``); ``k`` in 4..7 first
    flips left-right, then rotates by ``k - 4`` quarter turns. Non-square arrays are
    allowed (odd rotations swap the last two axes).

    Parameters
    ----------
    x : numpy.ndarray
        Array with at least 2 dimensions.
    k : int
        Transform index in ``[0, 8)``.

    Returns
    -------
    numpy.ndarray
        A C-contiguous transformed copy (or ``x`` itself for ``k == 0``).
    """
    if not 0 <= k < N_DIHEDRAL:
        raise ValueError(f"dihedral index must be in [0, {N_DIHEDRAL}) (got {k})")
    if k == 0:
        return x
    y = np.flip(x, axis=-1) if k >= 4 else x
    return np.ascontiguousarray(np.rot90(y, k % 4, axes=(-2, -1)))


def jitter_intensity(x: np.ndarray, contrast: float, brightness: float) -> np.ndarray:
    """Map intensities ``x -> contrast * x + brightness`` (normalised units).

    Parameters
    ----------
    x : numpy.ndarray
        Normalised image.
    contrast : float
        Gain.
    brightness : float
        Offset.

    Returns
    -------
    numpy.ndarray
        float32 (``x`` unchanged, as float32, for the identity).
    """
    x = np.asarray(x, dtype=np.float32)
    if contrast == 1.0 and brightness == 0.0:
        return x
    return (x * np.float32(contrast) + np.float32(brightness)).astype(np.float32, copy=False)


def add_noise(x: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Add zero-mean Gaussian noise of standard deviation ``std``.

    Parameters
    ----------
    x : numpy.ndarray
        Normalised image.
    std : float
        Noise standard deviation (normalised units); 0 returns ``x`` as float32.
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    numpy.ndarray
        float32.
    """
    x = np.asarray(x, dtype=np.float32)
    if std <= 0:
        return x
    noise = rng.standard_normal(x.shape, dtype=np.float32)
    return x + np.float32(std) * noise
