"""``decrappify train`` on bad input, interrupted runs and time budgets."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from decrappify import api
from decrappify.config.train import TrainConfig
from decrappify.models import load_model
from decrappify.sample import synthetic_image
from decrappify.train.state import read_checkpoint

#: A whole NoGAN run in seconds: 64 px patches, the smallest decoder, a tiny critic.
TINY = {
    "data": {"patch_size": 64, "samples_per_epoch": 32, "validation": {"count": 1, "patches": 2}},
    "batch_size": 2,
    "generator": {"encoder": "resnet18", "nf_factor": 0.25, "self_attention": False},
    "critic": {"nf": 8, "n_blocks": 2, "self_attention": False},
    "pretrain_generator": {"steps": 6, "checkpoint_every": 2},
    "save_outputs": {"patches": 4},
    "pretrain_critic": {"max_steps": 3, "smoothing": 2},
    "gan": {"max_steps": 4, "checkpoint_every": 2, "max_critic_steps": 2},
    "preview_every": 0,
    "device": "cpu",
    "num_threads": 1,
}


@pytest.fixture
def config(bad):
    path = bad.path("tiny.yaml")
    path.write_text(TrainConfig.validate_dict(TINY).to_yaml())
    return path


@pytest.fixture
def hr(bad):
    folder = bad.path("hr")
    folder.mkdir()
    for i in range(3):
        bad.tif(f"hr/em_{i}.tif", size=96, seed=i)
    return folder


def test_constant_images_are_refused_by_name(bad, config):
    bad.tif("flat.tif", data=np.full((96, 96), 7, np.uint8))
    bad.tif("em.tif", size=96)
    result = bad.run("train", "--hr", "em.tif", "--hr", "flat.tif", "-o", "run", "-c", config)
    bad.assert_clean_failure(
        result, "flat.tif: every pixel is 7; a constant image gives no training signal"
    )
    assert not bad.path("run").exists()


def test_images_with_nan_rows_are_refused_by_name(bad, config):
    image = np.asarray(synthetic_image("em", (96, 96), seed=3).data).astype(np.float32)
    image[10:20] = np.nan
    bad.tif("nan.tif", data=image)
    bad.tif("em.tif", size=96)
    result = bad.run("train", "--hr", "em.tif", "--hr", "nan.tif", "-o", "run", "-c", config)
    bad.assert_clean_failure(result, "nan.tif: 960 NaN or Inf pixels; training needs finite")
    assert not bad.path("run").exists()


def test_a_damaged_chunk_in_the_training_data_is_named(bad, config):
    store, key = bad.damaged_zarr(size=96, chunk=48)
    bad.tif("em.tif", size=96)
    result = bad.run("train", "--hr", "em.tif", "--hr", store, "-o", "run", "-c", config)
    bad.assert_clean_failure(result, f"{store}: chunk {key} is damaged or truncated")
    assert not bad.path("run").exists()


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (
            ["--out", "runs/none", "--resume"],
            "runs/none: no training run to resume (the folder ",
            1,
        ),
        (["--hr", "em.tif", "-o", "r", "-t", "soon"], "--time-budget: expected seconds or a", 2),
        (["--hr", "em.tif", "-o", "r", "-t", "0s"], "--time-budget: must be more than 0 s", 2),
        (
            ["--hr", "em.tif", "-o", "r", "-c", "empty.yaml"],
            "empty.yaml: the config file is empty",
            1,
        ),
        (["--hr", "em.tif", "-o", "r", "--set", "gan.max_step=1"], "unknown setting 'max_step'", 1),
        (
            ["--hr", "em.tif", "-o", "r", "--crappify-config", "noisy.yaml"],
            "noisy.yaml: steps.1",
            1,
        ),
    ],
)
def test_bad_options(bad, args, message, code):
    bad.tif("em.tif", size=96)
    bad.path("empty.yaml").write_text("")
    bad.path("noisy.yaml").write_text(
        "scale: 4\nsteps:\n  - kind: downsample\n  - kind: gaussian_noise\n    sigma: 50\n"
    )
    result = bad.run("train", *args, "-q")
    bad.assert_clean_failure(result, message, code=code)
    assert not bad.path("runs").exists() and not bad.path("r").exists()


def _stale_names(run: Path) -> list[str]:
    """Temporaries and unreferenced checkpoint tensors left in a run folder."""
    names = [str(p.relative_to(run)) for p in run.rglob(".*")]
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    names += [
        f"checkpoints/{p.name}"
        for p in (run / "checkpoints").glob("tensors-*.safetensors")
        if p.name != state["tensors"]
    ]
    return sorted(names)


#: TINY cut to what the test below needs: checkpoints at generator steps 2 and 4, one
#: critic step, two GAN steps (a checkpoint at 2), the least data and the fewest previews.
SHORTEST = {
    **TINY,
    "data": {"patch_size": 64, "samples_per_epoch": 8, "validation": {"count": 1, "patches": 1}},
    "pretrain_generator": {"steps": 4, "checkpoint_every": 2},
    "save_outputs": {"patches": 1},
    "pretrain_critic": {"max_steps": 1, "smoothing": 1},
    "gan": {"max_steps": 2, "checkpoint_every": 2, "max_critic_steps": 1},
}


def test_resume_cleans_what_an_interrupted_write_left(bad, hr):
    config = bad.path("shortest.yaml")
    config.write_text(TrainConfig.validate_dict(SHORTEST).to_yaml())
    events = api.iter_train([hr], bad.path("run"), config=config)
    for event in events:
        if event.phase == "pretrain_generator" and event.step == 3:
            break
    events.close()  # interrupted after the checkpoint of step 2
    run = bad.path("run")
    checkpoints = run / "checkpoints"
    state, _ = read_checkpoint(checkpoints)
    assert state.step == 2
    # what kill -9 in the middle of writes leaves: temporaries of a checkpoint (178 MB in the
    # issue), of the model and the log, a checkpoint whose state.json was never committed,
    # and an output moved aside whose replacement never arrived
    (checkpoints / ".tensors-000004.safetensors.partial").write_bytes(b"\0" * 4096)
    (checkpoints / "tensors-000004.safetensors").write_bytes(b"\0" * 4096)
    (checkpoints / ".state.json.partial").write_text("{")
    (checkpoints / ".tmpc3uhom").write_bytes(b"\0" * 4096)  # safetensors' own temporary
    (run / ".model.partial").mkdir()
    (run / ".log.csv.partial").write_text("time_s")
    (run / ".curves.png.replaced").write_bytes(b"an older figure")
    result = bad.run("train", "--out", run, "--resume", "-q")
    assert result.exit_code == 0, result.output
    assert _stale_names(run) == []
    assert (run / "curves.png").read_bytes() != b"an older figure"  # put back, then redrawn
    state, _ = read_checkpoint(checkpoints)
    assert state.finished and state.counts["pretrain_generator"] == 4
    assert load_model(run / "model").info.generator.scale == 4


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_kill_9_at_a_random_point_then_resume(bad, config, hr, seed):
    """kill -9 anywhere in a run (checkpoint writes included): --resume finishes it."""
    run = bad.path("run")
    command = [sys.executable, "-m", "decrappify", "train", "--hr", str(hr), "-o", str(run)]
    command += ["-c", str(config), "-q"]
    # how long the whole run takes here, to pick the moment of the kill inside it
    start = time.perf_counter()
    subprocess.run(command, cwd=bad.folder, check=True, capture_output=True, timeout=600)
    duration = time.perf_counter() - start
    import shutil

    shutil.rmtree(run)
    rng = np.random.default_rng(seed)
    delay = float(rng.uniform(0.3, 0.95)) * duration
    process = subprocess.Popen(
        command, cwd=bad.folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    resume = [*command[:4], "-o", str(run), "--resume", "-q"]
    if not (run / "data.json").is_file():  # killed before the run's folder was written
        resume = command
    done = subprocess.run(resume, cwd=bad.folder, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert _stale_names(run) == []
    state, _ = read_checkpoint(run / "checkpoints")
    assert state.finished
    assert load_model(run / "model").info.training["finished"] is True


@pytest.mark.slow
def test_time_budget_is_kept(bad, hr):
    """-t 20s: the training time stops within the budget, plus one step and the closing save."""
    budget = 20.0
    changes = {"time_budget": budget, "pretrain_generator.checkpoint_every": 1000}
    cfg = TrainConfig.validate_dict(TINY).with_overrides(changes)
    start = time.perf_counter()
    result = api.train([hr], bad.path("run"), config=cfg)
    wall = time.perf_counter() - start
    notes = [h for h in result.history if "step_seconds" in h]
    step = max(h["step_seconds"] for h in notes)
    state, _ = read_checkpoint(bad.path("run") / "checkpoints")
    # the overrun allowed: a few percent, one step of each phase run, and one validation
    # with its checkpoint at the end of the last phase (measured by the run itself)
    allowed = budget * 1.05 + step * len(result.steps) + state.overhead
    assert result.seconds <= allowed, (result.seconds, allowed, result.history)
    assert wall < result.seconds + 60  # start-up: data, models, baseline, final save
