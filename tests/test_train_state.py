"""Tests for decrappify.train.state, training_log, precision and rng: checkpoints, log, curves."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from decrappify.devices import resolve_device, torch_threads
from decrappify.errors import InputError, ModelFileError
from decrappify.models.store import save_tensors
from decrappify.train.precision import Precision, resolve_amp
from decrappify.train.rng import RunRandom, derive_seed
from decrappify.train.state import (
    RunState,
    flatten_optimizer,
    has_checkpoint,
    prefixed,
    read_checkpoint,
    unflatten_optimizer,
    unprefixed,
    write_checkpoint,
)
from decrappify.train.training_log import COLUMNS, RunLog, plot_curves, read_log


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 1, 1))


def _steps(model: nn.Module, opt: torch.optim.Optimizer, n: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.rand(2, 1, 8, 8, generator=gen)
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize(
    "make", [torch.optim.AdamW, lambda p: torch.optim.Adam(p, betas=(0.0, 0.9))]
)
def test_optimizer_round_trip_continues_identically(make):
    a = _model()
    opt_a = make(a.parameters())
    _steps(a, opt_a, 3, seed=1)
    tensors, meta = flatten_optimizer(opt_a.state_dict(), "optim.x")
    assert all(name.startswith("optim.x.") for name in tensors)
    # what the checkpoint stores: copies of the tensors, the rest through JSON
    tensors = {k: v.clone() for k, v in tensors.items()}
    meta = json.loads(json.dumps(meta))
    b = _model(seed=99)
    b.load_state_dict(a.state_dict())
    opt_b = make(b.parameters())
    opt_b.load_state_dict(unflatten_optimizer(tensors, meta, "optim.x"))
    _steps(a, opt_a, 2, seed=2)
    _steps(b, opt_b, 2, seed=2)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


def test_prefixes():
    state = {"w": torch.ones(2), "b.c": torch.zeros(1)}
    tensors = {**prefixed(state, "generator"), "generatorX.w": torch.ones(1)}
    assert set(tensors) == {"generator.w", "generator.b.c", "generatorX.w"}
    assert set(unprefixed(tensors, "generator")) == {"w", "b.c"}


def test_checkpoint_write_and_read(tmp_path):
    folder = tmp_path / "checkpoints"
    assert not has_checkpoint(folder)
    state = RunState(phase="gan", step=7, counts={"gan/0": 20}, history=[{"psnr": math.inf}])
    write_checkpoint(folder, state, {"a": torch.arange(3.0)})
    write_checkpoint(folder, state, {"a": torch.arange(4.0)})
    assert state.checkpoint == 2 and state.tensors == "tensors-000002.safetensors"
    assert sorted(p.name for p in folder.iterdir()) == ["state.json", "tensors-000002.safetensors"]
    back, tensors = read_checkpoint(folder)
    assert back.phase == "gan" and back.step == 7 and back.counts == {"gan/0": 20}
    assert back.history == [{"psnr": None}]  # strict JSON: non-finite floats become null
    assert torch.equal(tensors["a"], torch.arange(4.0))


def test_checkpoint_pair_mismatch_is_detected(tmp_path):
    folder = tmp_path / "checkpoints"
    state = RunState()
    write_checkpoint(folder, state, {"a": torch.zeros(1)})
    # a tensor file of another checkpoint under the name state.json points at
    save_tensors(folder / state.tensors, {"a": torch.zeros(1)}, {"decrappify_checkpoint": "9"})
    with pytest.raises(ModelFileError) as err:
        read_checkpoint(folder)
    assert str(err.value) == (
        f"{folder / state.tensors}: expected the tensors of checkpoint 1, got those of "
        "checkpoint '9'"
    )


def test_run_state_json_errors(tmp_path):
    with pytest.raises(ModelFileError, match="run state is not valid JSON"):
        RunState.from_json("{", "state.json")
    with pytest.raises(ModelFileError, match="expected a run state of format 1, got 7"):
        RunState.from_json('{"format": 7}', "state.json")
    with pytest.raises(ModelFileError, match=r"unknown run state fields \['extra'\]"):
        RunState.from_json('{"format": 1, "extra": 0}', "state.json")


def test_run_log_truncates_to_checkpoint(tmp_path):
    path = tmp_path / "log.csv"
    log = RunLog(path)
    for step in range(5):
        log.write(phase="pretrain_generator", step=step, loss=0.5 / (step + 1))
    log.close()
    assert log.rows == 5
    log = RunLog(path, keep_rows=3)
    log.write(phase="gan", step=0, critic_loss=0.69, val_psnr=float("nan"))
    log.close()
    rows = read_log(path)
    assert list(rows[0]) == list(COLUMNS)
    assert [r["step"] for r in rows] == ["0", "1", "2", "0"]
    assert rows[1]["loss"] == "0.25" and rows[3]["val_psnr"] == "" and rows[3]["phase"] == "gan"
    with pytest.raises(KeyError, match="no columns"):
        RunLog(tmp_path / "x.csv").write(psnr=1)


def test_plot_curves_writes_png(tmp_path):
    rows = []
    for phase, n in (("pretrain_generator", 30), ("pretrain_critic", 5), ("gan", 10)):
        for i in range(n):
            row = {c: "" for c in COLUMNS}
            row.update(phase=phase, step=str(i), loss=str(1 / (i + 1)))
            if phase != "pretrain_generator":
                row["critic_loss"] = "0.6"
            if i % 10 == 0:
                row.update(val_psnr=str(20 + i / 10), val_ssim="0.5")
            rows.append(row)
    path = plot_curves(rows, tmp_path / "curves.png", baseline={"psnr": 19.0, "ssim": 0.4})
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1100, 750)
    assert not (tmp_path / ".curves.png.partial").exists()
    # at scale 1 the dashed line is the input's: only its legend differs
    same_grid = plot_curves(
        rows, tmp_path / "s1.png", baseline={"psnr": 19.0, "ssim": 0.4}, baseline_name="input"
    )
    assert same_grid.read_bytes() != data


def test_derive_seed_is_stable_and_separates_keys():
    assert derive_seed(0, 11) == derive_seed(0, 11)
    assert len({derive_seed(0, 11), derive_seed(0, 12), derive_seed(1, 11)}) == 3
    assert 0 <= derive_seed(5, 1) < 2**63


def test_run_random_is_isolated_from_the_global_state():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a, b = RunRandom(42, torch.device("cpu")), RunRandom(42, torch.device("cpu"))
    with a.active():
        first = torch.rand(3)
    torch.rand(100)  # the caller uses the global generator in between
    with a.active():
        second = torch.rand(3)
    with b.active():
        expected = torch.rand(6)
    assert torch.equal(torch.cat([first, second]), expected)
    c = RunRandom(0, torch.device("cpu"))
    c.load(a.tensors())
    with a.active(), torch.no_grad():
        x = torch.rand(2)
    with c.active():
        y = torch.rand(2)
    assert torch.equal(x, y)
    torch.set_rng_state(before)
    assert torch.equal(torch.get_rng_state(), before)


def test_device_and_precision_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    cpu = torch.device("cpu")
    assert resolve_amp("auto", cpu) is None
    assert resolve_amp("off", cpu) is None
    assert resolve_amp("bf16", cpu) is torch.bfloat16
    with pytest.raises(InputError, match="'fp16' needs a CUDA device"):
        resolve_amp("fp16", cpu)
    if not torch.cuda.is_available():
        assert resolve_device("auto") == cpu
        with pytest.raises(InputError, match=r"device 'cuda' is not available \(no CUDA"):
            resolve_device("cuda")
    precision = Precision(cpu, None)
    assert precision.label == "float32" and precision.scaler("x") is None
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with precision.autocast():
        loss = model(torch.ones(1, 2)).sum()
    weight = model.weight.detach().clone()
    precision.step("x", loss, opt)
    assert torch.allclose(model.weight, weight - 0.1)


def test_torch_threads_restores():
    before = torch.get_num_threads()
    with torch_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert np.isfinite(before)
