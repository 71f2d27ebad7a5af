"""Explicit factories from configuration to modules (no import-time registries).

The names of the choices are the enums of :mod:`decrappify.config.model`, re-exported here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

from decrappify.config.model import (
    Arch,
    CriticConfig,
    EncoderName,
    GeneratorConfig,
    Grid,
    LossConfig,
    LossTerm,
    NormType,
    PoolType,
    Preset,
)
from decrappify.errors import InputError
from decrappify.models.critic import Critic
from decrappify.models.losses import FEATURE_LOSS_HELP, CombinedLoss, FeatureLoss
from decrappify.models.nafunet import NafUnet
from decrappify.models.resnet import ResNetEncoder, build_encoder
from decrappify.models.unet import DynamicUnet, SuperResolutionNet
from decrappify.models.vgg import load_vgg16_bn_features

__all__ = [
    "Arch",
    "EncoderName",
    "Generator",
    "NafGenerator",
    "Grid",
    "LossTerm",
    "NormType",
    "PoolType",
    "Preset",
    "build_critic",
    "build_generator",
    "build_loss",
]


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Seed torch's CPU generator inside the block only (the global state is restored)."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class NafGenerator(NafUnet):
    """:class:`~decrappify.models.nafunet.NafUnet` with what training expects of a generator.

    The plain module takes plain arguments; this one is built from a
    :class:`GeneratorConfig` (kept as ``config`` for the model file) and answers the
    encoder calls of the training phases (it has no pretrained encoder to freeze).
    The state dict is the plain module's.

    Parameters
    ----------
    cfg : GeneratorConfig
        A ``"naf"`` configuration.
    """

    def __init__(self, cfg: GeneratorConfig) -> None:
        naf = cfg.naf
        super().__init__(
            cfg.n_frames,
            cfg.scale,
            width=naf.width,
            blocks=list(naf.blocks),
            middle_blocks=naf.middle_blocks,
            decoder_blocks=None if naf.decoder_blocks is None else list(naf.decoder_blocks),
            block=naf.block.value,
            expand=naf.expand,
            tail_width=cfg.tail_width,
            blur=cfg.blur,
            clamp=cfg.y_range,
        )
        self.config = cfg

    def freeze_encoder(self) -> None:
        """Do nothing: the encoder starts from random weights and always trains."""

    def unfreeze_encoder(self) -> None:
        """Do nothing (every parameter always trains)."""

    def parameter_groups(self) -> list[dict[str, object]]:
        """Parameters split into encoder (input convolution and encoder levels) and the rest.

        Returns
        -------
        list of dict
            ``[{"name": "encoder", "params": [...]}, {"name": "decoder", "params": [...]}]``,
            as :meth:`SuperResolutionNet.parameter_groups`.
        """
        encoder = [*self.intro.parameters(), *self.encoder.parameters()]
        ids = {id(p) for p in encoder}
        decoder = [p for p in self.parameters() if id(p) not in ids]
        return [{"name": "encoder", "params": encoder}, {"name": "decoder", "params": decoder}]


#: What :func:`build_generator` returns.
Generator = SuperResolutionNet | NafGenerator


def _generator_from_encoder(cfg: GeneratorConfig, encoder: ResNetEncoder) -> SuperResolutionNet:
    unet = DynamicUnet(
        encoder,
        preset=cfg.preset,
        nf_factor=cfg.resolved_nf_factor,
        n_convs=cfg.resolved_blocks_per_stage,
        self_attention=cfg.self_attention,
        attention_block=cfg.attention_block,
        norm=cfg.norm_type,
        blur=cfg.blur,
        y_range=cfg.y_range,
        residual=cfg.residual,
        scale=cfg.scale if Grid(cfg.grid) is Grid.LR else 1,
        tail_width=cfg.tail_width,
        tail=cfg.tail,
    )
    return SuperResolutionNet(unet, scale=cfg.scale, config=cfg.model_copy(deep=True))


def build_generator(
    cfg: GeneratorConfig,
    *,
    encoder_weights: str | Path | None = None,
    seed: int | None = None,
) -> Generator:
    """Build the super-resolution generator described by a configuration.

    Parameters
    ----------
    cfg : GeneratorConfig
        Architecture, ``scale`` and ``n_frames``.
    encoder_weights : str, Path or None
        Local torchvision ImageNet state dict of ``cfg.encoder`` (``.pth`` read with
        ``weights_only=True``, or ``.safetensors``); None starts the encoder from random
        He initialisation (logged on the ``"decrappify"`` logger). Only the ``"resnet"``
        family has an ImageNet encoder: giving weights for ``"naf"`` is an error.
    seed : int or None
        Seed of the random initialisation (torch's global generator is left untouched);
        None uses torch's global generator.

    Returns
    -------
    SuperResolutionNet or NafGenerator
        The network (``arch`` ``"resnet"`` or ``"naf"``), in training mode, on the CPU.

    Raises
    ------
    ModelFileError
        If the weights file is missing, unreadable or does not match the encoder.
    InputError
        If encoder weights are given for a ``"naf"`` network.
    """
    if Arch(cfg.arch) is Arch.NAF:
        if encoder_weights is not None:
            raise InputError(
                "encoder_weights: the naf generator has no ImageNet encoder; leave "
                "encoder_weights out or use generator.arch: resnet"
            )
        with _seeded(seed):
            return NafGenerator(cfg.model_copy(deep=True))
    with _seeded(seed):
        encoder = build_encoder(cfg.encoder, cfg.n_frames, encoder_weights, depth=cfg.encoder_depth)
        return _generator_from_encoder(cfg, encoder)


def generator_skeleton(cfg: GeneratorConfig) -> Generator:
    """Build the generator's modules only, to be filled from a saved state dict.

    Parameters
    ----------
    cfg : GeneratorConfig
        Architecture.

    Returns
    -------
    SuperResolutionNet or NafGenerator
        Network with a fixed-seed random initialisation (torch's global generator is
        untouched and nothing is logged).
    """
    if Arch(cfg.arch) is Arch.NAF:
        with _seeded(0):
            return NafGenerator(cfg.model_copy(deep=True))
    with _seeded(0):
        return _generator_from_encoder(
            cfg, ResNetEncoder(cfg.encoder, cfg.n_frames, cfg.encoder_depth)
        )


def build_critic(cfg: CriticConfig, *, seed: int | None = None) -> Critic:
    """Build the critic described by a configuration.

    Parameters
    ----------
    cfg : CriticConfig
        Critic settings.
    seed : int or None
        Seed of the random initialisation (None: torch's global generator).

    Returns
    -------
    Critic
        The critic (1 input channel), in training mode.
    """
    with _seeded(seed):
        return Critic(
            1,
            nf=cfg.nf,
            n_blocks=cfg.n_blocks,
            dropout=cfg.dropout,
            self_attention=cfg.self_attention,
            pool=cfg.pool,
            attention_pool=cfg.attention_pool,
        )


def build_loss(cfg: LossConfig, vgg_weights: str | Path | None = None) -> CombinedLoss:
    """Build the generator loss described by a configuration.

    Parameters
    ----------
    cfg : LossConfig
        Term weights and settings.
    vgg_weights : str, Path or None
        Local torchvision ``vgg16_bn`` ImageNet state dict, required when the
        ``feature`` weight is positive (ignored otherwise).

    Returns
    -------
    CombinedLoss
        Callable ``loss(pred, target) -> (total, {term: value})``.

    Raises
    ------
    InputError
        If the feature loss is asked for without ``vgg_weights``.
    ModelFileError
        If the VGG weights file is missing, unreadable or not a ``vgg16_bn`` state dict.
    """
    feature = None
    if cfg.weight(LossTerm.FEATURE) > 0:
        if vgg_weights is None:
            raise InputError(FEATURE_LOSS_HELP)
        extractor = load_vgg16_bn_features(vgg_weights, cfg.feature_layers)
        feature = FeatureLoss(
            extractor,
            cfg.feature_layer_weights,
            pixel_weight=cfg.feature_pixel_weight,
            gram_weight=cfg.feature_gram_weight,
        )
    return CombinedLoss(cfg, feature)
