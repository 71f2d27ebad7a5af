"""The generator: a fastai-DynamicUnet-style U-Net on a ResNet encoder, and its wrapper.

:class:`DynamicUnet` follows fastai's ``DynamicUnet`` and DeOldify's ``DynamicUnetWide`` /
``DynamicUnetDeep``:

1. the encoder's outputs are tapped at every stage after which the resolution changes
   (found by a dummy forward pass, as fastai's hooks do);
2. BatchNorm + ReLU + two "middle" convolutions at 1/32 resolution;
3. four :class:`UnetBlock`: PixelShuffle-ICNR upsampling (+ blur), BatchNorm on the skip
   features, concatenation, ReLU, convolutions (and self-attention in one block);
4. a last PixelShuffle-ICNR back to full resolution, the input concatenated (cross
   connection), a residual block, a 1x1 convolution to one channel and an optional
   :class:`~decrappify.models.layers.SigmoidRange`.

:class:`SuperResolutionNet` is the whole inference network: bilinear upsampling of the
low-resolution input by ``scale``, reflect padding to a multiple of 32, the U-Net and the
crop back.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from decrappify.config.model import GeneratorConfig, NormType, Preset
from decrappify.errors import InputError
from decrappify.models.layers import (
    PixelShuffleICNR,
    ResBlock,
    SigmoidRange,
    apply_norm,
    batchnorm_2d,
    conv_layer,
    init_conv,
)
from decrappify.models.resnet import ResNetEncoder

#: Grey-level ImageNet statistics (mean of the RGB ones), applied to the encoder's input.
IMAGENET_GREY_MEAN = 0.449
IMAGENET_GREY_STD = 0.226


def encoder_taps(encoder: ResNetEncoder, size: int = 64) -> list[tuple[str, int, int]]:
    """Find the encoder stages after which the resolution changes (fastai ``_get_sfs_idxs``).

    Parameters
    ----------
    encoder : ResNetEncoder
        The encoder; its stages are run once on the ``meta`` device (shapes only, no
        computation, its weights and statistics untouched).
    size : int
        Side of the dummy input (a multiple of 32).

    Returns
    -------
    list of (str, int, int)
        ``(stage name, channels, downsampling factor)`` from the highest resolution to the
        lowest, excluding the last stage; e.g. for ResNet-34
        ``[("relu", 64, 2), ("layer1", 64, 4), ("layer2", 128, 8), ("layer3", 256, 16)]``.
    """
    shapes = []
    x = torch.empty(1, encoder.in_channels, size, size, device="meta")
    for name in encoder.stage_names():
        stage = getattr(encoder, name)
        tensors = {
            k: torch.empty_like(v, device="meta")
            for k, v in itertools.chain(stage.named_parameters(), stage.named_buffers())
        }
        x = functional_call(stage, tensors, (x,))
        shapes.append((name, x.shape[1], x.shape[-1]))
    taps = [
        (name, channels, size // side)
        for (name, channels, side), (_, _, next_side) in zip(shapes[:-1], shapes[1:], strict=True)
        if side != next_side
    ]
    if shapes[0][2] != shapes[1][2]:  # fastai: the first stage itself changes the size
        taps.insert(0, (shapes[0][0], shapes[0][1], size // shapes[0][2]))
    return taps


class UnetBlock(nn.Module):
    """Upsample, merge the skip features and convolve (fastai ``UnetBlock``).

    Parameters
    ----------
    up_in_c : int
        Channels coming from below.
    x_in_c : int
        Channels of the skip features.
    up_out_c : int
        Channels after the PixelShuffle upsampling.
    nf : int
        Channels of the convolutions (the block's output).
    n_convs : int
        Number of 3x3 convolutions.
    blur : bool
        Blur after the PixelShuffle.
    norm : NormType
        Normalisation of the convolutions.
    extra_bn : bool
        Add BatchNorm even when ``norm`` is not ``"batch"`` (DeOldify, with spectral norm).
    self_attention : bool
        Self-attention after the last convolution.
    """

    def __init__(
        self,
        up_in_c: int,
        x_in_c: int,
        up_out_c: int,
        nf: int,
        *,
        n_convs: int,
        blur: bool,
        norm: NormType,
        extra_bn: bool,
        self_attention: bool,
    ) -> None:
        super().__init__()
        self.shuf = PixelShuffleICNR(up_in_c, up_out_c, blur=blur, norm=norm)
        self.bn = batchnorm_2d(x_in_c)
        self.relu = nn.ReLU()
        ni = up_out_c + x_in_c
        bn = True if extra_bn else None
        self.convs = nn.Sequential(
            *[
                conv_layer(
                    ni if i == 0 else nf,
                    nf,
                    norm=norm,
                    batchnorm=bn,
                    self_attention=self_attention and i == n_convs - 1,
                )
                for i in range(n_convs)
            ]
        )
        self.out_channels = nf

    def forward(self, up_in: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Upsample ``up_in`` to the skip's grid, concatenate and convolve.

        Parameters
        ----------
        up_in : torch.Tensor
            ``(N, up_in_c, h, w)``.
        skip : torch.Tensor
            ``(N, x_in_c, 2h, 2w)``.

        Returns
        -------
        torch.Tensor
            ``(N, nf, 2h, 2w)``.
        """
        up = self.shuf(up_in)
        if up.shape[-2:] != skip.shape[-2:]:
            up = F.interpolate(up, skip.shape[-2:], mode="nearest")
        return self.convs(self.relu(torch.cat([up, self.bn(skip)], dim=1)))


#: Decoder width unit: a "wide" block has ``WIDE_BASE * nf_factor`` channels, a "deep" block
#: at 1/2 resolution ``DEEP_BASE * nf_factor`` (doubling at each coarser level).
WIDE_BASE = 64
DEEP_BASE = 32
#: Cap on the hidden width of the middle convolutions (fastai uses twice the encoder's
#: channels, which is 4096 for ResNet-50/101).
MIDDLE_MAX_WIDTH = 1024


def block_widths(
    preset: Preset, nf_factor: float, up_in_c: int, level: int, final: bool
) -> tuple[int, int]:
    """Channels of one decoder block for a preset.

    Parameters
    ----------
    preset : Preset
        ``"wide"``: constant width ``up_out = nf = 64 * nf_factor``, halved in the final
        block (DeOldify's ``UnetBlockWide`` layout). ``"deep"``: ``up_out = up_in_c // 2``
        (fastai's ``UnetBlock``) and ``nf = 32 * nf_factor * 2**level``: narrow near full
        resolution, doubling at every coarser level, like a classic U-Net.
    nf_factor : float
        Width multiplier.
    up_in_c : int
        Channels coming from below.
    level : int
        Block output resolution is ``1 / 2**(level + 1)`` (0 for the final block).
    final : bool
        Whether this is the last (highest resolution) block.

    Returns
    -------
    tuple of int
        ``(up_out_c, nf)``.
    """
    if Preset(preset) is Preset.WIDE:
        width = max(int(WIDE_BASE * nf_factor) // (2 if final else 1), 1)
        return width, width
    return max(up_in_c // 2, 1), max(int(DEEP_BASE * nf_factor * 2**level), 1)


class DynamicUnet(nn.Module):
    """U-Net decoder built around a ResNet encoder (fastai ``DynamicUnet`` style).

    Parameters
    ----------
    encoder : ResNetEncoder
        The encoder (its ``in_channels`` is the number of input frames).
    preset : Preset
        Decoder layout, see :func:`block_widths`.
    nf_factor : float
        Width multiplier.
    n_convs : int
        Convolutions per decoder block.
    self_attention : bool
        Add self-attention to one decoder block.
    attention_block : int
        Index of that block (negative counts from the last).
    norm : NormType
        Normalisation of the decoder convolutions.
    blur : bool
        Blur after every PixelShuffle.
    y_range : tuple of float or None
        Output range (SigmoidRange), None for linear; with ``residual`` a clamp applied
        outside training only.
    residual : bool
        Output = the input's centre channel + the head's correction (head starts at 0).
    """

    def __init__(
        self,
        encoder: ResNetEncoder,
        *,
        preset: Preset = Preset.WIDE,
        nf_factor: float = 2.0,
        n_convs: int = 1,
        self_attention: bool = True,
        attention_block: int = -3,
        norm: NormType = NormType.BATCH,
        blur: bool = True,
        y_range: tuple[float, float] | None = (-0.2, 1.2),
        residual: bool = False,
    ) -> None:
        super().__init__()
        norm = NormType(norm)
        extra_bn = norm is NormType.SPECTRAL
        self.encoder = encoder
        taps = encoder_taps(encoder)
        self.tap_names = [name for name, _, _ in reversed(taps)]
        ni = encoder.out_channels
        self.bn = batchnorm_2d(ni)
        self.relu = nn.ReLU()
        bn = True if extra_bn else None
        hidden = min(2 * ni, MIDDLE_MAX_WIDTH)
        self.middle = nn.Sequential(
            conv_layer(ni, hidden, norm=norm, batchnorm=bn),
            conv_layer(hidden, ni, norm=norm, batchnorm=bn),
        )
        n_blocks = len(taps)
        attention_at = attention_block % n_blocks if self_attention else None
        blocks = []
        up_in = ni
        for i, (_, x_in, _) in enumerate(reversed(taps)):
            final = i == n_blocks - 1
            up_out, nf = block_widths(preset, nf_factor, up_in, n_blocks - 1 - i, final)
            blocks.append(
                UnetBlock(
                    up_in,
                    x_in,
                    up_out,
                    nf,
                    n_convs=n_convs,
                    blur=blur,
                    norm=norm,
                    extra_bn=extra_bn,
                    self_attention=i == attention_at,
                )
            )
            up_in = nf
        self.blocks = nn.ModuleList(blocks)
        first_factor = taps[0][2]
        if first_factor not in (1, 2):
            raise ValueError(f"encoder's first tap is at 1/{first_factor} resolution; need 1 or 2")
        self.final_shuf = (
            PixelShuffleICNR(up_in, blur=blur, norm=norm) if first_factor == 2 else nn.Identity()
        )
        ni = up_in + encoder.in_channels
        self.res = ResBlock(ni, norm=norm)
        head = init_conv(nn.Conv2d(ni, 1, kernel_size=1, bias=True))
        self.residual = residual
        self.y_range = y_range
        if residual:  # start from the interpolated input: the correction is 0 (and stays
            nn.init.zeros_(head.weight)  # unnormalised: spectral/weight norm of 0 is NaN)
            nn.init.zeros_(head.bias)
            self.head = head
        else:
            self.head = apply_norm(head, norm)
        use_sigmoid = y_range is not None and not residual
        self.out_act: nn.Module = SigmoidRange(*y_range) if use_sigmoid else nn.Identity()
        self.attention_block = attention_at

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the U-Net.

        Parameters
        ----------
        x : torch.Tensor
            ``(N, in_channels, H, W)`` in normalised units, ``H`` and ``W`` multiples of 32.

        Returns
        -------
        torch.Tensor
            ``(N, 1, H, W)``.
        """
        feats = {}
        y = (x - IMAGENET_GREY_MEAN) / IMAGENET_GREY_STD
        taps = set(self.tap_names)
        for name in self.encoder.stage_names():
            y = getattr(self.encoder, name)(y)
            if name in taps:
                feats[name] = y
        y = self.middle(self.relu(self.bn(y)))
        for name, block in zip(self.tap_names, self.blocks, strict=True):
            y = block(y, feats.pop(name))
        y = self.final_shuf(y)
        if y.shape[-2:] != x.shape[-2:]:
            y = F.interpolate(y, x.shape[-2:], mode="nearest")
        y = self.res(torch.cat([y, x], dim=1))
        if not self.residual:
            return self.out_act(self.head(y))
        centre = x.shape[1] // 2
        out = x[:, centre : centre + 1] + self.head(y)
        if self.y_range is not None and not self.training:
            out = out.clamp(*self.y_range)
        return out


def _reflect_pad_axis(x: torch.Tensor, before: int, after: int, axis: int) -> torch.Tensor:
    """Reflect-pad one of the last two axes, repeating the reflection if needed."""
    while before or after:
        size = x.shape[axis]
        if size == 1:  # nothing to reflect: replicate
            pads = [0, 0, before, after] if axis == -2 else [before, after, 0, 0]
            return F.pad(x, pads, mode="replicate")
        b, a = min(before, size - 1), min(after, size - 1)
        x = F.pad(x, [0, 0, b, a] if axis == -2 else [b, a, 0, 0], mode="reflect")
        before, after = before - b, after - a
    return x


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad the last two axes up to a multiple, half before and half after.

    Padding wider than the image repeats the reflection; an axis of length 1 is
    replicated instead.

    Parameters
    ----------
    x : torch.Tensor
        ``(N, C, H, W)``.
    multiple : int
        Target multiple.

    Returns
    -------
    padded : torch.Tensor
        ``(N, C, H', W')`` with ``H'`` and ``W'`` multiples of ``multiple``.
    offset : tuple of int
        ``(top, left)``: where the original starts in the padded tensor.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    top, left = ph // 2, pw // 2
    x = _reflect_pad_axis(x, left, pw - left, -1)
    x = _reflect_pad_axis(x, top, ph - top, -2)
    return x, (top, left)


class SuperResolutionNet(nn.Module):
    """The whole inference network: LR frames in, one HR image out.

    Input ``(N, n_frames, h, w)`` normalised low-resolution frames (for 2.5D, the
    neighbouring z-slices or time points centred on the one to predict) are upsampled
    bilinearly by ``scale`` to the target grid (PSSR), reflect-padded to a multiple of
    :attr:`multiple`, passed through the U-Net (whose cross connection sees all the
    upsampled frames) and cropped back.

    Parameters
    ----------
    unet : DynamicUnet
        The U-Net; its encoder takes ``n_frames`` channels.
    scale : int
        Upsampling factor.
    config : GeneratorConfig or None
        The configuration the network was built from (kept for saving).

    Attributes
    ----------
    scale : int
        Upsampling factor.
    n_frames : int
        Input frames.
    multiple : int
        The U-Net needs sides that are multiples of this (32); inputs are padded.
    """

    multiple = 32

    def __init__(
        self, unet: DynamicUnet, *, scale: int, config: GeneratorConfig | None = None
    ) -> None:
        super().__init__()
        self.unet = unet
        self.scale = int(scale)
        self.n_frames = unet.encoder.in_channels
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Super-resolve.

        Parameters
        ----------
        x : torch.Tensor
            ``(N, n_frames, h, w)`` low-resolution, normalised.

        Returns
        -------
        torch.Tensor
            ``(N, 1, h * scale, w * scale)``.
        """
        if x.ndim != 4 or x.shape[1] != self.n_frames:
            raise InputError(
                f"network input: expected shape (N, {self.n_frames}, h, w), got {tuple(x.shape)}"
            )
        if self.scale > 1:
            x = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        h, w = x.shape[-2:]
        padded, (top, left) = pad_to_multiple(x, self.multiple)
        y = self.unet(padded)
        return y[..., top : top + h, left : left + w]

    @property
    def encoder(self) -> ResNetEncoder:
        """The ResNet encoder."""
        return self.unet.encoder

    def freeze_encoder(self) -> None:
        """Stop training the encoder, except its BatchNorm layers (fastai ``freeze``).

        Every encoder parameter gets ``requires_grad = False`` except the BatchNorm
        weights and biases, which stay trainable (fastai's ``train_bn``); the decoder is
        untouched.
        """
        for module in self.encoder.modules():
            trainable = isinstance(module, nn.modules.batchnorm._BatchNorm)
            for p in module.parameters(recurse=False):
                p.requires_grad_(trainable)

    def unfreeze_encoder(self) -> None:
        """Train every encoder parameter again."""
        for p in self.encoder.parameters():
            p.requires_grad_(True)

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Parameters split into encoder and decoder, for discriminative learning rates.

        Returns
        -------
        list of dict
            ``[{"name": "encoder", "params": [...]}, {"name": "decoder", "params": [...]}]``,
            usable as optimizer parameter groups (add an ``"lr"`` to each). Frozen
            parameters are included; optimizers skip those without gradients.
        """
        encoder_ids = {id(p) for p in self.encoder.parameters()}
        encoder = list(self.encoder.parameters())
        decoder = [p for p in self.parameters() if id(p) not in encoder_ids]
        return [{"name": "encoder", "params": encoder}, {"name": "decoder", "params": decoder}]
