"""The generator: shapes, presets, attention, norms, freezing, parameter groups."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from decrappify.config.model import GeneratorConfig
from decrappify.errors import InputError
from decrappify.models import SuperResolutionNet, build_generator
from decrappify.models.layers import PixelShuffleICNR, SelfAttention, SigmoidRange
from decrappify.models.store import count_parameters


@pytest.fixture(scope="module")
def net1() -> SuperResolutionNet:
    return build_generator(
        GeneratorConfig(encoder="resnet18", scale=1, n_frames=1, grid="hr"), seed=0
    )


@pytest.fixture(scope="module")
def net3() -> SuperResolutionNet:
    cfg = GeneratorConfig(
        encoder="resnet18", scale=2, n_frames=3, preset="deep", nf_factor=0.5, grid="hr"
    )
    return build_generator(cfg, seed=0)


@pytest.mark.parametrize("scale", [1, 2, 4])
@pytest.mark.parametrize(("h", "w"), [(64, 64), (13, 22), (37, 5)])
def test_output_shapes_single_frame(net1: SuperResolutionNet, scale: int, h: int, w: int) -> None:
    net = SuperResolutionNet(net1.unet, scale=scale)
    assert (net.scale, net.n_frames, net.multiple) == (scale, 1, 32)
    net.eval()
    with torch.no_grad():
        y = net(torch.rand(2, 1, h, w))
    assert y.shape == (2, 1, h * scale, w * scale)
    assert torch.isfinite(y).all()
    assert y.min() >= -0.2 and y.max() <= 1.2  # SigmoidRange


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_output_shapes_three_frames(net3: SuperResolutionNet, scale: int) -> None:
    net = SuperResolutionNet(net3.unet, scale=scale)
    assert net.n_frames == 3
    net.eval()
    with torch.no_grad():
        y = net(torch.rand(1, 3, 11, 19))
    assert y.shape == (1, 1, 11 * scale, 19 * scale)


def test_wrong_input_shape_message(net3: SuperResolutionNet) -> None:
    message = "network input: expected shape (N, 3, h, w), got (1, 1, 16, 16)"
    with pytest.raises(InputError, match=f"^{re.escape(message)}$"):
        net3(torch.rand(1, 1, 16, 16))


def test_padding_does_not_depend_on_batch_neighbours(net1: SuperResolutionNet) -> None:
    """A crop of the padded output equals the output of the same image alone (eval mode)."""
    net1.eval()
    x = torch.rand(2, 1, 40, 40)
    with torch.no_grad():
        both = net1(x)
        single = net1(x[1:])
    torch.testing.assert_close(both[1:], single, rtol=1e-5, atol=1e-5)


def test_decoder_layout_and_taps(net1: SuperResolutionNet, net3: SuperResolutionNet) -> None:
    unet = net1.unet
    assert unet.tap_names == ["layer3", "layer2", "layer1", "relu"]
    assert [b.out_channels for b in unet.blocks] == [128, 128, 128, 64]
    assert [len(b.convs) for b in unet.blocks] == [1, 1, 1, 1]
    assert isinstance(unet.final_shuf, PixelShuffleICNR)
    assert isinstance(unet.out_act, SigmoidRange)
    # cross connection: 64 decoder channels + the input frame(s)
    assert unet.res.conv1[0].in_channels == 65
    deep = net3.unet
    assert [b.out_channels for b in deep.blocks] == [128, 64, 32, 16]  # 32 * 0.5 * 2**level
    assert [len(b.convs) for b in deep.blocks] == [2, 2, 2, 2]
    assert deep.res.conv1[0].in_channels == 16 + 3
    assert deep.encoder.conv1.in_channels == 3


def test_parameter_counts() -> None:
    wide = build_generator(GeneratorConfig(encoder="resnet18", grid="hr"), seed=0)
    assert count_parameters(wide) == 22_188_953
    assert count_parameters(wide.encoder) == 11_170_240
    lr = build_generator(GeneratorConfig(encoder="resnet18", grid="lr"), seed=0)
    assert count_parameters(lr) == 22_211_416
    shallow = build_generator(GeneratorConfig(encoder="resnet18", encoder_depth=3), seed=0)
    assert count_parameters(shallow.encoder) == 2_776_512  # without layer4


@pytest.mark.parametrize(("scale", "factors"), [(2, [2]), (3, [3]), (4, [2, 2]), (6, [2, 3])])
@pytest.mark.parametrize("depth", [3, 4])
def test_low_resolution_layout(scale: int, factors: list[int], depth: int) -> None:
    """The "lr" U-Net computes on the input grid and upsamples in its tail."""
    cfg = GeneratorConfig(
        encoder="resnet18", scale=scale, nf_factor=0.25, encoder_depth=depth, residual=True
    )
    net = build_generator(cfg, seed=0).eval()
    assert net.unet.scale == scale
    assert net.multiple == 2 ** (depth + 1) * scale
    assert len(net.unet.blocks) == depth
    assert [up.shuf.upscale_factor for up in net.unet.tail.ups] == factors
    widths = [conv[0].out_channels for conv in net.unet.tail.convs]
    assert widths == [16 * 2 ** (len(factors) - 1 - i) for i in range(len(factors))]
    x = torch.rand(2, 1, 13, 21)
    with torch.no_grad():
        y = net(x)
    bilinear = nn.functional.interpolate(x, scale_factor=scale, mode="bilinear")
    assert y.shape == (2, 1, 13 * scale, 21 * scale)
    torch.testing.assert_close(y, bilinear.clamp(-0.2, 1.2))  # residual: starts at bilinear


def test_low_resolution_layout_is_cheaper() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    def flops(grid: str) -> int:
        net = build_generator(GeneratorConfig(encoder="resnet18", grid=grid), seed=0).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(torch.rand(1, 1, 64, 64))
        return counter.get_total_flops()

    assert flops("hr") > 5 * flops("lr")


def test_self_attention_placement() -> None:
    def attention_blocks(net: SuperResolutionNet) -> list[int]:
        return [
            i
            for i, block in enumerate(net.unet.blocks)
            if any(isinstance(m, SelfAttention) for m in block.modules())
        ]

    base = {"encoder": "resnet18", "nf_factor": 0.25}
    assert attention_blocks(build_generator(GeneratorConfig(**base))) == [1]  # third from last
    last = build_generator(GeneratorConfig(**base, attention_block=-1))
    assert attention_blocks(last) == [3]
    none = build_generator(GeneratorConfig(**base, self_attention=False))
    assert not any(isinstance(m, SelfAttention) for m in none.modules())


def _decoder_convs(net: SuperResolutionNet) -> list[nn.Conv2d]:
    """3x3 convs of the middle, the U-Net blocks and the residual block, and the head."""
    unet = net.unet
    convs = [m for part in (unet.middle, unet.blocks, unet.res) for m in part.modules()]
    convs = [m for m in convs if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    return [*convs, unet.head]


def _norm_name(conv: nn.Conv2d) -> str:
    if not parametrize.is_parametrized(conv, "weight"):
        return "none"
    return type(conv.parametrizations.weight[0]).__name__


@pytest.mark.parametrize(
    ("norm", "conv_norm", "has_bn"),
    [
        ("batch", "none", True),
        ("spectral", "_SpectralNorm", True),
        ("weight", "_WeightNorm", False),
    ],
)
def test_norm_types(norm: str, conv_norm: str, has_bn: bool) -> None:
    net = build_generator(GeneratorConfig(encoder="resnet18", nf_factor=0.25, norm_type=norm))
    convs = _decoder_convs(net)
    assert len(convs) == 1 * 4 + 2 + 2 + 1
    assert {_norm_name(c) for c in convs} == {conv_norm}
    block_bns = [m for m in net.unet.blocks[0].convs.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bool(block_bns) is has_bn
    shuffle_norm = "_SpectralNorm" if norm == "spectral" else "_WeightNorm"
    assert _norm_name(net.unet.blocks[0].shuf.conv) == shuffle_norm


def test_linear_output_without_y_range() -> None:
    net = build_generator(GeneratorConfig(encoder="resnet18", nf_factor=0.25, y_range=None))
    assert isinstance(net.unet.out_act, nn.Identity)


def test_seeded_build_is_reproducible_and_leaves_global_rng_alone() -> None:
    cfg = GeneratorConfig(encoder="resnet18", nf_factor=0.25, norm_type="spectral")
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = build_generator(cfg, seed=7).state_dict()
    assert torch.equal(torch.random.get_rng_state(), before)
    b = build_generator(cfg, seed=7).state_dict()
    c = build_generator(cfg, seed=8).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["unet.encoder.conv1.weight"], c["unet.encoder.conv1.weight"])


def test_gradients_reach_encoder_and_decoder(net3: SuperResolutionNet) -> None:
    net3.train()
    net3.zero_grad()
    x = torch.rand(2, 3, 16, 16)
    loss = (net3(x) - torch.rand(2, 1, 32, 32)).abs().mean()
    loss.backward()
    assert net3.encoder.conv1.weight.grad.abs().sum() > 0
    assert net3.unet.head.weight.grad.abs().sum() > 0
    assert net3.unet.blocks[0].shuf.conv.parametrizations.weight.original1.grad is not None


def test_freeze_and_unfreeze_encoder(net3: SuperResolutionNet) -> None:
    net3.freeze_encoder()
    enc = net3.encoder
    assert not enc.conv1.weight.requires_grad
    assert not enc.layer4[1].conv2.weight.requires_grad
    assert not enc.layer2[0].downsample[0].weight.requires_grad
    # BatchNorm stays trainable, as fastai does
    assert enc.bn1.weight.requires_grad and enc.layer3[0].bn2.bias.requires_grad
    assert enc.layer2[0].downsample[1].weight.requires_grad
    assert all(p.requires_grad for p in net3.unet.blocks.parameters())
    n_bn = sum(
        p.numel() for m in enc.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()
    )
    assert sum(p.numel() for p in enc.parameters() if p.requires_grad) == n_bn

    net3.zero_grad(set_to_none=True)
    net3.train()
    net3(torch.rand(2, 3, 16, 16)).mean().backward()
    assert enc.conv1.weight.grad is None
    assert enc.bn1.weight.grad is not None

    net3.unfreeze_encoder()
    assert all(p.requires_grad for p in net3.parameters())


def test_parameter_groups(net3: SuperResolutionNet) -> None:
    groups = net3.parameter_groups()
    assert [g["name"] for g in groups] == ["encoder", "decoder"]
    enc_ids = {id(p) for p in groups[0]["params"]}
    dec_ids = {id(p) for p in groups[1]["params"]}
    assert not enc_ids & dec_ids
    assert enc_ids | dec_ids == {id(p) for p in net3.parameters()}
    assert enc_ids == {id(p) for p in net3.encoder.parameters()}
    opt = torch.optim.Adam(
        [{**groups[0], "lr": 1e-5}, {**groups[1], "lr": 1e-3}],
    )
    assert [g["lr"] for g in opt.param_groups] == [1e-5, 1e-3]


@pytest.mark.parametrize("norm", ["batch", "spectral", "weight"])
def test_residual_starts_at_bilinear_and_learns(norm: str) -> None:
    cfg = GeneratorConfig(
        encoder="resnet18", scale=4, n_frames=3, nf_factor=0.25, residual=True, norm_type=norm
    )
    net = build_generator(cfg, seed=0)
    x = torch.rand(2, 3, 16, 16)
    bilinear = nn.functional.interpolate(
        x[:, 1:2], scale_factor=4, mode="bilinear", align_corners=False
    )
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), bilinear.clamp(-0.2, 1.2))  # the centre frame, upsampled
    net.train()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    target = torch.zeros(2, 1, 64, 64)
    losses = []
    for _ in range(3):
        loss = (net(x) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.encoder.parameters())


def test_residual_clamps_to_y_range_outside_training_only() -> None:
    cfg = GeneratorConfig(encoder="resnet18", scale=2, nf_factor=0.25, residual=True)
    net = build_generator(cfg, seed=0)
    x = torch.full((2, 1, 8, 8), 5.0)
    net.train()
    assert float(net(x).max()) == pytest.approx(5.0)
    net.eval()
    with torch.no_grad():
        assert float(net(x).max()) == pytest.approx(1.2)
