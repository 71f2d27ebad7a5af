"""ResNet encoders: torchvision names, weight loading, first-conv adaptation, errors."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from decrappify.errors import ModelFileError
from decrappify.models.resnet import (
    ResNetEncoder,
    adapt_first_conv,
    build_encoder,
    load_encoder_weights,
)
from decrappify.models.weights import read_state_dict


def _torchvision_like_state(name: str = "resnet18", seed: int = 0) -> dict[str, torch.Tensor]:
    """A random RGB state dict with torchvision's names, including the fc head."""
    torch.manual_seed(seed)
    enc = ResNetEncoder(name, in_channels=3)
    state = {k: v.clone() for k, v in enc.state_dict().items()}
    for k, v in state.items():  # non-trivial but tame BatchNorm parameters and statistics
        if k.endswith(("bn1.weight", "bn2.weight", "bn3.weight", "downsample.1.weight")):
            state[k] = 1 + 0.1 * torch.randn_like(v)
        elif k.endswith(("bias", "running_mean")):
            state[k] = 0.1 * torch.randn_like(v)
        elif k.endswith("running_var"):
            state[k] = 1 + 0.1 * torch.rand_like(v)
    state["fc.weight"] = torch.randn(1000, enc.out_channels)
    state["fc.bias"] = torch.randn(1000)
    return state


class NotATensor:
    """A custom object that weights_only unpickling refuses."""


@pytest.mark.parametrize(
    ("name", "n_params", "n_keys"),
    [
        # torchvision's parameter counts minus the fc layer
        ("resnet18", 11_689_512 - 513_000, 120),
        ("resnet34", 21_797_672 - 513_000, 216),
    ],
)
def test_parameter_counts_match_torchvision(name: str, n_params: int, n_keys: int) -> None:
    enc = ResNetEncoder(name, in_channels=3)
    assert sum(p.numel() for p in enc.parameters()) == n_params
    assert len(enc.state_dict()) == n_keys


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "n_params"),
    [("resnet50", 25_557_032 - 2_049_000), ("resnet101", 44_549_160 - 2_049_000)],
)
def test_bottleneck_parameter_counts_match_torchvision(name: str, n_params: int) -> None:
    enc = ResNetEncoder(name, in_channels=3)
    assert sum(p.numel() for p in enc.parameters()) == n_params


def test_torchvision_names_and_shapes() -> None:
    shapes = {k: tuple(v.shape) for k, v in ResNetEncoder("resnet18", 3).state_dict().items()}
    assert shapes["conv1.weight"] == (64, 3, 7, 7)
    assert shapes["bn1.num_batches_tracked"] == ()
    assert shapes["layer1.0.conv2.weight"] == (64, 64, 3, 3)
    assert shapes["layer2.0.downsample.0.weight"] == (128, 64, 1, 1)
    assert shapes["layer2.0.downsample.1.running_var"] == (128,)
    assert shapes["layer4.1.bn2.bias"] == (512,)
    assert "layer1.0.downsample.0.weight" not in shapes
    assert not any(k.startswith("fc.") for k in shapes)
    bottleneck = ResNetEncoder("resnet50", 3).state_dict()
    assert tuple(bottleneck["layer1.0.conv3.weight"].shape) == (256, 64, 1, 1)
    assert tuple(bottleneck["layer1.0.downsample.0.weight"].shape) == (256, 64, 1, 1)
    assert tuple(bottleneck["layer2.0.conv2.weight"].shape) == (128, 128, 3, 3)


def test_forward_shape_and_random_init_statistics() -> None:
    torch.manual_seed(0)
    enc = ResNetEncoder("resnet18", in_channels=1)
    # He init (fan_out): std = sqrt(2 / (64 * 7 * 7))
    assert enc.conv1.weight.std().item() == pytest.approx((2 / (64 * 49)) ** 0.5, rel=0.05)
    assert torch.all(enc.bn1.weight == 1) and torch.all(enc.bn1.bias == 0)
    out = enc(torch.rand(2, 1, 64, 96))
    assert out.shape == (2, 512, 2, 3)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_load_rgb_weights_into_rgb_encoder(tmp_path: Path, suffix: str) -> None:
    state = _torchvision_like_state()
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    enc = ResNetEncoder("resnet18", in_channels=3)
    load_encoder_weights(enc, path)
    loaded = enc.state_dict()
    assert set(loaded) == {k for k in state if not k.startswith("fc.")}
    for key, value in loaded.items():
        assert torch.equal(value, state[key]), key


def test_weights_path_with_a_tilde_is_in_the_home_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    state = _torchvision_like_state()
    save_file(state, str(tmp_path / "resnet18.safetensors"))
    enc = ResNetEncoder("resnet18", in_channels=3)
    load_encoder_weights(enc, "~/resnet18.safetensors")  # as docs/models.md writes it
    assert torch.equal(enc.conv1.weight, state["conv1.weight"])


def test_rgb_to_grey_and_to_frames_conversion(tmp_path: Path) -> None:
    state = _torchvision_like_state()
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    grey = ResNetEncoder("resnet18", in_channels=1)
    load_encoder_weights(grey, path)
    expected = (
        state["conv1.weight"][:, 0] + state["conv1.weight"][:, 1] + state["conv1.weight"][:, 2]
    )
    torch.testing.assert_close(grey.conv1.weight[:, 0], expected, rtol=0, atol=1e-6)
    assert torch.equal(grey.layer3[1].conv1.weight, state["layer3.1.conv1.weight"])

    # a grey image through the RGB net (replicated) equals the grey net on one channel
    rgb = ResNetEncoder("resnet18", in_channels=3)
    load_encoder_weights(rgb, path)
    rgb.eval()
    grey.eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(grey(x), rgb(x.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-4)

    # three identical frames give the grey response: kernels are the grey one / 3
    frames = ResNetEncoder("resnet18", in_channels=3)
    frames.load_state_dict(
        grey.state_dict() | {"conv1.weight": adapt_first_conv(grey.conv1.weight, 3)}
    )
    torch.testing.assert_close(frames.conv1.weight[:, 2], grey.conv1.weight[:, 0] / 3)
    frames.eval()
    with torch.no_grad():
        torch.testing.assert_close(frames(x.expand(-1, 3, -1, -1)), grey(x), rtol=1e-4, atol=1e-4)


def test_five_frames_from_rgb_file(tmp_path: Path) -> None:
    state = _torchvision_like_state()
    path = tmp_path / "resnet18.safetensors"
    save_file(state, str(path))
    enc = ResNetEncoder("resnet18", in_channels=5)
    load_encoder_weights(enc, path)
    grey = state["conv1.weight"].sum(dim=1)
    for i in range(5):
        torch.testing.assert_close(enc.conv1.weight[:, i], grey / 5)


def test_old_files_without_num_batches_tracked_and_wrapped_dicts(tmp_path: Path) -> None:
    state = {k: v for k, v in _torchvision_like_state().items() if "num_batches" not in k}
    path = tmp_path / "old.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    assert set(read_state_dict(path)) == set(state)
    enc = ResNetEncoder("resnet18", in_channels=3)
    load_encoder_weights(enc, path)
    assert torch.equal(
        enc.layer2[0].downsample[1].running_mean, state["layer2.0.downsample.1.running_mean"]
    )


def test_wrong_architecture_names_the_first_keys(tmp_path: Path) -> None:
    path = tmp_path / "r34.pth"
    torch.save(_torchvision_like_state("resnet34"), path)
    enc = ResNetEncoder("resnet18", in_channels=1)
    message = (
        f"{path}: not a resnet18 ImageNet state dict: unexpected keys layer1.2.conv1.weight, "
        "layer1.2.bn1.weight, layer1.2.bn1.bias (and 93 more)"
    )
    with pytest.raises(ModelFileError, match=f"^{re.escape(message)}$"):
        load_encoder_weights(enc, path)


def test_wrong_shapes_and_missing_keys(tmp_path: Path) -> None:
    state = _torchvision_like_state()
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 5, 5)
    del state["layer4.1.bn2.bias"]
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    message = (
        f"{path}: not a resnet18 ImageNet state dict: missing keys layer4.1.bn2.bias; "
        "wrong shapes layer1.0.conv1.weight (expected (64, 64, 3, 3), got (64, 64, 5, 5))"
    )
    with pytest.raises(ModelFileError, match=f"^{re.escape(message)}$"):
        load_encoder_weights(ResNetEncoder("resnet18"), path)


def test_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(
        ModelFileError, match=f"^{re.escape(f'{missing}: weights file not found')}$"
    ):
        build_encoder("resnet18", 1, missing)

    pickled = tmp_path / "pickled.pth"
    torch.save({"conv1.weight": torch.zeros(1), "obj": NotATensor()}, pickled)
    with pytest.raises(
        ModelFileError,
        match=re.escape(
            f"{pickled}: cannot be read as a plain state dict with torch.load(weights_only=True) ("
        ),
    ):
        build_encoder("resnet18", 1, pickled)

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01not safetensors at all")
    with pytest.raises(
        ModelFileError, match=re.escape(f"{garbage}: not a readable safetensors file (")
    ):
        build_encoder("resnet18", 1, garbage)

    wrong_suffix = tmp_path / "weights.npz"
    wrong_suffix.write_bytes(b"x")
    with pytest.raises(
        ModelFileError,
        match=re.escape(
            f"{wrong_suffix}: expected a .pth, .pt or .safetensors weights file, got '.npz'"
        ),
    ):
        build_encoder("resnet18", 1, wrong_suffix)

    empty = tmp_path / "empty.pth"
    torch.save({"epoch": 3}, empty)
    with pytest.raises(
        ModelFileError,
        match=re.escape(f"{empty}: expected a state dict of tensors, found no tensors"),
    ):
        build_encoder("resnet18", 1, empty)


def test_random_init_and_loading_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="decrappify"):
        build_encoder("resnet18", 1)
    assert caplog.records[-1].name == "decrappify"
    assert (
        caplog.records[-1]
        .getMessage()
        .startswith("resnet18 encoder: random He initialisation (no ImageNet weights file given")
    )
    path = tmp_path / "r18.pth"
    torch.save(_torchvision_like_state(), path)
    with caplog.at_level(logging.INFO, logger="decrappify"):
        build_encoder("resnet18", 1, path)
    assert caplog.records[-1].getMessage() == (
        f"resnet18 encoder: ImageNet weights loaded from {path}; "
        "conv1 adapted from 3 to 1 input channels"
    )
