"""Degradation models that turn high-resolution images into realistic low-resolution ones.

* :mod:`~decrappify.crappify.degradations`: pure functions ``f(img, *, rng, **params)``
  on 2D float32 images in normalised units (Gaussian, local-variance, Poisson, read and
  salt-and-pepper noise; Gaussian PSF blur; JPEG-like quantisation; area and bilinear
  downsampling).
* :func:`crappify_array`: one normalised HR array (a training patch) to LR, with the
  parameters drawn from a seed (:func:`sample_params`).
* :func:`crappify_image`: a whole image or stack, lazily and chunk by chunk, identical to
  the in-memory result.
* :func:`fit_noise_model`: fit a crappifier to real low-resolution images.

Configurations live in :mod:`decrappify.config.crappify` (:class:`CrappifyConfig`,
:func:`get_preset`). Pure numpy/scipy: no torch.
"""

from decrappify.config.crappify import PRESETS, CrappifyConfig, get_preset
from decrappify.crappify.degradations import (
    area_downsample,
    bilinear_downsample,
    downsample,
    fwhm_to_sigma,
    gaussian_blur,
    gaussian_noise,
    jpeg_compress,
    local_variance_noise,
    poisson_noise,
    read_noise,
    salt_pepper,
    sigma_to_fwhm,
    widefield_psf_sigma,
)
from decrappify.crappify.fields import NoiseField
from decrappify.crappify.fit import FitResult, fit_noise_model
from decrappify.crappify.image import crappify_image
from decrappify.crappify.pipeline import crappify_array, sample_params

__all__ = [
    "PRESETS",
    "CrappifyConfig",
    "FitResult",
    "NoiseField",
    "area_downsample",
    "bilinear_downsample",
    "crappify_array",
    "crappify_image",
    "downsample",
    "fit_noise_model",
    "fwhm_to_sigma",
    "gaussian_blur",
    "gaussian_noise",
    "get_preset",
    "jpeg_compress",
    "local_variance_noise",
    "poisson_noise",
    "read_noise",
    "salt_pepper",
    "sample_params",
    "sigma_to_fwhm",
    "widefield_psf_sigma",
]
