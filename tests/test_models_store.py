"""The model file: round trips, atomic writes, corrupted and mismatched files."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

from decrappify.config.model import MODEL_FORMAT_VERSION, CriticConfig, GeneratorConfig, ModelInfo
from decrappify.errors import InputError, ModelFileError, OutputError
from decrappify.models import (
    SuperResolutionNet,
    build_critic,
    build_generator,
    describe_model,
    load_model,
    read_tensors,
    save_model,
    save_tensors,
)
from decrappify.models.weights import tensors_digest

SMALL = {"encoder": "resnet18", "nf_factor": 0.25, "scale": 2, "n_frames": 3}


def _trained_like(net: torch.nn.Module) -> None:
    """Move BatchNorm statistics and spectral-norm vectors away from their initial values."""
    net.train()
    with torch.no_grad():
        for _ in range(2):
            net(torch.rand(2, 3, 16, 16))


def _info(cfg: GeneratorConfig) -> ModelInfo:
    return ModelInfo(
        generator=cfg,
        crappify={
            "name": "em",
            "scale": 2,
            "steps": [{"kind": "blur", "sigma": 1.0}, {"kind": "poisson"}, {"kind": "downsample"}],
        },
        training={"images": 4, "patch_size": 128},
        metrics={"psnr": 27.5, "ssim": 0.8123},
        history=[{"phase": "pretrain-generator", "epoch": 1, "loss": 0.125}],
        description="unit test model",
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SuperResolutionNet, ModelInfo]:
    cfg = GeneratorConfig(**SMALL)
    net = build_generator(cfg, seed=0)
    _trained_like(net)
    info = _info(cfg)
    path = save_model(tmp_path_factory.mktemp("models") / "em_x2", net, info)
    return path, net.eval(), info


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize(("norm", "name"), [("batch", "model_dir"), ("spectral", "m.safetensors")])
def test_round_trip_is_bit_exact(tmp_path: Path, norm: str, name: str) -> None:
    cfg = GeneratorConfig(**SMALL, norm_type=norm)
    net = build_generator(cfg, seed=1)
    _trained_like(net)
    net.eval()
    x = torch.rand(2, 3, 13, 17)
    with torch.no_grad():
        expected = net(x)
    info = _info(cfg)
    path = save_model(tmp_path / name, net, info)
    if name.endswith(".safetensors"):
        assert path.is_file()
    else:
        assert sorted(p.name for p in path.iterdir()) == ["model.json", "model.safetensors"]
        assert json.loads((path / "model.json").read_text())["generator"]["norm_type"] == norm
    assert _leftovers(tmp_path) == []
    loaded = load_model(path)
    assert loaded.path == path
    # the metadata comes back as saved, with the digest of the weights it describes
    assert loaded.info == info.model_copy(
        update={"weights_sha256": tensors_digest(net.state_dict())}
    )
    assert not loaded.net.training
    assert (loaded.net.scale, loaded.net.n_frames) == (2, 3)
    with torch.no_grad():
        assert torch.equal(loaded.net(x), expected)
    state, back = net.state_dict(), loaded.net.state_dict()
    assert set(state) == set(back)
    assert all(torch.equal(state[k], back[k]) for k in state)
    if norm == "spectral":
        assert any(k.endswith("parametrizations.weight.0._u") for k in back)


def test_existing_model_needs_overwrite(tmp_path: Path, saved: tuple) -> None:
    _, net, info = saved
    target = tmp_path / "m"
    save_model(target, net, info)
    message = f"{target}: already exists; choose another name or pass --overwrite"
    with pytest.raises(OutputError, match=f"^{re.escape(message)}$"):
        save_model(target, net, info)
    other = build_generator(GeneratorConfig(**SMALL), seed=5)
    save_model(target, other, info.model_copy(update={"description": "v2"}), overwrite=True)
    assert _leftovers(tmp_path) == []
    loaded = load_model(target)
    assert loaded.info.description == "v2"
    assert torch.equal(loaded.net.unet.head.weight, other.unet.head.weight)


def test_info_must_describe_the_network(tmp_path: Path, saved: tuple) -> None:
    _, net, info = saved
    wrong = info.model_copy(update={"generator": GeneratorConfig(**{**SMALL, "scale": 4})})
    target = tmp_path / "m"
    message = (
        f"{target}: info.generator does not describe the network: "
        "scale is 4 in info but 2 in the network"
    )
    with pytest.raises(InputError, match=f"^{re.escape(message)}$"):
        save_model(target, net, wrong)
    assert not target.exists()


def test_missing_model(tmp_path: Path) -> None:
    path = tmp_path / "nothing"
    message = (
        f"{path}: model not found (expected a folder with model.json and model.safetensors, "
        "or a .safetensors file)"
    )
    with pytest.raises(ModelFileError, match=f"^{re.escape(message)}$"):
        load_model(path)
    folder = tmp_path / "empty"
    folder.mkdir()
    message = f"{folder}: not a decrappify model folder (model.safetensors missing)"
    with pytest.raises(ModelFileError, match=f"^{re.escape(message)}$"):
        load_model(folder)


def _copy_with_json(src: Path, dst: Path, edit) -> Path:
    """A model folder sharing the weights (hard link) with edited metadata."""
    dst.mkdir()
    os.link(src / "model.safetensors", dst / "model.safetensors")
    raw = json.loads((src / "model.json").read_text())
    text = edit(raw)
    (dst / "model.json").write_text(text if isinstance(text, str) else json.dumps(raw))
    return dst


def test_bad_json(tmp_path: Path, saved: tuple) -> None:
    path = _copy_with_json(saved[0], tmp_path / "m", lambda raw: '{"format_version": 1,')
    message = f"{path / 'model.json'}: model metadata is not valid JSON (Expecting property name"
    with pytest.raises(ModelFileError, match=f"^{re.escape(message)}"):
        load_model(path)


def test_format_version_too_new(tmp_path: Path, saved: tuple) -> None:
    path = _copy_with_json(saved[0], tmp_path / "m", lambda raw: raw.update(format_version=99))
    message = (
        f"{path / 'model.json'}: model format version 99 is newer than decrappify 0.1.0 reads "
        f"(up to {MODEL_FORMAT_VERSION}); upgrade decrappify"
    )
    with pytest.raises(ModelFileError, match=f"^{re.escape(message)}$"):
        load_model(path)


def test_format_1_models_are_upsample_first(tmp_path: Path) -> None:
    """Model files written before the "lr" layout existed load as "hr" networks."""
    cfg = GeneratorConfig(encoder="resnet18", nf_factor=0.25, scale=2, grid="hr")
    net = build_generator(cfg, seed=1)
    path = save_model(tmp_path / "old", net, ModelInfo(generator=cfg))
    raw = json.loads((path / "model.json").read_text())
    del raw["generator"]["grid"], raw["generator"]["tail_width"], raw["generator"]["encoder_depth"]
    raw["format_version"] = 1
    (path / "model.json").write_text(json.dumps(raw))
    loaded = load_model(path)
    assert loaded.info.generator.grid.value == "hr"
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded.net(x), net.eval()(x))


def test_invalid_metadata_field(tmp_path: Path, saved: tuple) -> None:
    path = _copy_with_json(
        saved[0], tmp_path / "m", lambda raw: raw["generator"].update(n_frames=2)
    )
    message = (
        f"{path / 'model.json'}: invalid model metadata: generator.n_frames: "
        "must be odd so that there is a centre frame (got 2)"
    )
    with pytest.raises(ModelFileError, match=f"^{re.escape(message)}$"):
        load_model(path)


def test_architecture_mismatch(tmp_path: Path, saved: tuple) -> None:
    path = _copy_with_json(
        saved[0], tmp_path / "m", lambda raw: raw["generator"].update(encoder="resnet34")
    )
    message = (
        f"{path / 'model.safetensors'}: does not match the resnet34 wide generator described in "
        "its metadata: missing keys unet.encoder.layer1.2.conv1.weight, "
        "unet.encoder.layer1.2.bn1.weight, unet.encoder.layer1.2.bn1.bias (and 93 more)"
    )
    with pytest.raises(ModelFileError, match=f"^{re.escape(message)}$"):
        load_model(path)
    wider = _copy_with_json(
        saved[0], tmp_path / "w", lambda raw: raw["generator"].update(nf_factor=0.5)
    )
    with pytest.raises(
        ModelFileError,
        match=re.escape(
            "its metadata: wrong shapes unet.blocks.0.shuf.conv.bias (expected (128,), got (64,)), "
            "unet.blocks.0.shuf.conv.parametrizations.weight.original0 (expected (128, 1, 1, 1), "
            "got (64, 1, 1, 1)), unet.blocks.0.shuf.conv.parametrizations.weight.original1 "
            "(expected (128, 512, 1, 1), got (64, 512, 1, 1)) (and 52 more)"
        )
        + "$",
    ):
        load_model(wider)


def test_truncated_and_foreign_single_files(tmp_path: Path, saved: tuple) -> None:
    _, net, info = saved
    good = save_model(tmp_path / "good.safetensors", net, info)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    message = (
        f"{truncated}: not a readable safetensors file, it may be truncated or corrupted "
        "(Error while deserializing header: incomplete metadata, file not fully covered)"
    )
    with pytest.raises(ModelFileError, match=f"^{re.escape(message)}$"):
        load_model(truncated)
    foreign = save_tensors(tmp_path / "foreign.safetensors", {"w": torch.zeros(3)})
    message = f"{foreign}: not a decrappify model (no 'decrappify' metadata in the header)"
    with pytest.raises(ModelFileError, match=f"^{re.escape(message)}$"):
        load_model(foreign)
    text = tmp_path / "notes.safetensors"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match=re.escape(f"{text}: not a readable safetensors file")):
        load_model(text)


def test_critic_and_generator_state_dicts_round_trip(tmp_path: Path) -> None:
    critic = build_critic(CriticConfig(nf=8), seed=0)
    critic.train()
    for _ in range(3):  # power iterations update the spectral-norm vectors
        critic(torch.rand(2, 1, 64, 64))
    state = critic.state_dict()
    assert sum(k.endswith("._u") for k in state) == 10
    path = save_tensors(tmp_path / "critic.safetensors", state, {"step": "3"})
    tensors, metadata = read_tensors(path)
    assert metadata == {"step": "3"}
    fresh = build_critic(CriticConfig(nf=8), seed=1)
    fresh.load_state_dict(tensors, strict=True)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())
    x = torch.rand(2, 1, 64, 64)
    critic.eval()
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), critic(x))


def test_describe_model(saved: tuple) -> None:
    text = describe_model(saved[2])
    lines = text.splitlines()
    assert lines[0].startswith(
        f"decrappify model (format {MODEL_FORMAT_VERSION}, written by decrappify 0.1.0 on "
    )
    assert "  description:   unit test model" in lines
    assert (
        "  network:       resnet18 U-Net, wide decoder (nf_factor 0.25, 1 conv/block), batch norm, "
        "blur on, attention: self-attention in block -3"
    ) in lines
    assert "  input/output:  3 frame(s) in, x2 upsampling, output sigmoid to [-0.2, 1.2]" in lines
    assert "  normalisation: percentile 0.1-99.9" in lines
    assert "  crappifier:    em, x2: blur -> poisson -> downsample" in lines
    assert "  weights:       no digest recorded (saved before format 3), not checked" in lines
    assert "  validation:    PSNR 27.50 dB, SSIM 0.8123" in lines
    assert "  history:       1 entries (the full record: --json)" in lines


def test_describe_a_same_grid_residual_model() -> None:
    cfg = GeneratorConfig(encoder="resnet18", scale=1, residual=True, nf_factor=0.25)
    text = describe_model(ModelInfo(generator=cfg))
    assert "same grid (x1, no upsampling), output input + learned correction" in text
