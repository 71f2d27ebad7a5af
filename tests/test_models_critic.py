"""The NoGAN critic: output shapes, spectral norm everywhere, attention, input checks, learning."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from decrappify.config.model import CriticConfig
from decrappify.config.train import PretrainCriticConfig
from decrappify.errors import InputError
from decrappify.models import Critic, build_critic
from decrappify.models.critic import critic_accuracy
from decrappify.models.layers import SelfAttention
from decrappify.train._phases import critic_loss


@pytest.fixture(scope="module")
def critic() -> Critic:
    return build_critic(CriticConfig(nf=16), seed=0)


def test_global_pool_gives_one_logit_per_image(critic: Critic) -> None:
    critic.eval()
    with torch.no_grad():
        assert critic(torch.rand(3, 1, 64, 64)).shape == (3,)
        assert critic(torch.rand(2, 1, 96, 160)).shape == (2,)


@pytest.mark.parametrize(
    ("h", "w", "ph", "pw"), [(64, 64, 1, 1), (128, 96, 5, 3), (160, 144, 7, 6)]
)
def test_patch_map_shapes(h: int, w: int, ph: int, pw: int) -> None:
    critic = build_critic(CriticConfig(nf=8, pool="patch"), seed=0)
    critic.eval()
    with torch.no_grad():
        out = critic(torch.rand(2, 1, h, w))
    assert out.shape == (2, 1, ph, pw)
    assert ph == h // 16 - 3


def test_global_is_mean_of_patch_map() -> None:
    patch = build_critic(CriticConfig(nf=8, pool="patch"), seed=1).eval()
    glob = build_critic(CriticConfig(nf=8, pool="global"), seed=1).eval()
    x = torch.rand(2, 1, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(glob(x), patch(x).mean(dim=(1, 2, 3)))


def test_spectral_norm_on_every_conv_and_leaky_relu(critic: Critic) -> None:
    convs = [m for m in critic.modules() if isinstance(m, nn.Conv2d)]
    # 1 first conv + 2 residual + 3 strided + 1 final + 3 attention projections
    assert len(convs) == 10
    for conv in convs:
        assert parametrize.is_parametrized(conv, "weight")
        assert type(conv.parametrizations.weight[0]).__name__ == "_SpectralNorm"
    acts = [m for m in critic.modules() if isinstance(m, nn.LeakyReLU | nn.ReLU)]
    assert acts and all(isinstance(a, nn.LeakyReLU) and a.negative_slope == 0.2 for a in acts)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in critic.modules())
    dropouts = [m.p for m in critic.modules() if isinstance(m, nn.Dropout2d)]
    assert dropouts == [0.0] * 4  # the default: no dropout
    with_dropout = build_critic(CriticConfig(nf=16, dropout=0.15), seed=0)
    dropouts = [m.p for m in with_dropout.modules() if isinstance(m, nn.Dropout2d)]
    assert dropouts == pytest.approx([0.075, 0.15, 0.15, 0.15])


def test_self_attention_only_in_first_strided_block(critic: Critic) -> None:
    attention = [name for name, m in critic.named_modules() if isinstance(m, SelfAttention)]
    assert attention == ["layers.4.2"]
    strided = critic.layers[4]
    assert strided[0].stride == (2, 2) and strided[0].out_channels == 32
    no_sa = build_critic(CriticConfig(nf=8, self_attention=False))
    assert not any(isinstance(m, SelfAttention) for m in no_sa.modules())


def test_channel_progression_and_gradients(critic: Critic) -> None:
    strided = [m for m in critic.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    assert [c.out_channels for c in strided] == [16, 32, 64, 128]
    critic.train()
    critic.zero_grad()
    critic(torch.rand(2, 1, 64, 64)).sum().backward()
    first = critic.layers[0][0].parametrizations.weight.original
    assert first.grad is not None and first.grad.abs().sum() > 0


def test_too_small_input_is_a_clear_error(critic: Critic) -> None:
    message = "critic input: expected shape (N, C, H, W) with H, W >= 64, got (1, 1, 32, 64)"
    with pytest.raises(InputError, match=f"^{re.escape(message)}$"):
        critic(torch.rand(1, 1, 32, 64))
    small = build_critic(CriticConfig(nf=8, n_blocks=1))
    assert small.min_size == 16
    assert small.eval()(torch.rand(1, 1, 16, 16)).shape == (1,)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = int(3 * sigma)
    t = torch.arange(-radius, radius + 1.0)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    x = F.conv2d(F.pad(x, [radius, radius, 0, 0], mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, [0, 0, radius, radius], mode="reflect"), k.view(1, 1, -1, 1))


def _textured(generator: torch.Generator, n: int, size: int = 64) -> torch.Tensor:
    """Smooth random structure with fine grain, about 0.5 +- 0.15 (normalised units)."""
    base = _blur(torch.rand(n, 1, size, size, generator=generator), 2.0)
    base = (base - base.mean()) / base.std() * 0.15 + 0.5
    return base + 0.05 * torch.randn(base.shape, generator=generator)


def test_critic_tells_textured_from_blurred_within_60_steps() -> None:
    """The default critic and pretraining optimiser learn an easy discrimination fast.

    "Real" patches are textured, "generated" ones the same patches blurred (what a
    pixel-loss generator does to fine grain). With the old defaults (learning rate 1e-4,
    dropout 0.15) the critic was still at chance after 200 steps.
    """
    settings = PretrainCriticConfig()
    critic = build_critic(CriticConfig(), seed=0)
    optimizer = torch.optim.AdamW(
        critic.parameters(), lr=settings.lr, weight_decay=settings.weight_decay, betas=(0.9, 0.99)
    )
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        real = _textured(generator, 4)
        logits = critic(torch.cat([real, _blur(real, 1.0)]))
        loss = critic_loss(logits[:4], logits[4:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    held_out = _textured(torch.Generator().manual_seed(99), 32)
    accuracy = critic_accuracy(critic, held_out, _blur(held_out, 1.0), crop=64)
    assert accuracy["accuracy"] >= 0.9, accuracy


def test_critic_accuracy_counts_each_side() -> None:
    class Sign(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(1, 2, 3)) - 0.5

    real = torch.full((4, 1, 8, 8), 1.0)
    fake = torch.cat([torch.zeros(3, 1, 8, 8), torch.ones(1, 1, 8, 8)])
    result = critic_accuracy(Sign(), real, fake, batch_size=3)  # type: ignore[arg-type]
    assert result == {"accuracy": 0.875, "real": 1.0, "fake": 0.75}
