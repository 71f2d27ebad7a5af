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

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from decrappify.config.model import GeneratorConfig, NormType, Preset, TailType
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


def encoder_taps(encoder: ResNetEncoder) -> list[tuple[str, int, int]]:
    """List the encoder stages after which the resolution changes (fastai ``_get_sfs_idxs``).

    Parameters
    ----------
    encoder : ResNetEncoder
        The encoder.

    Returns
    -------
    list of (str, int, int)
        ``(stage name, channels, downsampling factor)`` from the highest resolution to the
        lowest, excluding the last stage; e.g. for ResNet-34
        ``[("relu", 64, 2), ("layer1", 64, 4), ("layer2", 128, 8), ("layer3", 256, 16)]``
        (``conv1`` halves the resolution, ``maxpool`` and every layer after ``layer1``
        halve it again). Read off the architecture, not found by a dummy forward pass, so
        that building a network costs no computation.
    """
    expansion = encoder.out_channels // (64 * 2 ** (encoder.depth - 1))
    taps = [("relu", 64, 2)]
    taps += [(f"layer{i + 1}", 64 * 2**i * expansion, 2 ** (i + 2)) for i in range(encoder.depth)]
    return taps[:-1]


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
        Output = the input's centre channel (bilinearly upsampled when ``scale > 1``) +
        the head's correction (head starts at 0).
    scale : int
        Output grid / input grid. 1: the U-Net returns an image on its input grid (the
        upsample-first ``"hr"`` layout). More: the decoder continues past the input
        resolution with an :class:`UpsampleTail` (the ``"lr"`` layout).
    tail_width : int
        Channels of the tail's output-grid stage, doubled per coarser stage.
    tail : TailType
        ``"conv"``: every upsampling stage ends with a 3x3 convolution, the last one on
        the output grid, where the upsampled input is concatenated. ``"shuffle"``: the
        head makes the last stage's sub-pixels directly (3x3 convolution to
        ``factor**2`` channels + PixelShuffle, ESPCN), so no feature map is ever
        computed on the output grid.
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
        scale: int = 1,
        tail_width: int = 16,
        tail: TailType = TailType.CONV,
    ) -> None:
        super().__init__()
        norm = NormType(norm)
        self.scale = int(scale)
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
        factors = prime_factors(self.scale)
        # "shuffle" tail: the head's convolution makes the last factor's sub-pixels itself
        head_factor = factors.pop() if factors and TailType(tail) is TailType.SHUFFLE else 1
        if self.scale > 1:
            self.tail = UpsampleTail(
                ni,
                factors,
                encoder.in_channels if head_factor == 1 else 0,
                width=tail_width * head_factor,
                blur=blur,
                norm=norm,
            )
            ni = self.tail.out_channels
        ks = 1 if head_factor == 1 else 3
        head = init_conv(nn.Conv2d(ni, head_factor**2, kernel_size=ks, padding=ks // 2))
        self.head_shuffle = nn.PixelShuffle(head_factor) if head_factor > 1 else nn.Identity()
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

    def forward(self, x: torch.Tensor, x_up: torch.Tensor | None = None) -> torch.Tensor:
        """Run the U-Net.

        Parameters
        ----------
        x : torch.Tensor
            ``(N, in_channels, H, W)`` in normalised units, ``H`` and ``W`` multiples of 32.
        x_up : torch.Tensor or None
            With ``scale > 1``: ``x`` upsampled to the output grid (the cross connection
            and residual base); None upsamples ``x`` bilinearly here.

        Returns
        -------
        torch.Tensor
            ``(N, 1, H * scale, W * scale)``.
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
        if self.scale > 1:
            if x_up is None:
                x_up = F.interpolate(
                    x, scale_factor=self.scale, mode="bilinear", align_corners=False
                )
            x = x_up
            y = self.tail(y, x)
        y = self.head_shuffle(self.head(y))
        if not self.residual:
            return self.out_act(y)
        centre = x.shape[1] // 2
        out = x[:, centre : centre + 1] + y
        if self.y_range is not None and not self.training:
            out = out.clamp(*self.y_range)
        return out


def prime_factors(n: int) -> list[int]:
    """Prime factors of ``n`` in increasing order (``12 -> [2, 2, 3]``, ``1 -> []``)."""
    factors, p = [], 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors


class UpsampleTail(nn.Module):
    """The decoder's continuation past the input grid.

    One PixelShuffle-ICNR stage per factor (blur, then a 3x3 convolution), the upsampled
    input frames concatenated before the last convolution (cross connection on the output
    grid).

    Parameters
    ----------
    ni : int
        Channels on the input grid.
    factors : list of int
        Upsampling factor of each stage (may be empty).
    n_frames : int
        Input frames concatenated before the last convolution (0: none).
    width : int
        Channels of the last stage; each coarser stage has twice as many.
    blur : bool
        Blur after each PixelShuffle.
    norm : NormType
        Normalisation of the convolutions.
    """

    def __init__(
        self,
        ni: int,
        factors: list[int],
        n_frames: int,
        *,
        width: int,
        blur: bool,
        norm: NormType,
    ) -> None:
        super().__init__()
        widths = [width * 2 ** (len(factors) - 1 - i) for i in range(len(factors))]
        ups, convs = [], []
        for i, (factor, nf) in enumerate(zip(factors, widths, strict=True)):
            ups.append(PixelShuffleICNR(ni, nf, scale=factor, blur=blur, norm=norm))
            extra = n_frames if i == len(factors) - 1 else 0
            convs.append(conv_layer(nf + extra, nf, norm=norm))
            ni = nf
        self.ups = nn.ModuleList(ups)
        self.convs = nn.ModuleList(convs)
        self.cross = n_frames > 0
        self.out_channels = ni

    def forward(self, y: torch.Tensor, x_up: torch.Tensor) -> torch.Tensor:
        """Upsample features ``y`` (``x_up``: the input frames on the output grid)."""
        last = len(self.ups) - 1
        for i, (up, conv) in enumerate(zip(self.ups, self.convs, strict=True)):
            y = up(y)
            y = conv(torch.cat([y, x_up], dim=1) if i == last and self.cross else y)
        return y


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
    neighbouring z-slices or time points centred on the one to predict). Two layouts
    (``GeneratorConfig.grid``):

    - ``"lr"``: the U-Net works on the LR grid (reflect-padded to a multiple of 32) and
      its :class:`UpsampleTail` continues to the HR grid (``unet.scale == scale``);
    - ``"hr"`` (PSSR): the frames are first upsampled bilinearly by ``scale``, padded to
      a multiple of 32 and passed through a U-Net that keeps its input grid
      (``unet.scale == 1``): 16x the computation at 4x.

    Either way the output is cropped back to ``(h * scale, w * scale)``.

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
        HR sides that need no padding are multiples of this (32 x the U-Net's own
        scale); tiles are chosen so.
    """

    def __init__(
        self, unet: DynamicUnet, *, scale: int, config: GeneratorConfig | None = None
    ) -> None:
        super().__init__()
        if unet.scale not in (1, int(scale)):
            raise ValueError(f"U-Net upsamples by {unet.scale}, network by {scale}")
        self.unet = unet
        self.scale = int(scale)
        self.n_frames = unet.encoder.in_channels
        self.multiple = unet.encoder.multiple * unet.scale
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
        x_up = None
        if self.scale > 1:
            x_up = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        if self.unet.scale == 1:  # "hr": the U-Net computes on the upsampled frames
            x, x_up = (x_up, None) if x_up is not None else (x, None)
        h, w = x.shape[-2:]
        padded, (top, left) = pad_to_multiple(x, self.unet.encoder.multiple)
        s = self.unet.scale
        if x_up is not None:  # "lr": the exact bilinear image, padded like the input
            hp, wp = padded.shape[-2:]
            x_up = _reflect_pad_axis(x_up, left * s, (wp - w - left) * s, -1)
            x_up = _reflect_pad_axis(x_up, top * s, (hp - h - top) * s, -2)
        y = self.unet(padded, x_up)
        return y[..., top * s : (top + h) * s, left * s : (left + w) * s]

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
