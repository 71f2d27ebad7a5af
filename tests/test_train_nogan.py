"""End-to-end tests of decrappify.train: the NoGAN phases, run folder, resume, rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

import decrappify.train._gan as gan_phase
import decrappify.train._phases as phases
import decrappify.train.clock as clock
import decrappify.train.nogan as nogan
from decrappify.config.crappify import get_preset
from decrappify.config.train import TrainConfig
from decrappify.errors import InputError, OutputError
from decrappify.events import run_to_end
from decrappify.models import load_model, read_tensors
from decrappify.sample import synthetic_image
from decrappify.train import KeyBatches, iter_train
from decrappify.train.nets import clone_state
from decrappify.train.schedule import CriticSwitch
from decrappify.train.state import read_checkpoint
from decrappify.train.streams import DataStreams
from decrappify.train.training_log import read_log
from decrappify.train.validation import Validator

PHASES = ["pretrain_generator", "save_outputs", "pretrain_critic", "gan"]

#: A whole NoGAN run in a few seconds: 64 px patches, the smallest decoder, a tiny critic.
TINY = {
    "data": {"patch_size": 64, "samples_per_epoch": 64, "validation": {"count": 1, "patches": 4}},
    "batch_size": 2,
    "generator": {"encoder": "resnet18", "nf_factor": 0.25, "self_attention": False},
    "critic": {"nf": 8, "n_blocks": 2, "self_attention": False},
    "pretrain_generator": {"steps": 4, "checkpoint_every": 2},
    "save_outputs": {"patches": 5},
    "pretrain_critic": {"max_steps": 3, "smoothing": 2},
    "gan": {
        "max_steps": 4,
        "checkpoint_every": 2,
        "patience": 5,
        "max_critic_steps": 3,
        "critic_threshold": 0.693,
    },
    "preview_every": 1,
    "device": "cpu",
    # one thread: fast on a loaded machine too (oversubscribed OpenMP threads spin)
    "num_threads": 1,
}


def tiny(**changes) -> TrainConfig:
    return TrainConfig.validate_dict(TINY).with_overrides(changes)


def images(n: int = 4, size: int = 96) -> list[np.ndarray]:
    return [np.asarray(synthetic_image("em", (size, size), seed=i).data) for i in range(n)]


def drive(gen):
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value


class Recorder:
    """Wraps methods of the run to record what happens (behaviour unchanged)."""

    def __init__(self, monkeypatch):
        self.critic_losses: list[tuple[str, float]] = []
        self.gan_end_generator: dict[str, torch.Tensor] | None = None
        self.gan_end_critic: dict[str, torch.Tensor] | None = None
        critic_step, finish_gan = phases.critic_step, gan_phase.finish_gan
        recorder = self

        def record_critic(nets, crop, optimizer, name, real, fake):
            loss = critic_step(nets, crop, optimizer, name, real, fake)
            recorder.critic_losses.append((name, loss))
            return loss

        def record_finish(cfg, state, nets, *args):
            recorder.gan_end_generator = clone_state(nets.G)
            recorder.gan_end_critic = clone_state(nets.C)
            return finish_gan(cfg, state, nets, *args)

        monkeypatch.setattr(phases, "critic_step", record_critic)
        monkeypatch.setattr(gan_phase, "critic_step", record_critic)
        monkeypatch.setattr(gan_phase, "finish_gan", record_finish)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One uninterrupted tiny NoGAN run shared by several tests."""
    mp = pytest.MonkeyPatch()
    recorder = Recorder(mp)
    run_dir = tmp_path_factory.mktemp("runs") / "full"
    try:
        events, result = drive(iter_train(tiny(), images(), run_dir))
    finally:
        mp.undo()
    return {"dir": run_dir, "events": events, "result": result, "recorder": recorder}


def test_phases_and_events(full_run):
    events, result = full_run["events"], full_run["result"]
    seen = list(dict.fromkeys(e.phase for e in events))
    assert seen == PHASES
    first = events[0]
    assert (first.phase, first.step, first.total) == ("pretrain_generator", 0, 4)
    assert set(first.metrics) == {"psnr", "ssim", "frc", "hf"} and first.preview.shape == (96, 288)
    assert set(first.info["baseline"]) == {"psnr", "ssim", "frc", "hf"}
    steps = [e.step for e in events if e.phase == "pretrain_generator"]
    assert steps == [0, 1, 2, 3, 4]
    pre = [e for e in events if e.phase == "pretrain_generator"]
    assert set(pre[1].losses) == {"loss", "l1_loss"}  # the default loss: L1 alone
    assert [bool(e.metrics) for e in pre] == [True, False, True, False, True]
    assert [e.step for e in events if e.phase == "save_outputs"] == [2, 4, 5]
    gan = [e for e in events if e.phase == "gan"]
    assert [e.step for e in gan] == [1, 2, 3, 4]
    assert set(gan[0].losses) == {"loss", "adv", "content", "critic"}
    assert result.steps == {
        "pretrain_generator": 4,
        "save_outputs": 5,
        "pretrain_critic": result.steps["pretrain_critic"],
        "gan": 4,
    }
    assert 2 <= result.steps["pretrain_critic"] <= 3
    assert not result.already_finished and result.seconds > 0


def test_run_folder(full_run):
    run_dir, result = full_run["dir"], full_run["result"]
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == [
        "checkpoints",
        "curves.png",
        "data.json",
        "gen_outputs.zarr",
        "log.csv",
        "model",
        "train.yaml",
    ]
    assert not list(run_dir.rglob("*.partial"))
    assert TrainConfig.from_yaml(run_dir / "train.yaml") == tiny().resolved()
    assert json.loads((run_dir / "data.json").read_text())["n_images"] == 3
    rows = read_log(run_dir / "log.csv")
    phases = [r["phase"] for r in rows]
    n_critic = result.steps["pretrain_critic"]
    assert phases == ["pretrain_generator"] * 5 + ["pretrain_critic"] * n_critic + ["gan"] * 4
    assert [r["val_psnr"] != "" for r in rows[:5]] == [True, False, True, False, True]
    assert float(rows[1]["lr"]) == pytest.approx(1e-3 / 25)
    outputs = zarr.open_group(run_dir / "gen_outputs.zarr", mode="r")
    assert outputs["hr"].shape == outputs["gen"].shape == (5, 1, 64, 64)
    state, tensors = read_checkpoint(run_dir / "checkpoints")
    assert state.finished and state.phase == "done"
    assert set(tensors) == {"rng.cpu"}  # a finished run keeps no training state
    assert [p.name for p in (run_dir / "checkpoints").iterdir()].count("state.json") == 1
    assert (run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_model_loads_and_predicts(full_run):
    result = full_run["result"]
    model = load_model(result.model_path)
    info = model.info
    assert info.generator == tiny().generator
    assert info.crappify == get_preset("em").model_dump(mode="json")
    assert info.metrics["psnr"] == pytest.approx(result.metrics["psnr"])
    assert info.metrics["bicubic_ssim"] == pytest.approx(result.baseline["ssim"])
    assert info.training["finished"] and info.training["data"]["n_train_images"] == 3
    assert info.training["steps"] == result.steps
    assert info.history == result.history
    with torch.inference_mode():
        out = model.net(torch.rand(1, 1, 20, 24))
    assert out.shape == (1, 1, 80, 96) and torch.isfinite(out).all()


def test_history_says_which_generator_was_kept(full_run):
    result = full_run["result"]
    notes = [h["note"] for h in result.history if "note" in h]
    assert notes[0].startswith("generator start: random initial weights")
    assert notes[1].startswith("bicubic baseline on 4 validation crops")
    assert any(n.startswith("pretrained generator: psnr") for n in notes)
    assert any("critic pretraining" in n for n in notes)
    gan_note = next(n for n in notes if n.startswith("GAN phase (cycle 1/1)"))
    if result.best["phase"] == "pretrain_generator":
        assert "kept that generator (from pretrain_generator" in gan_note
        assert notes[-2] == "final model: the pretrained generator (no GAN checkpoint beat it)"
    else:
        assert "best validation frc" in gan_note  # the default watched metric: sharpness
    assert notes[-1].startswith("self-check: model")  # against the classical methods
    validations = [h for h in result.history if "psnr" in h]
    assert [(h["phase"], h["step"]) for h in validations] == [
        ("pretrain_generator", 0),
        ("pretrain_generator", 2),
        ("pretrain_generator", 4),
        ("gan", 2),
        ("gan", 4),
    ]


def test_critic_switching_follows_the_rule(full_run):
    """The critic trains until its loss is below the threshold (at most 3 steps) per G step."""
    losses = [loss for name, loss in full_run["recorder"].critic_losses if name == "gan_critic"]
    rows = [r for r in read_log(full_run["dir"] / "log.csv") if r["phase"] == "gan"]
    logged = [int(r["critic_steps"]) for r in rows]
    rule = CriticSwitch(0.693, 3)
    expected, rest = [], list(losses)
    while rest:
        n = rule.critic_steps_for(rest + [0.0] * 3)
        expected.append(n)
        rest = rest[n:]
    assert logged == expected and len(logged) == 4
    assert sum(logged) == len(losses)
    for group_end, row in zip(np.cumsum(logged), rows, strict=True):
        assert float(row["critic_loss"]) == pytest.approx(losses[group_end - 1], rel=1e-6)


def test_resume_of_finished_run_is_a_no_op(full_run):
    run_dir = full_run["dir"]
    stamp = (run_dir / "model" / "model.safetensors").stat().st_mtime_ns
    events, result = drive(iter_train(tiny(), images(), run_dir, resume=True))
    assert len(events) == 1 and events[0].phase == "done"
    assert events[0].message == f"{run_dir}: this run is already finished; nothing to do"
    assert result.already_finished and result.metrics == full_run["result"].metrics
    assert (run_dir / "model" / "model.safetensors").stat().st_mtime_ns == stamp


def test_existing_run_folder_needs_resume(full_run):
    with pytest.raises(OutputError) as err:
        run_to_end(iter_train(tiny(), images(), full_run["dir"]))
    assert str(err.value) == (
        f"{full_run['dir']}: already holds a training run (train.yaml); pass resume=True "
        "(--resume) to continue it or choose a new folder"
    )


@pytest.mark.parametrize(
    ("stop_phase", "stop_step"),
    [
        ("pretrain_generator", 3),
        pytest.param("save_outputs", 2, marks=pytest.mark.slow),
        pytest.param("gan", 3, marks=pytest.mark.slow),
    ],
)
def test_resume_ends_with_identical_weights(full_run, tmp_path, monkeypatch, stop_phase, stop_step):
    run_dir = tmp_path / "interrupted"
    gen = iter_train(tiny(), images(), run_dir)
    for event in gen:
        if event.phase == stop_phase and event.step == stop_step:
            break
    gen.close()  # Cancel: nothing half-written stays behind
    assert not list(run_dir.rglob("*.partial"))
    assert not (run_dir / "model" / "model.json").exists() or stop_phase != "pretrain_generator"
    with pytest.raises(InputError) as err:
        run_to_end(iter_train(tiny(**{"gan.patience": 2}), images(), run_dir, resume=True))
    assert str(err.value) == (
        f"{run_dir / 'train.yaml'}: cannot resume with a different config (gan.patience: 5 in "
        "the run, 2 now); use the run's config or a new folder"
    )
    torch.manual_seed(1234)  # whatever the caller does with torch's global RNG in between
    torch.rand(7)
    recorder = Recorder(monkeypatch)
    result = run_to_end(iter_train(tiny(), images(), run_dir, resume=True))
    expected = full_run["result"]
    assert result.steps == expected.steps and result.metrics == expected.metrics
    a, _ = read_tensors(expected.model_path / "model.safetensors")
    b, _ = read_tensors(result.model_path / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for name in ("gan_end_generator", "gan_end_critic"):  # after the GAN, before the best
        a, b = getattr(full_run["recorder"], name), getattr(recorder, name)
        assert a is not None and b is not None
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    rows_a = read_log(expected.run_dir / "log.csv")
    rows_b = read_log(result.run_dir / "log.csv")
    drop = ("time_s",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in rows_a] == [
        {k: v for k, v in r.items() if k not in drop} for r in rows_b
    ]
    assert any(h.get("note", "").startswith("resumed at") for h in result.history)


def _injected(monkeypatch, values):
    """Make validation return ``values`` in turn and remember the generator at each call."""
    seen = []
    sequence = iter(values)

    def evaluate(self, net):
        seen.append(clone_state(net))
        v = next(sequence)
        return {"psnr": v, "ssim": v}

    monkeypatch.setattr(Validator, "evaluate", evaluate)
    return seen


FAST = {
    "pretrain_generator.steps": 2,
    "save_outputs.patches": 2,
    "pretrain_critic.max_steps": 1,
    "gan.checkpoint_every": 1,
    "gan.max_critic_steps": 1,
    "gan.metric": "psnr",
    "preview_every": 0,
}


def test_early_stopping_keeps_the_best_generator(tmp_path, monkeypatch):
    # calls: pretraining steps 0, 2 (end); GAN steps 1, 2, 3, 4
    seen = _injected(monkeypatch, [10.0, 20.0, 21.0, 23.0, 22.0, 22.5, 99.0])
    config = tiny(**FAST, **{"gan.max_steps": 10, "gan.patience": 2})
    result = run_to_end(iter_train(config, images(), tmp_path / "run"))
    assert result.steps["gan"] == 4  # 23 at step 2, then two checkpoints below it
    assert result.best == {"phase": "gan", "cycle": 0, "step": 2}
    assert result.metrics == {"psnr": 23.0, "ssim": 23.0}
    model, _ = read_tensors(result.model_path / "model.safetensors")
    best = seen[3]
    assert all(torch.equal(model[k], best[k]) for k in best)
    assert not all(torch.equal(model[k], seen[5][k]) for k in best)
    note = next(h["note"] for h in result.history if h.get("kept") == "gan")
    assert note == (
        "GAN phase (cycle 1/1): best validation psnr 23.0000 at step 2; stopped early at step 4"
    )


def test_gan_that_never_beats_pretraining_keeps_the_pretrained_generator(tmp_path, monkeypatch):
    seen = _injected(monkeypatch, [10.0, 30.0, 29.0, 28.0, 99.0])
    config = tiny(**FAST, **{"gan.max_steps": 10, "gan.patience": 2})
    result = run_to_end(iter_train(config, images(), tmp_path / "run"))
    assert result.steps["gan"] == 2 and result.best["phase"] == "pretrain_generator"
    model, _ = read_tensors(result.model_path / "model.safetensors")
    assert all(torch.equal(model[k], seen[1][k]) for k in seen[1])
    notes = [h["note"] for h in result.history if "note" in h]
    assert (
        "GAN phase (cycle 1/1): no checkpoint in 2 steps beat the generator it started from on "
        "validation psnr (30.0000); kept that generator (from pretrain_generator, cycle 1, "
        "step 2)"
    ) in notes
    assert notes[-2] == "final model: the pretrained generator (no GAN checkpoint beat it)"


def test_cycles_start_from_the_best_generator(tmp_path, monkeypatch):
    seen = _injected(monkeypatch, [1.0, 5.0, 6.0, 4.0, 7.0, 3.0])
    starts = []
    gan = nogan.PHASES["gan"]

    def record_start(parts):
        starts.append(clone_state(parts.nets.G))
        return (yield from gan(parts))

    monkeypatch.setitem(nogan.PHASES, "gan", record_start)
    config = tiny(**FAST, **{"gan.max_steps": 2, "gan.patience": 3, "cycles": 2})
    events, result = drive(iter_train(config, images(), tmp_path / "run"))
    labels = list(dict.fromkeys(e.phase for e in events))
    assert labels == [
        "pretrain_generator",
        "save_outputs 1/2",
        "pretrain_critic 1/2",
        "gan 1/2",
        "save_outputs 2/2",
        "pretrain_critic 2/2",
        "gan 2/2",
    ]
    assert result.best == {"phase": "gan", "cycle": 1, "step": 1}
    # cycle 2 started from the best of cycle 1 (its step 1), not from its last step
    state, _ = read_checkpoint(tmp_path / "run" / "checkpoints")
    assert state.counts == {
        "pretrain_generator": 2,
        "save_outputs/0": 2,
        "pretrain_critic/0": 1,
        "gan/0": 2,
        "save_outputs/1": 2,
        "pretrain_critic/1": 1,
        "gan/1": 2,
    }
    model, _ = read_tensors(result.model_path / "model.safetensors")
    assert all(torch.equal(model[k], seen[4][k]) for k in model)
    assert len(starts) == 2
    assert all(torch.equal(starts[1][k], seen[2][k]) for k in model)  # cycle 1's best
    assert not all(torch.equal(starts[1][k], seen[3][k]) for k in model)  # not its last


class SimulatedTime:
    """A training clock that advances only by what each step and validation is said to cost.

    Generator, critic and GAN steps and validations are real; the clock of the run
    (``decrappify.train.clock.monotonic``) reads this time, so its budget decisions are
    the same on any machine under any load.
    """

    def __init__(self, monkeypatch, *, step, critic=0.0, gan=0.0, validation=0.0):
        self.t = 0.0
        self.steps = 0
        monkeypatch.setattr(clock, "monotonic", lambda: self.t)

        def advancing(function, seconds):
            def timed(*args, **kwargs):
                out = function(*args, **kwargs)
                self.t += seconds(self) if callable(seconds) else seconds
                return out

            return timed

        real_generator_step = phases.generator_step

        def generator_step(*args):
            self.steps += 1
            return real_generator_step(*args)

        monkeypatch.setattr(phases, "generator_step", advancing(generator_step, step))
        critic_step = advancing(phases.critic_step, critic)
        monkeypatch.setattr(phases, "critic_step", critic_step)
        monkeypatch.setattr(gan_phase, "critic_step", critic_step)
        monkeypatch.setattr(
            gan_phase, "gan_generator_step", advancing(gan_phase.gan_generator_step, gan)
        )
        monkeypatch.setattr(DataStreams, "validate", advancing(DataStreams.validate, validation))


def test_time_budget_fixes_the_step_count(tmp_path, monkeypatch):
    SimulatedTime(monkeypatch, step=0.5)
    config = tiny(
        **{
            "time_budget": "13s",
            "gan.max_steps": 0,
            "pretrain_generator.checkpoint_every": 1000,
            "preview_every": 0,
        }
    )
    events, result = drive(iter_train(config, images(), tmp_path / "run"))
    # 6 measured steps (3 s), then 10 s at 0.5 s/step
    assert result.steps == {"pretrain_generator": 26}
    totals = [e.total for e in events]
    assert totals[:6] == [None] * 6 and set(totals[6:]) == {26}
    notes = [h for h in result.history if h.get("note", "").startswith("time budget")]
    assert [n["note"] for n in notes] == [
        "time budget: 13s for pretrain_generator at 0.500 s/step -> 26 steps"
    ]
    assert notes[0]["step_seconds"] == 0.5
    assert result.seconds == pytest.approx(13.0)
    state, _ = read_checkpoint(tmp_path / "run" / "checkpoints")
    assert state.counts == {"pretrain_generator": 26} and state.frozen_steps == 0


def test_time_budget_follows_steps_that_slow_down(tmp_path, monkeypatch):
    # 0.5 s per step for the 6 measured steps, then 1 s (a busier machine); validations
    # every 10 steps cost 0.25 s; 20 s in all
    clock_ = SimulatedTime(
        monkeypatch, step=lambda sim: 0.5 if sim.steps <= 6 else 1.0, validation=0.25
    )
    config = tiny(
        **{
            "time_budget": "20s",
            "gan.max_steps": 0,
            "pretrain_generator.checkpoint_every": 10,
            "preview_every": 0,
        }
    )
    events, result = drive(iter_train(config, images(), tmp_path / "run"))
    notes = [h["note"] for h in result.history if h.get("note", "").startswith("time budget")]
    # the first validation (0.25 s) is start-up; 17 s left after the measured steps, less
    # the closing validation, at 0.5 s/step and 0.25 s per 10 steps: 31 more
    assert notes[0] == "time budget: 20s for pretrain_generator at 0.500 s/step -> 37 steps"
    # the count follows the slower steps step by step, down to what fits
    counts = [int(n.split("-> ")[1].split()[0]) for n in notes]
    assert counts == sorted(counts, reverse=True) and len(counts) > 2
    assert notes[-1].endswith(f"-> {counts[-1]} steps (was {counts[-2]})")
    assert result.steps == {"pretrain_generator": counts[-1]}
    # the run ends within its budget plus one step and one validation
    assert 20.0 - 1.0 - 0.25 <= result.seconds <= 20.0 + 1.0 + 0.25
    assert clock_.t - 0.25 == pytest.approx(result.seconds)
    totals = [e.total for e in events]
    assert totals[:6] == [None] * 6 and totals[-1] == counts[-1]
    state, _ = read_checkpoint(tmp_path / "run" / "checkpoints")
    assert state.counts == {"pretrain_generator": counts[-1]}


def test_a_whole_nogan_run_keeps_its_budget_when_the_machine_slows_down(tmp_path, monkeypatch):
    """Every phase follows the time left: the run ends within budget + one step + one validation."""
    SimulatedTime(
        monkeypatch,
        step=lambda sim: 0.1 if sim.steps <= 20 else 0.4,  # 4x slower from step 21 on
        critic=0.1,
        gan=0.3,
        validation=0.5,
    )
    budget = 30.0
    config = tiny(
        **{
            "time_budget": budget,
            "pretrain_generator.checkpoint_every": 10,
            "pretrain_critic.max_steps": 50,
            "pretrain_critic.min_steps": 3,
            "pretrain_critic.loss_threshold": 0.01,  # never reached: runs on its count
            "gan.max_steps": 500,
            "gan.patience": 1000,
            "save_outputs.patches": 20,
            "preview_every": 0,
        }
    )
    result = run_to_end(iter_train(config, images(), tmp_path / "run"))
    assert set(result.steps) == {"pretrain_generator", "save_outputs", "pretrain_critic", "gan"}
    # the GAN step (0.3 s and its critic steps at 0.1 s) is the longest step
    longest = 0.3 + 0.1 * config.gan.max_critic_steps
    assert budget - longest - 0.5 <= result.seconds <= budget + longest + 0.5


def test_a_short_budget_skips_the_phases_it_cannot_pay_for(tmp_path, monkeypatch):
    SimulatedTime(monkeypatch, step=0.5)
    config = tiny(
        **{
            "time_budget": "20s",
            "pretrain_critic.min_steps": 100,
            "pretrain_critic.max_steps": 300,
            "pretrain_generator.checkpoint_every": 1000,
            "preview_every": 0,
        }
    )
    result = run_to_end(iter_train(config, images(), tmp_path / "run"))
    notes = [h["note"] for h in result.history if h.get("note", "").startswith("time budget")]
    # the critic's share of the 17 s left after the measured steps: 6 % of 17 s, 2 steps
    assert notes[0] == (
        "time budget: critic pretraining would get 1s, about 2 steps at 0.500 s/step, fewer "
        "than the 100 it needs to reach its loss threshold (pretrain_critic.min_steps): the "
        "critic and GAN phases are skipped and generator pretraining gets the whole budget"
    )
    # generator pretraining then gets the whole budget
    assert notes[1] == "time budget: 20s for pretrain_generator at 0.500 s/step -> 40 steps"
    assert result.steps == {"pretrain_generator": 40}
    assert result.seconds == pytest.approx(20.0)
    info = load_model(result.model_path).info
    assert info.training["recipe"] == (
        "generator pretraining only (the time budget could not pay for the GAN phases)"
    )


def test_no_validation_keeps_the_last_generator(tmp_path):
    config = tiny(**FAST, **{"data.validation.count": 0, "gan.max_steps": 2})
    result = run_to_end(iter_train(config, images(3), tmp_path / "run"))
    assert result.metrics == {} and result.baseline == {}
    notes = [h["note"] for h in result.history if "note" in h]
    assert notes[1] == "no validation data: no metrics, no early stopping, the last G is kept"
    assert notes[-1] == "self-check: no validation crops, the model could not be checked"
    assert "GAN phase (cycle 1/1): no validation data, kept the last generator" in notes
    assert result.best == {"phase": "gan", "cycle": 0, "step": 2}


def test_paired_training(tmp_path):
    hr = images(3, size=96)
    lr = [x.reshape(24, 4, 24, 4).mean(axis=(1, 3)).astype(np.uint8) for x in hr]
    config = tiny(**FAST, **{"crappify": None, "gan.max_steps": 0})
    result = run_to_end(iter_train(config, hr, tmp_path / "run", lr_sources=lr))
    info = load_model(result.model_path).info
    assert info.crappify is None and info.training["data"]["mode"] == "paired"
    assert info.training["recipe"] == "generator pretraining only"
    assert result.steps == {"pretrain_generator": 2}
    with pytest.raises(InputError, match=r"^crappify: paired training \(LR images given\)"):
        run_to_end(iter_train(tiny(), hr, tmp_path / "other", lr_sources=lr))
    with pytest.raises(InputError, match=r"^crappify: null needs aligned LR images"):
        run_to_end(iter_train(config, hr, tmp_path / "other"))
    assert not (tmp_path / "other").exists()


def test_scale_mismatch_in_paired_mode(tmp_path):
    hr = images(2, size=96)
    lr = [x[::2, ::2] for x in hr]
    config = tiny(**{"crappify": None, "gan.max_steps": 0})
    with pytest.raises(InputError) as err:
        run_to_end(iter_train(config, hr, tmp_path / "run", lr_sources=lr))
    assert str(err.value) == (
        "generator.scale: 4, but the LR/HR pairs have scale 2; set the scale to 2"
    )


def test_key_batches_are_a_function_of_the_step():
    sampler = KeyBatches(1, 0, samples_per_epoch=5, batch_size=3, start=1, stop=3)
    assert list(sampler) == [[(1 << 38, 3), (1 << 38, 4), ((1 << 38) + 1, 0)], sampler.keys(2)]
    other = KeyBatches(2, 0, 5, 3)
    assert other.keys(0)[0][0] != sampler.keys(0)[0][0]
    assert KeyBatches(1, 1, 5, 3).keys(0)[0][0] == (1 << 38) + (1 << 32)


def test_config_type_is_checked(tmp_path):
    with pytest.raises(InputError, match="config: expected a TrainConfig, got dict"):
        run_to_end(iter_train({}, images(), tmp_path / "run"))  # type: ignore[arg-type]


def test_unwritable_run_folder(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(OutputError, match="expected a run folder, got a file"):
        run_to_end(iter_train(tiny(), images(), target))
    assert Path(target).read_text() == "x"


def test_bf16_autocast_on_cpu(tmp_path):
    config = tiny(**FAST, **{"gan.max_steps": 0, "amp": "bf16"})
    result = run_to_end(iter_train(config, images(), tmp_path / "run"))
    assert load_model(result.model_path).info.training["precision"] == "bf16"
    assert np.isfinite(result.metrics["psnr"])


@pytest.mark.slow
def test_worker_processes_give_the_same_batches(tmp_path):
    config = tiny(**FAST, **{"gan.max_steps": 0})
    a = run_to_end(iter_train(config, images(), tmp_path / "a"))
    b = run_to_end(
        iter_train(config.with_overrides({"data.num_workers": 1}), images(), tmp_path / "b")
    )
    ta, _ = read_tensors(a.model_path / "model.safetensors")
    tb, _ = read_tensors(b.model_path / "model.safetensors")
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
