"""Networks, losses and the model file (torch).

- :mod:`.resnet`: ResNet-18/34/50/101 encoders with torchvision parameter names.
- :mod:`.layers`: PixelShuffle-ICNR, self-attention, residual block, conv helpers.
- :mod:`.unet`: the DynamicUnet-style generator and :class:`SuperResolutionNet`.
- :mod:`.critic`: the NoGAN critic.
- :mod:`.losses` and :mod:`.vgg`: L1/MSE/SSIM/MS-SSIM/perceptual losses.
- :mod:`.factory`: ``build_generator`` / ``build_critic`` / ``build_loss``.
- :mod:`.store`: ``save_model`` / ``load_model`` (safetensors + JSON).
- :mod:`.summary`: ``describe_model`` (what ``decrappify info`` prints).

See ``docs/models.md`` for the architecture and how to use local ImageNet weights.
"""

from decrappify.models.critic import Critic
from decrappify.models.factory import (
    EncoderName,
    LossTerm,
    NormType,
    PoolType,
    Preset,
    build_critic,
    build_generator,
    build_loss,
)
from decrappify.models.losses import CombinedLoss, FeatureLoss, ms_ssim, ssim
from decrappify.models.store import (
    LoadedModel,
    load_model,
    read_tensors,
    save_model,
    save_tensors,
)
from decrappify.models.summary import describe_model
from decrappify.models.unet import DynamicUnet, SuperResolutionNet

__all__ = [
    "CombinedLoss",
    "Critic",
    "DynamicUnet",
    "EncoderName",
    "FeatureLoss",
    "LoadedModel",
    "LossTerm",
    "NormType",
    "PoolType",
    "Preset",
    "SuperResolutionNet",
    "build_critic",
    "build_generator",
    "build_loss",
    "describe_model",
    "load_model",
    "ms_ssim",
    "read_tensors",
    "save_model",
    "save_tensors",
    "ssim",
]
