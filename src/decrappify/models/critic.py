"""The NoGAN critic, after fastai's ``gan_critic``.

Layout (spectral norm on every convolution, LeakyReLU 0.2, no BatchNorm)::

    conv 4x4 /2 (1 -> nf), Dropout2d(p/2), residual block (nf)
    n_blocks x [Dropout2d(p), conv 4x4 /2 (c -> 2c) (+ self-attention in the first)]
    conv 4x4, no padding (c -> 1)                              -> patch map of logits
    mean over the map ("global") or the map itself ("patch")

Each logit of the patch map sees a receptive field of about ``2 ** (n_blocks + 4)`` pixels.
"""

from __future__ import annotations

import torch
from torch import nn

from decrappify.config.model import NormType, PoolType
from decrappify.errors import InputError
from decrappify.models.layers import ResBlock, conv_layer

#: LeakyReLU slope of the critic.
LEAKY = 0.2


class Critic(nn.Module):
    """Discriminator between real HR images and generator outputs.

    Parameters
    ----------
    in_channels : int
        Input channels (1: the HR-sized normalised image).
    nf : int
        Filters of the first convolution.
    n_blocks : int
        Strided blocks after the first convolution.
    dropout : float
        Dropout2d probability.
    self_attention : bool
        Self-attention in the first strided block.
    pool : PoolType or str
        ``"global"`` (one logit per image) or ``"patch"`` (a map of logits).
    attention_pool : int
        Key/value pooling of the self-attention (see
        :class:`~decrappify.models.layers.SelfAttention`).
    """

    def __init__(
        self,
        in_channels: int = 1,
        *,
        nf: int = 64,
        n_blocks: int = 3,
        dropout: float = 0.15,
        self_attention: bool = True,
        pool: PoolType | str = PoolType.GLOBAL,
        attention_pool: int = 2,
    ) -> None:
        super().__init__()
        self.pool = PoolType(pool)
        self.min_size = 2 ** (n_blocks + 3)
        sn = NormType.SPECTRAL
        layers: list[nn.Module] = [
            conv_layer(in_channels, nf, ks=4, stride=2, padding=1, norm=sn, leaky=LEAKY),
            nn.Dropout2d(dropout / 2),
            ResBlock(nf, norm=sn, leaky=LEAKY),
        ]
        for i in range(n_blocks):
            layers += [
                nn.Dropout2d(dropout),
                conv_layer(
                    nf,
                    nf * 2,
                    ks=4,
                    stride=2,
                    padding=1,
                    norm=sn,
                    leaky=LEAKY,
                    self_attention=self_attention and i == 0,
                    attention_pool=attention_pool,
                ),
            ]
            nf *= 2
        layers.append(
            conv_layer(nf, 1, ks=4, padding=0, bias=False, norm=sn, use_activ=False, leaky=LEAKY)
        )
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score images.

        Parameters
        ----------
        x : torch.Tensor
            ``(N, in_channels, H, W)`` with ``H, W >= min_size``.

        Returns
        -------
        torch.Tensor
            ``(N,)`` logits with ``pool="global"``, ``(N, 1, h, w)`` with ``"patch"``
            (``h = H / 2**(n_blocks+1) - 3``).
        """
        if x.ndim != 4 or min(x.shape[-2:]) < self.min_size:
            raise InputError(
                f"critic input: expected shape (N, C, H, W) with H, W >= {self.min_size}, "
                f"got {tuple(x.shape)}"
            )
        logits = self.layers(x)
        if self.pool is PoolType.GLOBAL:
            return logits.mean(dim=(1, 2, 3))
        return logits


def critic_accuracy(
    critic: Critic,
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    crop: int | None = None,
    batch_size: int = 16,
) -> dict[str, float]:
    """How often a critic tells real patches from generated ones (eval mode, no gradient).

    A patch counts as judged right when its logit is positive for a real patch and
    negative for a generated one (with ``pool="patch"``, the mean of its logit map).

    Parameters
    ----------
    critic : Critic
        The critic; its training flag is restored afterwards.
    real, fake : torch.Tensor
        ``(N, C, H, W)`` real HR patches and generator outputs (same device as the
        critic).
    crop : int or None
        Judge the centre ``crop x crop`` window of each patch (the size the critic was
        trained on, ``CriticConfig.crop``); None: the whole patch.
    batch_size : int
        Patches per forward pass.

    Returns
    -------
    dict of str to float
        ``accuracy`` (the mean of the two rates), ``real`` (real patches judged real)
        and ``fake`` (generated patches judged generated), fractions in [0, 1].
    """

    def view(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if crop is None or (crop >= h and crop >= w):
            return x
        ch, cw = min(crop, h), min(crop, w)
        top, left = (h - ch) // 2, (w - cw) // 2
        return x[..., top : top + ch, left : left + cw]

    def logits(x: torch.Tensor) -> torch.Tensor:
        out = [critic(view(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
        return torch.cat([o.reshape(len(o), -1).mean(dim=1) for o in out]).float()

    was_training = critic.training
    critic.eval()
    try:
        with torch.no_grad():
            real_rate = float((logits(real) > 0).float().mean())
            fake_rate = float((logits(fake) < 0).float().mean())
    finally:
        critic.train(was_training)
    return {"accuracy": (real_rate + fake_rate) / 2, "real": real_rate, "fake": fake_rate}
