"""ResNet-18/34/50/101 encoders with torchvision parameter names.

The modules mirror torchvision's ``resnet*`` (``conv1``, ``bn1``, ``layer1`` ... ``layer4``
of ``BasicBlock`` / ``Bottleneck`` with ``conv1``/``bn1``/``conv2``/``bn2``(/``conv3``/
``bn3``) and ``downsample.0``/``.1``; ResNet v1.5 with the stride on the 3x3 convolution),
without the pooling head, so a torchvision ImageNet state dict loads into them by name
(its ``fc.*`` keys are ignored). torchvision itself is not needed.

The first convolution takes ``in_channels`` channels: ImageNet RGB kernels are summed
for one channel (as fastai does); for ``N`` frames the summed (grey) kernel is divided by
``N`` and repeated, so that ``N`` identical frames give exactly the single-channel
response.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from decrappify.config.model import EncoderName
from decrappify.errors import ModelFileError
from decrappify.models.weights import read_state_dict, state_dict_mismatch

logger = logging.getLogger("decrappify")


def _conv3x3(ni: int, nf: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(ni, nf, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(ni: int, nf: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(ni, nf, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (ResNet-18/34).

    Parameters
    ----------
    ni : int
        Input channels.
    nf : int
        Output channels.
    stride : int
        Stride of the first convolution (2 halves the resolution).
    downsample : torch.nn.Module or None
        Projection of the shortcut when shape changes.
    """

    expansion = 1

    def __init__(self, ni: int, nf: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(ni, nf, stride)
        self.bn1 = nn.BatchNorm2d(nf)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(nf, nf)
        self.bn2 = nn.BatchNorm2d(nf)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Parameters
        ----------
        x : torch.Tensor
            ``(N, ni, H, W)``.

        Returns
        -------
        torch.Tensor
            ``(N, nf, H / stride, W / stride)``.
        """
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 / 3x3 / 1x1 bottleneck block with a shortcut (ResNet-50/101, v1.5).

    Parameters
    ----------
    ni : int
        Input channels.
    nf : int
        Bottleneck width; the block outputs ``4 * nf`` channels.
    stride : int
        Stride of the 3x3 convolution.
    downsample : torch.nn.Module or None
        Projection of the shortcut when shape changes.
    """

    expansion = 4

    def __init__(self, ni: int, nf: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(ni, nf)
        self.bn1 = nn.BatchNorm2d(nf)
        self.conv2 = _conv3x3(nf, nf, stride)
        self.bn2 = nn.BatchNorm2d(nf)
        self.conv3 = _conv1x1(nf, nf * self.expansion)
        self.bn3 = nn.BatchNorm2d(nf * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Parameters
        ----------
        x : torch.Tensor
            ``(N, ni, H, W)``.

        Returns
        -------
        torch.Tensor
            ``(N, 4 * nf, H / stride, W / stride)``.
        """
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


@dataclass(frozen=True)
class ResNetSpec:
    """Architecture of one ResNet variant.

    Parameters
    ----------
    block : type
        :class:`BasicBlock` or :class:`Bottleneck`.
    layers : tuple of int
        Blocks in ``layer1`` ... ``layer4``.
    """

    block: type[BasicBlock] | type[Bottleneck]
    layers: tuple[int, int, int, int]


RESNET_SPECS: dict[EncoderName, ResNetSpec] = {
    EncoderName.RESNET18: ResNetSpec(BasicBlock, (2, 2, 2, 2)),
    EncoderName.RESNET34: ResNetSpec(BasicBlock, (3, 4, 6, 3)),
    EncoderName.RESNET50: ResNetSpec(Bottleneck, (3, 4, 6, 3)),
    EncoderName.RESNET101: ResNetSpec(Bottleneck, (3, 4, 23, 3)),
}


class ResNetEncoder(nn.Module):
    """ResNet body without the pooling/``fc`` head; torchvision parameter names.

    The stages (``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1`` ... ``layer4``) are
    run in order by :meth:`forward`; :meth:`stage_names` lists them so a U-Net can tap
    the outputs where the resolution changes.

    Parameters
    ----------
    name : EncoderName or str
        ``"resnet18"``, ``"resnet34"``, ``"resnet50"`` or ``"resnet101"``.
    in_channels : int
        Input channels of ``conv1`` (1 for a grey image, ``n_frames`` for 2.5D).
    depth : int
        Residual stages kept (``layer1`` ... ``layer{depth}``): 4 is the whole ResNet
        (output at 1/32 resolution), 3 stops at ``layer3`` (1/16) and so on.
    """

    def __init__(self, name: EncoderName | str, in_channels: int = 1, depth: int = 4) -> None:
        super().__init__()
        if not 1 <= depth <= 4:
            raise ValueError(f"encoder depth must be 1 to 4, got {depth}")
        self.name = EncoderName(name)
        self.in_channels = in_channels
        self.depth = depth
        spec = RESNET_SPECS[self.name]
        self._inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for i in range(depth):
            nf = 64 * 2**i
            layer = self._make_layer(spec.block, nf, spec.layers[i], stride=1 if i == 0 else 2)
            self.add_module(f"layer{i + 1}", layer)
        self.out_channels = 64 * 2 ** (depth - 1) * spec.block.expansion
        #: The input sides must be multiples of this (the output is at 1/multiple).
        self.multiple = 2 ** (depth + 1)
        self.reset_parameters()

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], nf: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != nf * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self._inplanes, nf * block.expansion, stride),
                nn.BatchNorm2d(nf * block.expansion),
            )
        layers = [block(self._inplanes, nf, stride, downsample)]
        self._inplanes = nf * block.expansion
        layers += [block(self._inplanes, nf) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def reset_parameters(self) -> None:
        """Random He initialisation (as torchvision): Kaiming-normal convs, BN (1, 0)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def stage_names(self) -> tuple[str, ...]:
        """Names of the stages :meth:`forward` runs, in order.

        Returns
        -------
        tuple of str
            ``("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")``
            for the whole ResNet, without the last layers for a smaller ``depth``.
        """
        layers = tuple(f"layer{i + 1}" for i in range(self.depth))
        return ("conv1", "bn1", "relu", "maxpool", *layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode.

        Parameters
        ----------
        x : torch.Tensor
            ``(N, in_channels, H, W)``.

        Returns
        -------
        torch.Tensor
            ``(N, out_channels, H / multiple, W / multiple)``.
        """
        for name in self.stage_names():
            x = getattr(self, name)(x)
        return x


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Turn pretrained ``conv1`` RGB kernels into kernels for ``in_channels`` channels.

    Parameters
    ----------
    weight : torch.Tensor
        ``(64, c, 7, 7)`` kernels from the file (usually ``c = 3``).
    in_channels : int
        Channels the encoder takes.

    Returns
    -------
    torch.Tensor
        ``(64, in_channels, 7, 7)``: unchanged when ``c == in_channels``; otherwise the
        sum over the file's channels (one grey kernel, fastai's rule for 1 channel),
        divided by ``in_channels`` and repeated, so identical frames give the grey
        response.
    """
    if weight.shape[1] == in_channels:
        return weight
    grey = weight.sum(dim=1, keepdim=True)
    return (grey / in_channels).repeat(1, in_channels, 1, 1)


def load_encoder_weights(encoder: ResNetEncoder, path: str | Path) -> None:
    """Load a torchvision ImageNet state dict into an encoder, by name with strict checks.

    ``fc.*`` keys and the layers beyond the encoder's ``depth`` are ignored, and
    ``conv1.weight`` is adapted to the encoder's input channels with
    :func:`adapt_first_conv`.

    Parameters
    ----------
    encoder : ResNetEncoder
        The encoder (filled in place).
    path : str or Path
        A ``.pth``/``.pt`` (read with ``weights_only=True``) or ``.safetensors`` file, e.g.
        torchvision's ``resnet34-b627a593.pth``.

    Raises
    ------
    ModelFileError
        If the file is missing or unreadable, or its names or shapes do not match the
        encoder; the message names the file and the first offending keys.
    """
    path = Path(path).expanduser()
    unused = ("fc.", *(f"layer{i}." for i in range(encoder.depth + 1, 5)))
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(unused)}
    expected = {k: v.shape for k, v in encoder.state_dict().items()}
    conv1 = state.get("conv1.weight")
    if conv1 is not None and conv1.ndim == 4 and tuple(conv1.shape[2:]) == (7, 7):
        state["conv1.weight"] = adapt_first_conv(conv1, encoder.in_channels)
    # torchvision files from before BN tracked its batches lack num_batches_tracked
    for key in expected:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=torch.long)
    problem = state_dict_mismatch(expected, state)
    if problem:
        raise ModelFileError(f"{path}: not a {encoder.name.value} ImageNet state dict: {problem}")
    encoder.load_state_dict(state, strict=True)
    adapted = ""
    if conv1 is not None and conv1.shape[1] != encoder.in_channels:
        adapted = f"; conv1 adapted from {conv1.shape[1]} to {encoder.in_channels} input channels"
    logger.info("%s encoder: ImageNet weights loaded from %s%s", encoder.name.value, path, adapted)


def build_encoder(
    name: EncoderName | str,
    in_channels: int = 1,
    weights: str | Path | None = None,
    *,
    depth: int = 4,
) -> ResNetEncoder:
    """Make a ResNet encoder, from a local ImageNet weights file or randomly initialised.

    Parameters
    ----------
    name : EncoderName or str
        Encoder name.
    in_channels : int
        Input channels.
    weights : str, Path or None
        Local torchvision state dict; None starts from random He initialisation (logged
        on the ``"decrappify"`` logger).
    depth : int
        Residual stages kept (see :class:`ResNetEncoder`).

    Returns
    -------
    ResNetEncoder
        The encoder, in training mode.
    """
    encoder = ResNetEncoder(name, in_channels, depth)
    if weights is None:
        logger.info(
            "%s encoder: random He initialisation (no ImageNet weights file given; pass a local "
            "torchvision state dict to start from ImageNet)",
            encoder.name.value,
        )
    else:
        load_encoder_weights(encoder, weights)
    return encoder
