"""A U-Net that computes at the input's full resolution, without BatchNorm (plain torch).

:class:`NafUnet` is the second generator family (``generator.arch: naf``). Unlike the
ResNet-encoder U-Net (:mod:`.unet`), whose stem halves the input twice before any skip
connection, its first level works on the low-resolution input grid itself, so most of its
computation sees every input pixel:

1. a 3x3 convolution from the input frames to ``width`` channels;
2. an encoder of ``len(blocks)`` levels; level ``i`` runs ``blocks[i]`` blocks at width
   ``width * 2**i`` and ends with a 2x2 stride-2 convolution to twice the width;
3. ``middle_blocks`` blocks at the deepest level;
4. a decoder mirroring the encoder: 1x1 convolution + PixelShuffle(2) up, the skip
   features added, ``decoder_blocks[i]`` blocks;
5. an upsampling tail to the output grid: one ICNR-initialised 3x3 convolution +
   PixelShuffle (+ blur) per prime factor of ``scale`` but the last, and a 3x3
   convolution to ``factor**2`` sub-pixels + PixelShuffle for the last (ESPCN), zero at
   initialisation;
6. a global skip: the output is the bilinear interpolation of the centre input frame
   plus the tail's correction, so training starts from bilinear interpolation.

Blocks (``block``):

- ``"naf"``: NAFNet's block (Chen et al. 2022) without its global channel attention:
  per-pixel LayerNorm over channels, 1x1 expansion, 3x3 depthwise convolution,
  SimpleGate (one half of the channels times the other), 1x1 projection; then a gated
  feed-forward part of the same form without the depthwise convolution. Both branches
  are scaled by learnt per-channel factors that start at zero, so every block starts as
  the identity. NAFNet's channel attention pools over the whole image, which would make
  a tile's output depend on the whole tile (no finite receptive field, seams in tiled
  prediction); it is left out.
- ``"res"``: EDSR's residual block: 3x3 convolution, ReLU, 3x3 convolution, added to the
  input (the second convolution starts at zero).

Every operation is local, so the receptive field is finite and tiled prediction equals
whole-image prediction once the tiles' context covers it. The module imports nothing but
torch and takes plain arguments (it can be copied into a bioimage.io package as it is)
and compiles with :func:`torch.jit.script`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BLOCKS", "NafUnet", "prime_factors"]

#: Block kinds :class:`NafUnet` accepts.
BLOCKS = ("naf", "res")


def prime_factors(n: int) -> list[int]:
    """Prime factors of ``n`` in increasing order (``12 -> [2, 2, 3]``, ``1 -> []``)."""
    factors, p = [], 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors


def _channels_last(x: torch.Tensor) -> bool:
    """Whether ``x`` is a channels-last batch (prediction's layout, and training's on CUDA).

    On such a batch the channels of a pixel are contiguous: the blocks' layer norm is one
    fused kernel there and the layer scales one pass each (the same arithmetic; training
    on the CPU keeps NCHW and the separate operations).
    """
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)


def _add_scaled(x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x + y * scale``: one pass (``addcmul``) on a channels-last batch, two otherwise."""
    return torch.addcmul(x, y, scale) if _channels_last(x) else x + y * scale


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of every pixel (NAFNet's ``LayerNorm2d``)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``(N, C, H, W)`` over ``C`` at every pixel, then scale and shift."""
        if _channels_last(x):  # one fused kernel over the contiguous channels
            nhwc = x.permute(0, 2, 3, 1)
            y = F.layer_norm(nhwc, (x.shape[1],), self.weight, self.bias, self.eps)
            return y.permute(0, 3, 1, 2)
        mean = x.mean(1, keepdim=True)
        centred = x - mean
        var = centred.pow(2).mean(1, keepdim=True)
        y = centred * torch.rsqrt(var + self.eps)
        return y * self.weight[:, None, None] + self.bias[:, None, None]


class SimpleGate(nn.Module):
    """Split the channels in two halves and multiply them (NAFNet)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 2C, H, W) -> (N, C, H, W)``."""
        a, b = x.chunk(2, dim=1)
        return a * b


class NafBlock(nn.Module):
    """NAFNet's block without channel attention (see the module docstring).

    Parameters
    ----------
    channels : int
        Input and output channels.
    expand : int
        Channel expansion of both branches before the SimpleGate halves them.
    """

    def __init__(self, channels: int, expand: int = 2) -> None:
        super().__init__()
        hidden = channels * expand
        self.norm1 = LayerNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, hidden, 1)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.conv3 = nn.Conv2d(hidden // 2, channels, 1)
        self.norm2 = LayerNorm2d(channels)
        self.conv4 = nn.Conv2d(channels, hidden, 1)
        self.conv5 = nn.Conv2d(hidden // 2, channels, 1)
        self.gate = SimpleGate()
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial branch, then feed-forward branch, each added to its input."""
        y = self.conv3(self.gate(self.conv2(self.conv1(self.norm1(x)))))
        x = _add_scaled(x, y, self.beta)
        y = self.conv5(self.gate(self.conv4(self.norm2(x))))
        return _add_scaled(x, y, self.gamma)


class ResBlock(nn.Module):
    """EDSR's residual block: conv 3x3, ReLU, conv 3x3 (zero at start), plus the input.

    Parameters
    ----------
    channels : int
        Input and output channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.kaiming_normal_(self.conv1.weight, nonlinearity="relu")
        nn.init.zeros_(self.conv1.bias)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x + conv2(relu(conv1(x)))``."""
        return x + self.conv2(F.relu(self.conv1(x)))


def _blocks(kind: str, channels: int, count: int, expand: int) -> nn.Sequential:
    if kind == "naf":
        return nn.Sequential(*[NafBlock(channels, expand) for _ in range(count)])
    if kind == "res":
        return nn.Sequential(*[ResBlock(channels) for _ in range(count)])
    raise ValueError(f"block must be one of {BLOCKS} (got {kind!r})")


class EncoderLevel(nn.Module):
    """Blocks at one resolution, then a 2x2 stride-2 convolution to twice the channels."""

    def __init__(self, kind: str, channels: int, count: int, expand: int) -> None:
        super().__init__()
        self.blocks = _blocks(kind, channels, count, expand)
        self.down = nn.Conv2d(channels, 2 * channels, 2, stride=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the level's features (the skip) and their downsampled copy."""
        skip = self.blocks(x)
        return skip, self.down(skip)


class DecoderLevel(nn.Module):
    """1x1 convolution + PixelShuffle(2) to half the channels, add the skip, blocks."""

    def __init__(self, kind: str, channels: int, count: int, expand: int) -> None:
        super().__init__()
        self.up = nn.Sequential(
            nn.Conv2d(2 * channels, 4 * channels, 1, bias=False), nn.PixelShuffle(2)
        )
        self.blocks = _blocks(kind, channels, count, expand)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Upsample ``x`` (``2C`` channels at half resolution) onto ``skip`` and refine."""
        return self.blocks(self.up(x) + skip)


def icnr_(weight: torch.Tensor, factor: int) -> None:
    """ICNR initialisation (Aitken et al. 2017) of a convolution feeding PixelShuffle.

    One He-initialised kernel per output channel of the shuffle, repeated over its
    ``factor**2`` sub-pixels, so the layer starts as convolution + nearest upsampling
    (no checkerboard).
    """
    out, ni, kh, kw = weight.shape
    sub = torch.empty(out // factor**2, ni, kh, kw)
    nn.init.kaiming_normal_(sub, nonlinearity="relu")
    with torch.no_grad():
        weight.copy_(sub.repeat_interleave(factor**2, dim=0))


class Blur(nn.Module):
    """Replication pad (top/left by 1) + 2x2 mean with stride 1 (Sugawara et al. 2018)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Smooth the checkerboard a PixelShuffle can leave, keeping the shape."""
        return F.avg_pool2d(F.pad(x, [1, 0, 1, 0], mode="replicate"), 2, stride=1)


class ShuffleTail(nn.Module):
    """From features on the input grid to one channel on the output grid.

    Parameters
    ----------
    channels : int
        Feature channels on the input grid.
    scale : int
        Upsampling factor (>= 1).
    width : int
        Channels of the stage before the last; each coarser stage has twice as many.
    blur : bool
        Blur after every intermediate PixelShuffle.
    """

    def __init__(self, channels: int, scale: int, width: int, blur: bool) -> None:
        super().__init__()
        factors = prime_factors(scale)
        last = factors.pop() if factors else 1
        stages: list[nn.Module] = []
        ni = channels
        for i, factor in enumerate(factors):
            nf = width * 2 ** (len(factors) - 1 - i)
            conv = nn.Conv2d(ni, nf * factor**2, 3, padding=1)
            icnr_(conv.weight, factor)
            nn.init.zeros_(conv.bias)
            stages += [conv, nn.ReLU(), nn.PixelShuffle(factor)]
            if blur:
                stages.append(Blur())
            ni = nf
        head = nn.Conv2d(ni, last**2, 3, padding=1)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        stages += [head, nn.PixelShuffle(last)]
        self.stages = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, channels, h, w) -> (N, 1, h * scale, w * scale)``."""
        return self.stages(x)


def _reflect_pad(x: torch.Tensor, before: int, after: int, dim: int) -> torch.Tensor:
    """Reflect-pad the last (``dim`` -1) or second-last (-2) axis, repeating if needed."""
    while before > 0 or after > 0:
        size = x.shape[dim]
        if size == 1:
            pads = [0, 0, before, after] if dim == -2 else [before, after, 0, 0]
            return F.pad(x, pads, mode="replicate")
        b, a = min(before, size - 1), min(after, size - 1)
        x = F.pad(x, [0, 0, b, a] if dim == -2 else [b, a, 0, 0], mode="reflect")
        before, after = before - b, after - a
    return x


class NafUnet(nn.Module):
    """Super-resolving U-Net on the input grid: LR frames in, one HR image out.

    Parameters
    ----------
    n_frames : int
        Input frames (odd); the network predicts the centre one.
    scale : int
        Output grid / input grid.
    width : int
        Channels of the first (full-resolution) level; doubled at every level below.
    blocks : list of int
        Blocks of each encoder level, from the full-resolution one down; its length is
        the number of 2x downsamplings.
    middle_blocks : int
        Blocks at the deepest level.
    decoder_blocks : list of int or None
        Blocks of each decoder level in the same order as ``blocks`` (None: the same).
    block : {"naf", "res"}
        Block kind (module docstring).
    expand : int
        Channel expansion inside ``"naf"`` blocks.
    tail_width : int
        Channels of the upsampling tail's last intermediate stage.
    blur : bool
        Blur after the tail's intermediate PixelShuffles.
    clamp : tuple of float or None
        ``(low, high)``: outside training the output is clamped to this range
        (normalised units); None leaves it unbounded.

    Attributes
    ----------
    scale, n_frames : int
        As given.
    multiple : int
        Output sides that need no padding are multiples of this
        (``scale * 2**len(blocks)``).
    """

    def __init__(
        self,
        n_frames: int = 1,
        scale: int = 4,
        *,
        width: int = 32,
        blocks: list[int] | None = None,
        middle_blocks: int = 4,
        decoder_blocks: list[int] | None = None,
        block: str = "naf",
        expand: int = 2,
        tail_width: int = 16,
        blur: bool = True,
        clamp: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        blocks = [2, 2, 2] if blocks is None else list(blocks)
        decoder_blocks = list(blocks) if decoder_blocks is None else list(decoder_blocks)
        if len(decoder_blocks) != len(blocks):
            raise ValueError(
                f"decoder_blocks needs one count per level ({len(blocks)}), got {decoder_blocks}"
            )
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS} (got {block!r})")
        self.scale = int(scale)
        self.n_frames = int(n_frames)
        self.levels = len(blocks)
        self.pad_multiple = 2**self.levels
        self.multiple = self.scale * self.pad_multiple
        self.clamp_low = -math.inf if clamp is None else float(clamp[0])
        self.clamp_high = math.inf if clamp is None else float(clamp[1])
        self.intro = nn.Conv2d(n_frames, width, 3, padding=1)
        widths = [width * 2**i for i in range(self.levels)]
        self.encoder = nn.ModuleList(
            [EncoderLevel(block, c, n, expand) for c, n in zip(widths, blocks, strict=True)]
        )
        self.middle = _blocks(block, width * 2**self.levels, middle_blocks, expand)
        self.decoder = nn.ModuleList(
            [
                DecoderLevel(block, c, n, expand)
                for c, n in reversed(list(zip(widths, decoder_blocks, strict=True)))
            ]
        )
        self.tail = ShuffleTail(width, self.scale, tail_width, blur)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Super-resolve ``(N, n_frames, h, w)`` normalised frames to ``(N, 1, h*s, w*s)``.

        The frames are reflect-padded to a multiple of ``2**levels`` and the output
        cropped back.
        """
        if x.dim() != 4 or x.shape[1] != self.n_frames:
            raise ValueError(
                "network input: expected shape (N, "
                + str(self.n_frames)
                + ", h, w), got "
                + str(list(x.shape))
            )
        h, w = x.shape[-2], x.shape[-1]
        m = self.pad_multiple
        ph, pw = (m - h % m) % m, (m - w % m) % m
        top, left = ph // 2, pw // 2
        padded = _reflect_pad(_reflect_pad(x, left, pw - left, -1), top, ph - top, -2)
        y = self.intro(padded)
        skips: list[torch.Tensor] = []
        for level in self.encoder:
            skip, y = level(y)
            skips.append(skip)
        y = self.middle(y)
        for level in self.decoder:
            y = level(y, skips.pop())
        s = self.scale
        y = self.tail(y)[..., top * s : (top + h) * s, left * s : (left + w) * s]
        centre = self.n_frames // 2
        base = x[:, centre : centre + 1]
        if s > 1:
            base = F.interpolate(base, scale_factor=float(s), mode="bilinear", align_corners=False)
        out = base + y
        if not self.training:
            out = out.clamp(self.clamp_low, self.clamp_high)
        return out
