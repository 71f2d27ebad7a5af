"""The default network and loss of a training run (from the measurements in docs/benchmarks.md).

Pure configuration: :class:`~decrappify.config.train.TrainConfig` takes its ``generator``
and ``loss`` defaults from here.
"""

from __future__ import annotations

from decrappify.config.model import GeneratorConfig, LossConfig


def default_generator() -> GeneratorConfig:
    """Return the generator a run trains unless its config says otherwise.

    Returns
    -------
    GeneratorConfig
        A fresh config.
    """
    # From the ablations of docs/benchmarks.md: the U-Net on the LR grid with an ESPCN-style
    # last upsampling (~6x fewer operations per output pixel than "hr"), ResNet-18 to
    # layer3, a half-width decoder, the global residual from bilinear interpolation.
    return GeneratorConfig(
        encoder="resnet18", nf_factor=0.5, self_attention=False, residual=True, scale=4,
        grid="lr", tail="shuffle", encoder_depth=3,
    )  # fmt: skip


def default_loss() -> LossConfig:
    """Return the pretraining (and GAN content) loss unless a config says otherwise.

    Returns
    -------
    LossConfig
        A fresh config.
    """
    # L1 for PSNR, a little SSIM for structure (L1 alone: +0.6 dB / +0.01 SSIM on ssTEM)
    return LossConfig(weights={"l1": 1.0, "ssim": 0.2})
