"""VGG16 with BatchNorm feature extractor for the perceptual loss (torchvision names).

:class:`VGG16BNFeatures` holds ``features.N`` exactly as torchvision's ``vgg16_bn``
(``features.0.weight``, ``features.1.running_mean`` ...), truncated after the deepest
layer the loss needs, so a local torchvision ImageNet state dict
(``vgg16_bn-6c64b313.pth``) loads by name; the ``classifier.*`` keys and deeper layers
are ignored. Its weights come only from a file: a random VGG would make the perceptual
loss meaningless, so there is no random fallback.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from decrappify.errors import ModelFileError
from decrappify.models.weights import read_state_dict, state_dict_mismatch

logger = logging.getLogger("decrappify")

#: torchvision's configuration "D" (VGG16): channels of each conv, "M" for max-pool.
VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip

#: ImageNet RGB statistics used to normalise the replicated grey input.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg16_bn_layers(cfg: tuple[int | str, ...] = VGG16_CFG) -> list[nn.Module]:
    """Layers of ``vgg16_bn.features`` in torchvision's order (conv, BN, ReLU / max-pool).

    Parameters
    ----------
    cfg : tuple
        Channels per conv, ``"M"`` for a max-pool.

    Returns
    -------
    list of torch.nn.Module
        44 layers for VGG16; ReLUs are not in place so their outputs can be kept.
    """
    layers: list[nn.Module] = []
    channels = 3
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            nf = int(item)
            layers += [nn.Conv2d(channels, nf, 3, padding=1), nn.BatchNorm2d(nf), nn.ReLU()]
            channels = nf
    return layers


class VGG16BNFeatures(nn.Module):
    """Frozen VGG16-bn ``features`` up to the deepest requested layer.

    The input is a 1-channel image in normalised units (0 background, 1 bright); it is
    replicated to 3 channels and normalised with the ImageNet mean/std.

    Parameters
    ----------
    layer_ids : sequence of int
        Indices in ``features`` whose outputs :meth:`forward` returns.
    """

    def __init__(self, layer_ids: list[int] | tuple[int, ...]) -> None:
        super().__init__()
        self.layer_ids = tuple(int(i) for i in layer_ids)
        self.features = nn.Sequential(*vgg16_bn_layers()[: max(self.layer_ids) + 1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG16BNFeatures:
        """Stay in eval mode whatever is asked (BatchNorm statistics are ImageNet's).

        Parameters
        ----------
        mode : bool
            Ignored.

        Returns
        -------
        VGG16BNFeatures
            Self.
        """
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Extract features.

        Parameters
        ----------
        x : torch.Tensor
            ``(N, 1, H, W)`` (or ``(N, 3, H, W)``) normalised image.

        Returns
        -------
        list of torch.Tensor
            The outputs of ``layer_ids``, in that order.
        """
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.mean) / self.std
        wanted = set(self.layer_ids)
        found: dict[int, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in wanted:
                found[i] = x
        return [found[i] for i in self.layer_ids]


def load_vgg16_bn_features(path: str | Path, layer_ids: list[int]) -> VGG16BNFeatures:
    """Build the feature extractor from a local torchvision ``vgg16_bn`` weights file.

    Parameters
    ----------
    path : str or Path
        ``.pth``/``.pt`` (read with ``weights_only=True``) or ``.safetensors`` state dict
        with torchvision names (``features.N.*``; ``classifier.*`` ignored).
    layer_ids : list of int
        Feature layers the loss compares.

    Returns
    -------
    VGG16BNFeatures
        Frozen, in eval mode.

    Raises
    ------
    ModelFileError
        If the file is missing or unreadable, or the ``features.*`` names or shapes it
        needs are missing or wrong.
    """
    path = Path(path).expanduser()
    model = VGG16BNFeatures(layer_ids)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    depth = len(model.features)
    state = {}
    for key, value in read_state_dict(path).items():
        parts = key.split(".")
        if parts[0] == "classifier":
            continue
        if parts[0] == "features" and len(parts) > 2 and parts[1].isdigit():
            if int(parts[1]) >= depth:
                continue
        state[key] = value
    for key in expected:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=torch.long)
    problem = state_dict_mismatch(expected, state)
    if problem:
        raise ModelFileError(f"{path}: not a vgg16_bn ImageNet state dict: {problem}")
    model.load_state_dict(state, strict=True)
    model.requires_grad_(False)
    logger.info("perceptual loss: VGG16-bn weights loaded from %s", path)
    return model.eval()
