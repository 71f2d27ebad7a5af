"""Building blocks: ICNR, PixelShuffle, self-attention, residual block, norms, padding."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from decrappify.models.layers import (
    PixelShuffleICNR,
    ResBlock,
    SelfAttention,
    SigmoidRange,
    conv_layer,
    icnr_init,
)
from decrappify.models.unet import pad_to_multiple


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_icnr_weight_layout() -> None:
    w = torch.empty(4 * 6, 5, 1, 1)
    icnr_init(w, scale=2)
    groups = w.view(6, 4, 5)
    # the 4 channels that PixelShuffle spreads over one 2x2 block share their kernel
    assert torch.equal(groups, groups[:, :1].expand(-1, 4, -1))
    assert not torch.equal(groups[0, 0], groups[1, 0])
    with pytest.raises(ValueError, match="ICNR needs out channels divisible by 4, got 6"):
        icnr_init(torch.empty(6, 3, 1, 1), 2)


@pytest.mark.parametrize("norm", ["batch", "weight", "spectral"])
@pytest.mark.parametrize("blur", [False, True])
def test_pixel_shuffle_icnr_has_no_checkerboard_at_init(norm: str, blur: bool) -> None:
    layer = PixelShuffleICNR(8, 6, scale=2, blur=blur, norm=norm)
    x = torch.randn(2, 8, 1, 1).expand(-1, -1, 5, 7).contiguous()  # constant per channel
    y = layer(x)
    assert y.shape == (2, 6, 10, 14)
    # every output channel is constant: all sub-pixels equal right after initialisation
    flat = y.flatten(2)
    assert torch.equal(flat, flat[..., :1].expand_as(flat))
    assert flat[..., 0].abs().sum() > 0  # and not trivially zero


def test_pixel_shuffle_without_icnr_would_checkerboard() -> None:
    layer = PixelShuffleICNR(8, 6, scale=2)
    with torch.no_grad():
        layer.conv.parametrizations.weight.original1.normal_()  # break ICNR
    y = layer(torch.ones(1, 8, 4, 4))
    assert y[0, :, 0, 0].ne(y[0, :, 0, 1]).any()


def test_pixel_shuffle_weight_norm_keeps_icnr_weight() -> None:
    layer = PixelShuffleICNR(4, 2, scale=2)
    assert parametrize.is_parametrized(layer.conv, "weight")
    w = layer.conv.weight.detach().view(2, 4, 4)
    torch.testing.assert_close(w, w[:, :1].expand(-1, 4, -1), rtol=0, atol=0)


def test_self_attention_is_identity_at_init_and_learns() -> None:
    sa = SelfAttention(16)
    assert sa.gamma.item() == 0.0
    assert sa.key_channels == 2
    x = torch.randn(2, 16, 6, 5)
    assert torch.equal(sa(x), x)
    with torch.no_grad():
        sa.gamma.fill_(1.0)
    y = sa(x)
    assert y.shape == x.shape
    assert not torch.allclose(y, x)
    y.sum().backward()
    assert sa.query.parametrizations.weight.original.grad.abs().sum() > 0


def test_self_attention_matches_explicit_softmax_attention() -> None:
    sa = SelfAttention(12)  # 12 channels, key size 1: one attention map for all values
    with torch.no_grad():
        sa.gamma.fill_(0.5)
    sa.eval()
    x = torch.randn(1, 12, 4, 3)
    q = sa.query(x).flatten(2)  # (1, d, L)
    k = sa.key(x).flatten(2)
    v = sa.value(x).flatten(2)  # (1, C, L)
    d = q.shape[1]
    weights = torch.softmax(q.transpose(1, 2) @ k / d**0.5, dim=-1)  # (1, Lq, Lk)
    expected = 0.5 * (v @ weights.transpose(1, 2)).view_as(x) + x
    torch.testing.assert_close(sa(x), expected, rtol=1e-5, atol=1e-5)


def test_pooled_self_attention_attends_to_pooled_keys() -> None:
    sa = SelfAttention(16, pool=2)
    with torch.no_grad():
        sa.gamma.fill_(1.0)
    sa.eval()
    x = torch.randn(2, 16, 6, 8)
    q = sa.query(x).flatten(2)  # (2, d, 48)
    k = nn.functional.max_pool2d(sa.key(x), 2).flatten(2)  # (2, d, 12)
    v = nn.functional.max_pool2d(sa.value(x), 2).flatten(2)  # (2, C, 12)
    weights = torch.softmax(q.transpose(1, 2) @ k / q.shape[1] ** 0.5, dim=-1)  # (2, 48, 12)
    expected = (v @ weights.transpose(1, 2)).view_as(x) + x
    torch.testing.assert_close(sa(x), expected, rtol=1e-5, atol=1e-5)


def test_self_attention_channels_not_divisible_by_key_size() -> None:
    sa = SelfAttention(20)  # key size 2 divides 20; 21 channels needs padding of the value
    sa21 = SelfAttention(21)
    with torch.no_grad():
        sa.gamma.fill_(1.0)
        sa21.gamma.fill_(1.0)
    assert sa(torch.randn(1, 20, 3, 3)).shape == (1, 20, 3, 3)
    assert sa21(torch.randn(1, 21, 3, 3)).shape == (1, 21, 3, 3)


def test_conv_layer_variants() -> None:
    batch = conv_layer(3, 8)
    assert [type(m) for m in batch] == [nn.Conv2d, nn.ReLU, nn.BatchNorm2d]
    assert batch[0].bias is None
    spectral = conv_layer(3, 8, norm="spectral", self_attention=True)
    assert parametrize.is_parametrized(spectral[0], "weight")
    assert type(spectral[0].parametrizations.weight[0]).__name__ == "_SpectralNorm"
    assert isinstance(spectral[-1], SelfAttention)
    assert spectral[0].bias is not None
    weight = conv_layer(3, 8, norm="weight", leaky=0.2)
    assert type(weight[0].parametrizations.weight[0]).__name__ == "_WeightNorm"
    assert isinstance(weight[1], nn.LeakyReLU) and weight[1].negative_slope == 0.2
    extra = conv_layer(3, 8, norm="spectral", batchnorm=True)
    assert isinstance(extra[-1], nn.BatchNorm2d)


def test_spectral_norm_bounds_the_largest_singular_value() -> None:
    layer = conv_layer(16, 32, norm="spectral")
    for _ in range(20):  # power iterations run in training mode
        layer(torch.randn(1, 16, 4, 4))
    w = layer[0].weight.detach().view(32, -1)
    assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=1e-3)


def test_res_block_starts_close_to_identity() -> None:
    block = ResBlock(8)
    block.eval()
    x = torch.randn(2, 8, 5, 5)
    # second BatchNorm scale is 0, so the branch adds only its bias (1e-3)
    torch.testing.assert_close(block(x), x + 1e-3, rtol=0, atol=1e-6)


def test_sigmoid_range() -> None:
    layer = SigmoidRange(-0.2, 1.2)
    y = layer(torch.tensor([-1e4, 0.0, 1e4]))
    torch.testing.assert_close(y, torch.tensor([-0.2, 0.5, 1.2]))


@pytest.mark.parametrize(("h", "w"), [(32, 64), (33, 50), (5, 9), (1, 40), (70, 2)])
def test_pad_to_multiple(h: int, w: int) -> None:
    x = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w)
    padded, (top, left) = pad_to_multiple(x, 32)
    assert padded.shape[-2] % 32 == 0 and padded.shape[-1] % 32 == 0
    assert padded.shape[-2] - h < 32 and padded.shape[-1] - w < 32
    assert torch.equal(padded[..., top : top + h, left : left + w], x)
    if w > 1 and left > 0:  # reflection: the column left of the image mirrors column 1
        assert torch.equal(padded[..., top : top + h, left - 1], x[..., 1])
