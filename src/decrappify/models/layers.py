"""Building blocks of the generator and the critic, after fastai's ``layers.py``.

- :func:`conv_layer`: convolution (optionally spectral- or weight-normalised), activation,
  optional BatchNorm and self-attention, in fastai v1 order (conv, ReLU, BN).
- :func:`icnr_init` and :class:`PixelShuffleICNR`: sub-pixel upsampling initialised so
  that it starts as nearest-neighbour upsampling (no checkerboard), with optional blur.
- :class:`SelfAttention`: SAGAN self-attention with ``gamma`` initialised to 0.
- :class:`ResBlock`: two convolutions plus identity shortcut.
- :class:`SigmoidRange`: sigmoid rescaled to ``(low, high)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

from decrappify.config.model import NormType


def init_conv(conv: nn.Conv2d, *, leaky: float | None = None) -> nn.Conv2d:
    """He (Kaiming normal) initialisation of a convolution, bias set to 0.

    Parameters
    ----------
    conv : torch.nn.Conv2d
        The convolution (modified in place).
    leaky : float or None
        Negative slope of the LeakyReLU that follows, or None for ReLU.

    Returns
    -------
    torch.nn.Conv2d
        The same convolution.
    """
    if leaky is None:
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    else:
        nn.init.kaiming_normal_(conv.weight, a=leaky, nonlinearity="leaky_relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def apply_norm(conv: nn.Conv2d, norm: NormType | str | None) -> nn.Conv2d:
    """Wrap a convolution's weight in spectral or weight normalisation.

    Uses :mod:`torch.nn.utils.parametrizations`, so the state dict holds
    ``parametrizations.weight.original`` (+ ``0._u`` / ``0._v`` for spectral norm, or
    ``original0`` / ``original1`` for weight norm); the current weight is kept as the
    starting point.

    Parameters
    ----------
    conv : torch.nn.Conv2d
        The convolution, already initialised.
    norm : NormType, str or None
        ``"spectral"`` or ``"weight"``; anything else leaves the convolution unchanged.

    Returns
    -------
    torch.nn.Conv2d
        The (parametrised) convolution.
    """
    norm = NormType(norm) if norm is not None else None
    if norm is NormType.SPECTRAL:
        return parametrizations.spectral_norm(conv)
    if norm is NormType.WEIGHT:
        return parametrizations.weight_norm(conv)
    return conv


def activation(leaky: float | None = None) -> nn.Module:
    """ReLU, or LeakyReLU with slope ``leaky``.

    Parameters
    ----------
    leaky : float or None
        Negative slope, None for a plain ReLU.

    Returns
    -------
    torch.nn.Module
        The activation (not in place, so hooked outputs stay valid).
    """
    return nn.ReLU() if leaky is None else nn.LeakyReLU(leaky)


def batchnorm_2d(channels: int, *, zero: bool = False) -> nn.BatchNorm2d:
    """BatchNorm with fastai's initialisation (bias 1e-3, weight 1, or 0 when ``zero``).

    Parameters
    ----------
    channels : int
        Number of channels.
    zero : bool
        Initialise the scale to 0 (used on the last BN of a residual branch, so the
        block starts as the identity).

    Returns
    -------
    torch.nn.BatchNorm2d
        The layer.
    """
    bn = nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.bias.fill_(1e-3)
        bn.weight.fill_(0.0 if zero else 1.0)
    return bn


def conv_layer(
    ni: int,
    nf: int,
    *,
    ks: int = 3,
    stride: int = 1,
    padding: int | None = None,
    bias: bool | None = None,
    norm: NormType | str | None = NormType.BATCH,
    batchnorm: bool | None = None,
    zero_bn: bool = False,
    use_activ: bool = True,
    leaky: float | None = None,
    self_attention: bool = False,
    attention_pool: int = 1,
) -> nn.Sequential:
    """Convolution, activation, BatchNorm and self-attention, as fastai v1's ``conv_layer``.

    Parameters
    ----------
    ni, nf : int
        Input and output channels.
    ks : int
        Kernel size.
    stride : int
        Stride.
    padding : int or None
        Zero padding; None for ``(ks - 1) // 2``.
    bias : bool or None
        Convolution bias; None for "no bias when followed by BatchNorm".
    norm : NormType, str or None
        ``"batch"``: BatchNorm after the activation; ``"spectral"`` / ``"weight"``:
        normalise the convolution's weight; None: nothing.
    batchnorm : bool or None
        Force the BatchNorm on or off (DeOldify adds one to spectral convolutions);
        None follows ``norm``.
    zero_bn : bool
        Initialise that BatchNorm's scale to 0.
    use_activ : bool
        Add the activation.
    leaky : float or None
        LeakyReLU slope (None for ReLU).
    self_attention : bool
        Append a :class:`SelfAttention` layer.
    attention_pool : int
        Its key/value pooling factor.

    Returns
    -------
    torch.nn.Sequential
        ``[conv, act?, bn?, attention?]``; the convolution is always at index 0.
    """
    norm = NormType(norm) if norm is not None else None
    if padding is None:
        padding = (ks - 1) // 2
    use_bn = (norm is NormType.BATCH) if batchnorm is None else batchnorm
    if bias is None:
        bias = not use_bn
    conv = init_conv(
        nn.Conv2d(ni, nf, kernel_size=ks, stride=stride, padding=padding, bias=bias), leaky=leaky
    )
    layers: list[nn.Module] = [apply_norm(conv, norm)]
    if use_activ:
        layers.append(activation(leaky))
    if use_bn:
        layers.append(batchnorm_2d(nf, zero=zero_bn))
    if self_attention:
        layers.append(SelfAttention(nf, pool=attention_pool))
    return nn.Sequential(*layers)


def icnr_init(
    weight: torch.Tensor,
    scale: int = 2,
    init: Callable[[torch.Tensor], torch.Tensor] = nn.init.kaiming_normal_,
) -> torch.Tensor:
    """ICNR initialisation of a convolution that feeds ``PixelShuffle(scale)``.

    Aitken et al. 2017, "Checkerboard artifact free sub-pixel convolution": a kernel is
    drawn for each of the ``out / scale**2`` final channels and copied to the
    ``scale**2`` channels that :class:`torch.nn.PixelShuffle` spreads over one
    ``scale x scale`` block, so the layer starts as convolution + nearest upsampling.

    Parameters
    ----------
    weight : torch.Tensor
        Convolution weight ``(out, in, kh, kw)`` with ``out`` divisible by ``scale**2``
        (filled in place).
    scale : int
        PixelShuffle factor.
    init : callable
        Initialiser of the sub-kernel.

    Returns
    -------
    torch.Tensor
        ``weight``.
    """
    out_channels, in_channels, kh, kw = weight.shape
    groups = scale * scale
    if out_channels % groups:
        raise ValueError(f"ICNR needs out channels divisible by {groups}, got {out_channels}")
    sub = init(torch.empty(out_channels // groups, in_channels, kh, kw))
    with torch.no_grad():
        weight.copy_(sub.repeat_interleave(groups, dim=0))
    return weight


class PixelShuffleICNR(nn.Module):
    """Upsample by ``scale`` from ``ni`` to ``nf`` channels with a 1x1 conv + PixelShuffle.

    Parameters
    ----------
    ni : int
        Input channels.
    nf : int or None
        Output channels (default ``ni``).
    scale : int
        Upsampling factor.
    blur : bool
        Replication pad (left/top by 1) + 2x2 average pooling with stride 1 after the
        shuffle (Sugawara et al. 2018), which removes the remaining checkerboard.
    norm : NormType, str or None
        Normalisation of the 1x1 convolution: ``"spectral"`` uses spectral norm,
        anything else weight norm (fastai's default for this layer).
    leaky : float or None
        LeakyReLU slope (None for ReLU) applied before the shuffle.
    """

    def __init__(
        self,
        ni: int,
        nf: int | None = None,
        *,
        scale: int = 2,
        blur: bool = False,
        norm: NormType | str | None = NormType.WEIGHT,
        leaky: float | None = None,
    ) -> None:
        super().__init__()
        nf = ni if nf is None else nf
        conv = nn.Conv2d(ni, nf * scale * scale, kernel_size=1, bias=True)
        icnr_init(conv.weight, scale)
        nn.init.zeros_(conv.bias)
        conv_norm = NormType.SPECTRAL if norm == NormType.SPECTRAL else NormType.WEIGHT
        self.conv = apply_norm(conv, conv_norm)
        self.act = activation(leaky)
        self.shuf = nn.PixelShuffle(scale)
        self.blur = blur
        self.pad = nn.ReplicationPad2d((1, 0, 1, 0))
        self.pool = nn.AvgPool2d(2, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upsample.

        Parameters
        ----------
        x : torch.Tensor
            ``(N, ni, H, W)``.

        Returns
        -------
        torch.Tensor
            ``(N, nf, scale*H, scale*W)``.
        """
        x = self.shuf(self.act(self.conv(x)))
        return self.pool(self.pad(x)) if self.blur else x


class SelfAttention(nn.Module):
    """SAGAN self-attention over all positions (Zhang et al. 2018), as fastai's layer.

    ``y = gamma * attention(x) + x`` with 1x1 spectral-normalised query/key
    (``channels // 8`` each) and value (``channels``) projections; ``gamma`` starts at 0,
    so the layer is the identity at initialisation. Attention weights are
    ``softmax(q . k / sqrt(d))`` over the key positions, computed once and applied to
    all value channels (one head) with
    :func:`torch.nn.functional.scaled_dot_product_attention`.

    Parameters
    ----------
    channels : int
        Input (and output) channels.
    pool : int
        Max-pool keys and values by this factor (BigGAN's attention): ``pool**2`` times
        fewer key positions, so the attention costs ``pool**2`` times less; 1 attends to
        every position.
    """

    def __init__(self, channels: int, *, pool: int = 1) -> None:
        super().__init__()
        self.channels = channels
        self.key_channels = max(channels // 8, 1)
        self.pool = int(pool)
        self.query = _sn_conv1x1(channels, self.key_channels)
        self.key = _sn_conv1x1(channels, self.key_channels)
        self.value = _sn_conv1x1(channels, channels)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend.

        Parameters
        ----------
        x : torch.Tensor
            ``(N, C, H, W)``.

        Returns
        -------
        torch.Tensor
            Same shape.
        """
        n, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (N, HW, d)
        k, v = self.key(x), self.value(x)
        if self.pool > 1 and min(h, w) >= self.pool:
            k, v = F.max_pool2d(k, self.pool), F.max_pool2d(v, self.pool)
        k = k.flatten(2).transpose(1, 2)  # (N, S, d)
        v = v.flatten(2).transpose(1, 2)  # (N, S, C)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return self.gamma * out.transpose(1, 2).reshape(n, c, h, w) + x


def _sn_conv1x1(ni: int, nf: int) -> nn.Conv2d:
    conv = nn.Conv2d(ni, nf, kernel_size=1, bias=False)
    nn.init.kaiming_normal_(conv.weight)
    return parametrizations.spectral_norm(conv)


class ResBlock(nn.Module):
    """Two 3x3 :func:`conv_layer` plus the identity shortcut (fastai ``res_block``).

    With BatchNorm, the second BN starts with scale 0 so the block is the identity at
    initialisation.

    Parameters
    ----------
    nf : int
        Channels.
    norm : NormType, str or None
        Normalisation of both convolutions.
    leaky : float or None
        LeakyReLU slope (None for ReLU).
    """

    def __init__(
        self, nf: int, *, norm: NormType | str | None = NormType.BATCH, leaky: float | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv_layer(nf, nf, norm=norm, leaky=leaky)
        self.conv2 = conv_layer(nf, nf, norm=norm, leaky=leaky, zero_bn=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``x + conv2(conv1(x))``.

        Parameters
        ----------
        x : torch.Tensor
            ``(N, nf, H, W)``.

        Returns
        -------
        torch.Tensor
            Same shape.
        """
        return x + self.conv2(self.conv1(x))


class SigmoidRange(nn.Module):
    """Sigmoid rescaled to ``(low, high)``.

    Parameters
    ----------
    low, high : float
        Output range.
    """

    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        self.low = float(low)
        self.high = float(high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Squash.

        Parameters
        ----------
        x : torch.Tensor
            Any shape.

        Returns
        -------
        torch.Tensor
            ``sigmoid(x) * (high - low) + low``.
        """
        return torch.sigmoid(x) * (self.high - self.low) + self.low

    def extra_repr(self) -> str:
        """Show the range."""
        return f"low={self.low}, high={self.high}"
