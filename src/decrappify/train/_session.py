"""One session of a training run: setup, state, clock, checkpoints and model files.

Private: see :mod:`decrappify.train.nogan`. The phases themselves are functions over a
:class:`Session` (:mod:`._phases`, :mod:`._gan`).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from decrappify.config.model import ModelInfo
from decrappify.config.train import TrainConfig, format_duration, phase_budgets
from decrappify.data.dataset import build_datasets, describe
from decrappify.devices import resolve_device
from decrappify.errors import InputError, OutputError
from decrappify.events import Progress
from decrappify.io.atomic import atomic_write_text
from decrappify.metrics.baselines import baseline_label
from decrappify.models import build_critic, build_generator, build_loss, save_model
from decrappify.train.run import (
    CHECKPOINTS_NAME,
    CONFIG_NAME,
    CURVES_NAME,
    DATA_NAME,
    LOG_NAME,
    MODEL_NAME,
    KeyBatches,
    config_differences,
    history_record,
    steps_done,
    strip_sources,
)
from decrappify.train.runlog import RunLog, plot_curves, read_log
from decrappify.train.runtime import Precision, RunRandom, derive_seed, resolve_amp
from decrappify.train.schedule import (
    split_remaining,
    steps_for_budget,
)
from decrappify.train.selfcheck import SELF_CHECK_KEY
from decrappify.train.start import START_KEY, choose_start, load_start
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
from decrappify.train.validation import Validator

log = logging.getLogger("decrappify")

#: With a time budget, the step time is measured over the first steps of a phase
#: (the first one, which allocates memory, is not counted) and the phase's step count
#: is fixed after this many steps.
CALIBRATION_STEPS = {"pretrain_generator": 6, "pretrain_critic": 4, "gan": 3}
#: Budget mode: a phase's step count is fitted again at each checkpoint when the new
#: count differs from it by more than this fraction (:meth:`Session.fix_count`).
REFIT_TOLERANCE = 0.05

#: Draw ``curves.png`` after generator pretraining when it took longer than this (seconds).
CURVES_AFTER_SECONDS = 60.0

#: Data streams: each phase draws its batches from its own sequence of sample keys.
STREAMS = {"pretrain_generator": 1, "save_outputs": 2, "pretrain_critic": 3, "gan": 4, "critic": 5}
#: Keys of the seeds derived from the config's seed.
SEED_GENERATOR, SEED_CRITIC, SEED_TORCH = 11, 12, 13


def clone_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


class StepTimer:
    """Seconds per step, not counting the first step (which allocates memory)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.after_first: float | None = None
        self.first_step: int = 0

    def tick(self, step: int) -> None:
        if self.after_first is None:
            self.after_first, self.first_step = time.perf_counter(), step

    def since_start(self) -> float:
        return time.perf_counter() - self.start

    def seconds_per_step(self, step: int) -> float:
        if self.after_first is None or step <= self.first_step:
            return max(self.since_start(), 1e-6)
        return max((time.perf_counter() - self.after_first) / (step - self.first_step), 1e-6)


def _worker_init(worker_id: int) -> None:
    del worker_id
    torch.set_num_threads(1)


class Session:
    """One session of a training run: its folder, models, data, state, clock and log.

    What every NoGAN phase (:mod:`._phases`, :mod:`._gan`) works on: the phases are
    functions of a session; it gives them batches, events, notes, checkpoints, log rows
    and the time budget of the current phase.
    """

    def __init__(
        self,
        config: TrainConfig,
        hr_sources: Sequence[Any],
        run_dir: str | Path,
        lr_sources: Sequence[Any] | None,
        resume: bool,
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise InputError(f"config: expected a TrainConfig, got {type(config).__name__}")
        self.cfg = config.resolved()
        self.run_dir = Path(run_dir)
        self.paired = lr_sources is not None
        self.crappify = self.cfg.resolved_crappify()
        if self.paired and self.crappify is not None:
            raise InputError(
                "crappify: paired training (LR images given) uses the real LR images; set "
                "crappify to null (CLI: do not combine --lr with --preset/--crappify-config)"
            )
        if not self.paired and self.crappify is None:
            raise InputError(
                "crappify: null needs aligned LR images (lr_sources / --lr); give a preset "
                "or a crappify config to make them from the HR images"
            )
        self.resume = resume
        self._check_run_dir()
        # the starting weights are chosen (and a misfit refused) before the folder exists
        fresh = not (resume and has_checkpoint(self.checkpoints))
        start = choose_start(self.cfg) if fresh else None
        context = self.cfg.generator.context_warning(self.cfg.data.patch_size)
        if context:
            log.warning(context)
        self.device = resolve_device(self.cfg.device)
        self.precision = Precision(self.device, resolve_amp(self.cfg.amp, self.device))
        self.channels_last = self.cfg.channels_last and self.device.type == "cuda"
        self.budget = self.cfg.time_budget
        self.fractions = phase_budgets(self.cfg)
        # data
        self.train_set, val_set = build_datasets(
            list(hr_sources), self.cfg.data, self.crappify, lr_images=lr_sources
        )
        scale = self.train_set.maker.scale
        if scale != self.cfg.generator.scale:
            raise InputError(
                f"generator.scale: {self.cfg.generator.scale}, but the LR/HR pairs have scale "
                f"{scale}; set the scale to {scale}"
            )
        self.data_summary = describe(self.train_set, val_set)
        self.validator = (
            Validator(
                val_set,
                scale=scale,
                device=self.device,
                batch_size=self.cfg.batch_size,
                autocast=self.precision.autocast,
                channels_last=self.channels_last,
            )
            if val_set is not None
            else None
        )
        if self.validator is not None and not self.validator.enabled:
            self.validator = None
        # models
        seed = self.cfg.seed
        self.G = build_generator(
            self.cfg.generator,
            encoder_weights=self.cfg.encoder_weights,
            seed=derive_seed(seed, SEED_GENERATOR),
        ).to(self.device)
        self.C = build_critic(self.cfg.critic, seed=derive_seed(seed, SEED_CRITIC)).to(self.device)
        if self.channels_last:
            self.G.to(memory_format=torch.channels_last)
            self.C.to(memory_format=torch.channels_last)
        self.loss_fn = build_loss(self.cfg.loss, self.cfg.vgg_weights).to(self.device)
        self.random = RunRandom(derive_seed(seed, SEED_TORCH), self.device)
        self.best_state: dict[str, torch.Tensor] | None = None
        self.tensors: dict[str, torch.Tensor] = {}
        self.inputs = [
            {"source": im.source, "shape": list(im.shape), "dtype": str(im.dtype)}
            for im in self.train_set.maker.hr_images
        ]
        self.state = self._open_state()
        if start is not None and not self.resumed:
            load_start(start, self.G)
            self.note(f"generator start: {start.reason}", **{START_KEY: start.record()})
        self.log = RunLog(
            self.run_dir / LOG_NAME, keep_rows=self.state.log_rows if self.resumed else None
        )
        self._session_start = time.perf_counter()
        self._elapsed_start = self.state.elapsed
        self._phase_seconds: float | None = None
        self.phase_start = 0.0

    # ------------------------------------------------------------------ setup

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / CHECKPOINTS_NAME

    def _check_run_dir(self) -> None:
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise OutputError(f"{self.run_dir}: expected a run folder, got a file")
        saved = self.run_dir / CONFIG_NAME
        if saved.is_file():
            if not self.resume:
                raise OutputError(
                    f"{self.run_dir}: already holds a training run ({CONFIG_NAME}); pass "
                    "resume=True (--resume) to continue it or choose a new folder"
                )
            previous = TrainConfig.from_yaml(saved)
            diff = config_differences(previous, self.cfg)
            if diff:
                shown = "; ".join(diff[:3]) + (
                    f"; and {len(diff) - 3} more" if len(diff) > 3 else ""
                )
                raise InputError(
                    f"{saved}: cannot resume with a different config ({shown}); use the run's "
                    "config or a new folder"
                )
        elif self.run_dir.is_dir() and any(
            (self.run_dir / n).exists() for n in (CHECKPOINTS_NAME, MODEL_NAME, LOG_NAME)
        ):
            raise OutputError(
                f"{self.run_dir}: holds training files but no {CONFIG_NAME}; choose a new folder"
            )

    def _open_state(self) -> RunState:
        self.resumed = self.resume and has_checkpoint(self.checkpoints)
        if not self.resumed:
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise OutputError(f"{self.run_dir}: cannot create the run folder ({err})") from err
            atomic_write_text(self.run_dir / CONFIG_NAME, self.cfg.to_yaml())
            atomic_write_text(
                self.run_dir / DATA_NAME, json.dumps(self.data_summary, indent=1, default=str)
            )
            return RunState(inputs=self.inputs)
        state, tensors = read_checkpoint(self.checkpoints)
        if state.inputs and strip_sources(state.inputs) != strip_sources(self.inputs):
            raise InputError(
                f"{self.checkpoints}: cannot resume with different training images "
                f"(the run used {len(state.inputs)} images of shapes "
                f"{[i['shape'] for i in state.inputs][:3]}..., got {len(self.inputs)} of shapes "
                f"{[i['shape'] for i in self.inputs][:3]}...)"
            )
        if state.finished:
            return state
        self.G.load_state_dict(unprefixed(tensors, "generator"))
        self.C.load_state_dict(unprefixed(tensors, "critic"))
        best = unprefixed(tensors, "best")
        self.best_state = best or None
        self.random.load(tensors)
        self.precision.load_state(state.scalers)
        self.tensors = tensors
        return state

    # ------------------------------------------------------------------ helpers

    @property
    def baseline_name(self) -> str:
        """The validation baseline: bicubic, or the input itself at scale 1."""
        return baseline_label(self.cfg.generator.scale)

    def elapsed(self) -> float:
        return self._elapsed_start + time.perf_counter() - self._session_start

    def label(self, phase: str) -> str:
        if phase == "pretrain_generator" or self.cfg.cycles == 1:
            return phase
        return f"{phase} {self.state.cycle + 1}/{self.cfg.cycles}"

    def count_key(self, phase: str) -> str:
        return phase if phase == "pretrain_generator" else f"{phase}/{self.state.cycle}"

    def todo(self) -> list[str]:
        """Phases still to run, the current one first (for the budget split)."""
        st = self.state
        if st.phase == "done":
            return []
        cycle = ["save_outputs", "pretrain_critic", "gan"] if self.cfg.gan_enabled else []
        if st.phase == "pretrain_generator":
            return ["pretrain_generator", *cycle * self.cfg.cycles]
        return cycle[cycle.index(st.phase) :] + cycle * (self.cfg.cycles - st.cycle - 1)

    def start_phase_clock(self) -> None:
        """Fix this session's budget for the current phase (its share of what is left)."""
        self.phase_start = time.perf_counter()
        if self.budget is None:
            self._phase_seconds = None
            return
        self._phase_seconds = split_remaining(
            self.budget - self.elapsed(), self.fractions, self.todo()
        )

    def phase_time_left(self) -> float:
        assert self._phase_seconds is not None
        return self._phase_seconds - (time.perf_counter() - self.phase_start)

    def exclude_startup(self, seconds: float) -> None:
        """Leave ``seconds`` just spent (the first validation) out of the time budget."""
        self._session_start += seconds
        self.phase_start += seconds

    def out_of_time(self, timer: StepTimer, *, closing: bool) -> bool:
        """Budget mode: whether one more step (and the phase's closing validation) overruns."""
        reserve = timer.seconds_per_step(self.state.step)
        if closing:
            reserve += self.state.overhead
        return self.phase_time_left() <= reserve

    def gan_cycle_fits(self) -> bool:
        """Budget mode: whether what is left can pay for the shortest GAN cycle.

        That is one batch of outputs, one critic step, one GAN step (up to
        ``max_critic_steps`` critic steps and a generator step) and a validation with its
        checkpoint, each step costing about a generator pretraining step.
        """
        assert self.budget is not None
        step = next(
            (
                float(entry["step_seconds"])
                for entry in reversed(self.state.history)
                if entry.get("phase") == "pretrain_generator" and "step_seconds" in entry
            ),
            0.0,
        )
        shortest = (self.cfg.gan.max_critic_steps + 3) * step + self.state.overhead
        return self.budget - self.elapsed() > shortest

    def to_device(self, batch: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for x in batch:
            x = x.to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            out.append(x)
        return out

    def loader(self, stream: str, *, start: int = 0, stop: int | None = None) -> Iterator[Any]:
        sampler = KeyBatches(
            STREAMS[stream],
            self.state.cycle,
            len(self.train_set),
            self.cfg.batch_size,
            start=start,
            stop=stop,
        )
        workers = self.cfg.data.num_workers
        loader = DataLoader(
            self.train_set,
            batch_sampler=sampler,
            num_workers=workers,
            worker_init_fn=_worker_init if workers else None,
            pin_memory=self.device.type == "cuda",
        )
        return iter(loader)

    def validate(self) -> dict[str, float]:
        return self.validator.evaluate(self.G) if self.validator is not None else {}

    def preview(self) -> np.ndarray | None:
        return self.validator.preview(self.G) if self.validator is not None else None

    def want_preview(self, step: int) -> bool:
        every = self.cfg.preview_every
        return bool(every) and step % every == 0

    def event(
        self,
        phase: str,
        step: int,
        total: int | None,
        *,
        losses: dict[str, float] | None = None,
        metrics: dict[str, float] | None = None,
        preview: np.ndarray | None = None,
        message: str = "",
        info: dict[str, Any] | None = None,
    ) -> Progress:
        base = {"cycle": self.state.cycle, "elapsed_s": round(self.elapsed(), 1)}
        if self.validator is not None:
            base["baseline"] = dict(self.state.baseline)
            base["baseline_name"] = self.baseline_name
        return Progress(
            phase=self.label(phase),
            step=step,
            total=total,
            message=message,
            losses=losses or {},
            metrics=metrics or {},
            preview=preview,
            info={**base, **(info or {})},
        )

    def note(self, text: str, **extra: Any) -> None:
        entry = {"phase": self.state.phase, "cycle": self.state.cycle, "note": text, **extra}
        self.state.history.append(entry)
        log.info(text)

    def record_validation(self, phase: str, metrics: dict[str, float]) -> None:
        if metrics:
            self.state.history.append(
                {
                    "phase": phase,
                    "cycle": self.state.cycle,
                    "step": self.state.step,
                    **{k: round(v, 5) for k, v in metrics.items()},
                    "time_s": round(self.elapsed(), 1),
                }
            )

    def checkpoint(self, optimizers: dict[str, torch.optim.Optimizer] | None = None) -> None:
        st = self.state
        tensors = {**prefixed(self.G.state_dict(), "generator")}
        tensors.update(prefixed(self.C.state_dict(), "critic"))
        if self.best_state is not None:
            tensors.update(prefixed(self.best_state, "best"))
        tensors.update(self.random.tensors())
        st.optimizers = {}
        for name, opt in (optimizers or {}).items():
            flat, meta = flatten_optimizer(opt.state_dict(), f"optim.{name}")
            tensors.update(flat)
            st.optimizers[name] = meta
        st.scalers = self.precision.state()
        self.log.flush()
        st.log_rows = self.log.rows
        st.elapsed = self.elapsed()
        write_checkpoint(self.checkpoints, st, tensors)

    def load_optimizer(self, name: str, optimizer: torch.optim.Optimizer) -> None:
        meta = self.state.optimizers.get(name)
        if meta is None or not self.tensors:
            return
        optimizer.load_state_dict(unflatten_optimizer(self.tensors, meta, f"optim.{name}"))

    def log_row(self, phase: str, **values: Any) -> None:
        self.log.write(
            time_s=round(self.elapsed(), 2),
            phase=phase,
            cycle=self.state.cycle,
            step=self.state.step,
            **values,
        )

    def fix_count(
        self,
        phase: str,
        timer: StepTimer,
        *,
        every: int | None = None,
        cap: int | None = None,
        was: int | None = None,
    ) -> int:
        """Budget mode: fix the phase's step count from the measured step time.

        With ``was`` (the count fixed before; ``timer`` then covers the steps since the
        last checkpoint) the count is fitted again to the speed of the latest steps: the
        first steps' speed need not hold for the whole phase on a machine that gets
        busier or quieter. A change within :data:`REFIT_TOLERANCE` keeps ``was``: the
        one-cycle learning rate follows the count and should not jitter.
        """
        step_s = timer.seconds_per_step(self.state.step)
        # a phase with validations ends with one more (and a checkpoint): keep time for it
        closing = self.state.overhead if every else 0.0
        extra = steps_for_budget(
            self.phase_time_left() - closing,
            step_s,
            every=every,
            overhead_seconds=self.state.overhead,
            minimum=0 if was is None else 1,
        )
        total = self.state.step + extra
        if cap is not None:
            total = min(total, cap)
        if was is not None and abs(total - was) <= REFIT_TOLERANCE * was:
            return was
        self.state.counts[self.count_key(phase)] = total
        if was is None:
            budget = f"{format_duration(self._phase_seconds or 0.0)} for {self.label(phase)} at"
        else:
            left = format_duration(max(self.phase_time_left(), 0.0))
            budget = f"{left} left for {self.label(phase)} at {self.state.step} steps,"
        self.note(
            f"time budget: {budget} {step_s:.3f} s/step -> {total} steps"
            + ("" if was is None else f" (was {was})"),
            step_seconds=round(step_s, 4),
        )
        return total

    def save_best_model(self, *, final: bool) -> Path:
        """Write the best generator so far to ``RUN_DIR/model`` with full metadata."""
        net = self.G
        if self.best_state is not None:
            net = copy.deepcopy(self.G).cpu()
            net.load_state_dict(self.best_state)
        st = self.state
        metrics = {k: v for k, v in st.best.items() if k in ("psnr", "ssim")}
        metrics.update({f"bicubic_{k}": v for k, v in st.baseline.items()})
        info = ModelInfo(
            generator=self.cfg.generator,
            normalization=self.train_set.maker.normalization,
            crappify=None if self.crappify is None else self.crappify.model_dump(mode="json"),
            training=self.training_summary(final=final),
            metrics=metrics,
            history=st.history,
            description=(
                "decrappify NoGAN generator"
                + ("" if final else " (after generator pretraining; the run is not finished)")
            ),
        )
        return save_model(self.run_dir / MODEL_NAME, net, info, overwrite=True)

    def training_summary(self, *, final: bool) -> dict[str, Any]:
        summary = self.data_summary
        validation = summary.get("validation") or {}
        sources = [im.get("source") for im in summary.get("images", [])]
        return {
            "finished": final,
            "recipe": "NoGAN" if self.cfg.gan_enabled else "generator pretraining only",
            "steps": steps_done(self.state),
            "seconds": round(self.elapsed(), 1),
            "time_budget": self.budget,
            "device": str(self.device),
            "precision": self.precision.label,
            "best": {k: v for k, v in self.state.best.items() if k in ("phase", "cycle", "step")},
            "data": {
                "mode": summary.get("mode"),
                "scale": summary.get("scale"),
                "patch_size": summary.get("patch_size"),
                "n_frames": summary.get("n_frames"),
                "n_train_images": summary.get("n_images"),
                "n_validation_images": validation.get("n_images"),
                "validation_crops": validation.get("crops"),
                "images": sources,
                "positions": summary.get("positions"),
                "batch_size": self.cfg.batch_size,
                "seed": self.cfg.seed,
            },
            "config": self.cfg.model_dump(mode="json"),
            START_KEY: history_record(self.state.history, START_KEY),
            SELF_CHECK_KEY: history_record(self.state.history, SELF_CHECK_KEY),
        }

    def write_curves(self) -> None:
        try:
            self.log.flush()
            rows = read_log(self.run_dir / LOG_NAME)
            plot_curves(
                rows,
                self.run_dir / CURVES_NAME,
                baseline=self.state.baseline or None,
                baseline_name=self.baseline_name,
                classical=(history_record(self.state.history, SELF_CHECK_KEY) or {}).get(
                    "baselines"
                ),
                title=f"NoGAN training: {self.run_dir.name}",
            )
        except (OSError, OutputError) as err:  # a figure must never stop a run
            log.warning(f"{self.run_dir / CURVES_NAME}: could not draw the curves ({err})")
