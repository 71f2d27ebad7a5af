"""The "naf" generator family: shapes, start, TorchScript, tiling, config, model file."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import decrappify.models.nafunet as nafunet_module
from decrappify.config.model import GeneratorConfig, ModelInfo
from decrappify.config.train import TrainConfig
from decrappify.errors import InputError
from decrappify.models import build_generator, describe_model, load_model, save_model
from decrappify.models.factory import NafGenerator
from decrappify.models.nafunet import NafUnet
from decrappify.predict.receptive import estimate_receptive_field

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")

#: The smallest naf network worth testing: two levels, one block each.
SMALL_NAF = {"width": 8, "blocks": [1, 1], "middle_blocks": 1}


def small_config(scale: int = 2, n_frames: int = 1, **naf: object) -> GeneratorConfig:
    return GeneratorConfig(
        arch="naf", scale=scale, n_frames=n_frames, residual=True, naf={**SMALL_NAF, **naf}
    )


def _trained_like(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter random values (the zero-initialised ones included)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=generator))
    return net


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
@pytest.mark.parametrize(("h", "w"), [(16, 16), (13, 22), (5, 37)])
def test_output_shapes(scale: int, h: int, w: int) -> None:
    net = build_generator(small_config(scale), seed=0).eval()
    assert isinstance(net, NafGenerator)
    assert (net.scale, net.n_frames, net.multiple) == (scale, 1, scale * 4)
    with torch.no_grad():
        y = _trained_like(net)(torch.rand(2, 1, h, w))
    assert y.shape == (2, 1, h * scale, w * scale)
    assert torch.isfinite(y).all()


def test_starts_as_bilinear_interpolation_of_the_centre_frame() -> None:
    net = build_generator(small_config(4, n_frames=3, blocks=[2, 1]), seed=0).eval()
    x = torch.rand(1, 3, 12, 20)
    expected = F.interpolate(x[:, 1:2], scale_factor=4, mode="bilinear", align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(net(x), expected.clamp(-0.2, 1.2), rtol=0, atol=1e-6)


def test_no_batchnorm_and_the_first_level_on_the_input_grid() -> None:
    net = build_generator(small_config(4), seed=0)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    seen = {}
    net.encoder[0].blocks.register_forward_hook(lambda m, i, o: seen.update(shape=o.shape))
    net(torch.rand(1, 1, 24, 32))
    assert seen["shape"] == (1, 8, 24, 32)  # full LR resolution, width 8


def test_output_is_clamped_outside_training_only() -> None:
    net = _trained_like(build_generator(small_config(2), seed=0))
    x = 5 * torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        assert net.train()(x).max() > 1.2
        out = net.eval()(x)
    assert out.min() >= -0.2 and out.max() <= 1.2


def test_wrong_input_shape_message() -> None:
    net = build_generator(small_config(2, n_frames=3), seed=0)
    message = "network input: expected shape (N, 3, h, w), got [1, 1, 16, 16]"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        net(torch.rand(1, 1, 16, 16))


@pytest.mark.parametrize("block", ["naf", "res"])
def test_torchscript_matches_eager(block: str) -> None:
    plain = _trained_like(NafUnet(3, 4, width=8, blocks=[1, 2], middle_blocks=1, block=block))
    plain.eval()
    x = torch.rand(2, 3, 11, 21)
    with torch.no_grad():
        expected = plain(x)
        torch.testing.assert_close(torch.jit.script(plain)(x), expected, rtol=0, atol=1e-6)


def test_the_plain_module_imports_only_torch() -> None:
    """The module can be copied into a bioimage.io package as it is."""
    tree = ast.parse(Path(nafunet_module.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "math", "torch"}


def test_plain_module_and_generator_share_their_state_dict() -> None:
    cfg = small_config(4, blocks=[1, 2], middle_blocks=2, width=12)
    net = _trained_like(build_generator(cfg, seed=0)).eval()
    plain = NafUnet(1, 4, width=12, blocks=[1, 2], middle_blocks=2, clamp=(-0.2, 1.2)).eval()
    plain.load_state_dict(net.state_dict())
    x = torch.rand(1, 1, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), net(x), rtol=0, atol=0)


def test_receptive_field_is_finite_and_measured() -> None:
    """Every operation is local: a window's output, away from the window's edge by the
    measured radius and cut on the network's own grid, equals the whole image's."""
    net = build_generator(small_config(2), seed=0)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():  # a network with a correction: its zero-started parameters move
        for p in net.parameters():
            if torch.all(p == 0):
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
    net.eval()
    radius = estimate_receptive_field(net)
    assert 4 <= radius <= 16
    x = torch.rand(1, 1, 96, 96, generator=generator)
    step = net.multiple // net.scale  # the network's downsampling grid, in LR pixels
    top, left, size = 4 * step, 2 * step, 40
    with torch.no_grad():
        whole = net(x)
        part = net(x[..., top : top + size, left : left + size])
    m, s = radius, net.scale
    core = part[..., m * s : (size - m) * s, m * s : (size - m) * s]
    expected = whole[
        ..., (top + m) * s : (top + size - m) * s, (left + m) * s : (left + size - m) * s
    ]
    assert (whole - F.interpolate(x, scale_factor=2, mode="bilinear")).abs().mean() > 0.05
    torch.testing.assert_close(core, expected, rtol=0, atol=1e-3)


def test_config_choices_and_errors() -> None:
    cfg = TrainConfig().with_overrides({"generator.arch": "naf", "generator.naf.width": 48})
    assert cfg.generator.naf.width == 48 and cfg.generator.levels == 3
    assert cfg.generator.deepest_features(256) == 8
    with pytest.raises(InputError, match="residual: the naf generator always adds its output"):
        TrainConfig.validate_dict({"generator": {"arch": "naf", "residual": False}})
    with pytest.raises(
        InputError,
        match=r"^config: generator.naf: decoder_blocks needs one count per level of blocks \(2\)",
    ):
        TrainConfig.validate_dict({"generator": {"naf": {"blocks": [1, 1], "decoder_blocks": [1]}}})
    with pytest.raises(InputError, match="the naf generator has no ImageNet encoder"):
        build_generator(small_config(2), encoder_weights="weights.pth")


def test_parameter_groups_cover_every_parameter_once() -> None:
    net = build_generator(small_config(2), seed=0)
    groups = net.parameter_groups()
    assert [g["name"] for g in groups] == ["encoder", "decoder"]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(net.parameters()))
    net.freeze_encoder()  # nothing to freeze: every parameter still trains
    assert all(p.requires_grad for p in net.parameters())


def test_model_file_round_trip(tmp_path: Path) -> None:
    cfg = small_config(2, n_frames=3, block="res")
    net = _trained_like(build_generator(cfg, seed=0)).eval()
    path = save_model(tmp_path / "naf", net, ModelInfo(generator=cfg))
    raw = json.loads((path / "model.json").read_text())
    assert raw["format_version"] == 3 and raw["generator"]["arch"] == "naf"
    loaded = load_model(path)
    assert isinstance(loaded.net, NafGenerator)
    x = torch.rand(1, 3, 10, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded.net(x), net(x), rtol=0, atol=0)
    text = describe_model(loaded.info)
    assert (
        "  network:       naf U-Net (res blocks, width 8, blocks [1, 1] + 1, on the input "
        "grid), no BatchNorm, blur on"
    ) in text.splitlines()


def test_format_2_model_files_load_as_resnet(tmp_path: Path) -> None:
    cfg = GeneratorConfig(encoder="resnet18", nf_factor=0.25, scale=2)
    net = build_generator(cfg, seed=1).eval()
    path = save_model(tmp_path / "old", net, ModelInfo(generator=cfg))
    raw = json.loads((path / "model.json").read_text())
    del raw["generator"]["arch"], raw["generator"]["naf"]
    raw["format_version"] = 2
    (path / "model.json").write_text(json.dumps(raw))
    loaded = load_model(path)
    assert loaded.info.generator.arch.value == "resnet"
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded.net(x), net(x))


def test_naf_weights_under_a_resnet_description_are_refused(tmp_path: Path) -> None:
    cfg = small_config(2)
    path = save_model(tmp_path / "naf", build_generator(cfg, seed=0), ModelInfo(generator=cfg))
    raw = json.loads((path / "model.json").read_text())
    raw["generator"]["arch"] = "resnet"
    (path / "model.json").write_text(json.dumps(raw))
    with pytest.raises(Exception, match="does not match the resnet34 wide generator"):
        load_model(path)
