"""The NoGAN phases of one training run (private: see :mod:`decrappify.train.nogan`)."""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from decrappify.config.model import ModelInfo
from decrappify.config.train import TrainConfig, format_duration, phase_budgets
from decrappify.data.dataset import build_datasets, describe
from decrappify.errors import InputError, OutputError
from decrappify.events import Progress
from decrappify.io.atomic import atomic_write_text, partial_path, remove_path
from decrappify.models import build_critic, build_generator, build_loss, save_model
from decrappify.train.run import (
    CHECKPOINTS_NAME,
    CONFIG_NAME,
    CURVES_NAME,
    DATA_NAME,
    LOG_NAME,
    MODEL_NAME,
    OUTPUTS_NAME,
    KeyBatches,
    TrainResult,
    config_differences,
    critic_loss,
    result_from_state,
    steps_done,
    strip_sources,
)
from decrappify.train.runlog import RunLog, plot_curves, read_log
from decrappify.train.runtime import Precision, RunRandom, derive_seed, resolve_amp, resolve_device
from decrappify.train.schedule import (
    CriticSwitch,
    EarlyStopping,
    ThresholdStop,
    one_cycle_lr,
    split_remaining,
    steps_for_budget,
)
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

#: Draw ``curves.png`` after generator pretraining when it took longer than this (seconds).
CURVES_AFTER_SECONDS = 60.0

#: Data streams: each phase draws its batches from its own sequence of sample keys.
STREAMS = {"pretrain_generator": 1, "save_outputs": 2, "pretrain_critic": 3, "gan": 4, "critic": 5}
#: Keys of the seeds derived from the config's seed.
SEED_GENERATOR, SEED_CRITIC, SEED_TORCH = 11, 12, 13


def _clone_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def _finite_or(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else default


def _create_outputs(zarr: Any, path: Path, n: int, batch: int, shape: tuple[int, ...]) -> Any:
    """Create the ``hr`` and ``gen`` arrays of ``gen_outputs.zarr`` (chunks of one batch)."""
    group = zarr.open_group(path, mode="w")
    group.attrs["description"] = (
        "generator outputs (gen) on training patches and the matching HR patches (hr), "
        "normalised units, shape (patch, 1, y, x)"
    )
    arrays = tuple(
        group.create_array(name, shape=(n, *shape), chunks=(batch, *shape), dtype="float32")
        for name in ("hr", "gen")
    )
    return arrays


class _StepTimer:
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


class Run:
    """One training run: the models, data, state and the phases as generators."""

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
        self.log = RunLog(
            self.run_dir / LOG_NAME, keep_rows=self.state.log_rows if self.resumed else None
        )
        self._session_start = time.perf_counter()
        self._elapsed_start = self.state.elapsed
        self._phase_seconds: float | None = None
        self._phase_start = 0.0

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
        self._phase_start = time.perf_counter()
        if self.budget is None:
            self._phase_seconds = None
            return
        self._phase_seconds = split_remaining(
            self.budget - self.elapsed(), self.fractions, self.todo()
        )

    def phase_time_left(self) -> float:
        assert self._phase_seconds is not None
        return self._phase_seconds - (time.perf_counter() - self._phase_start)

    def out_of_time(self, timer: _StepTimer, *, closing: bool) -> bool:
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
        }

    # ------------------------------------------------------------------ steps

    def generator_step(
        self, optimizer: torch.optim.Optimizer, lr_b: torch.Tensor, hr_b: torch.Tensor
    ) -> dict[str, float]:
        with self.random.active():
            with self.precision.autocast():
                pred = self.G(lr_b)
            loss, terms = self.loss_fn(pred.float(), hr_b)
            self.precision.step("pretrain", loss, optimizer)
        return terms

    def critic_step(
        self, optimizer: torch.optim.Optimizer, name: str, real: torch.Tensor, fake: torch.Tensor
    ) -> float:
        self.C.train()
        with self.random.active():
            with self.precision.autocast():
                logits = self.C(torch.cat([real, fake]))
            logits = logits.float()
            loss = critic_loss(logits[: len(real)], logits[len(real) :])
            self.precision.step(name, loss, optimizer)
        return float(loss.detach())

    def gan_generator_step(
        self, optimizer: torch.optim.Optimizer, lr_b: torch.Tensor, hr_b: torch.Tensor
    ) -> dict[str, float]:
        cfg = self.cfg.gan
        G, C = self.G, self.C
        C.eval()
        for p in C.parameters():
            p.requires_grad_(False)
        try:
            with self.random.active():
                with self.precision.autocast():
                    pred = G(lr_b)
                    logits = C(pred)
                content, _ = self.loss_fn(pred.float(), hr_b)
                logits = logits.float()
                adversarial = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
                total = cfg.w_content * content + cfg.w_adv * adversarial
                self.precision.step("gan_generator", total, optimizer)
        finally:
            for p in C.parameters():
                p.requires_grad_(True)
            C.train()
        return {
            "total": float(total.detach()),
            "content": float(content.detach()),
            "adversarial": float(adversarial.detach()),
        }

    # ------------------------------------------------------------------ phases

    def run(self) -> Generator[Progress, None, None]:
        phases = {
            "pretrain_generator": self.pretrain_generator,
            "save_outputs": self.save_outputs,
            "pretrain_critic": self.pretrain_critic,
            "gan": self.gan,
        }
        while self.state.phase != "done":
            self.start_phase_clock()
            phase = self.state.phase
            if phase == "save_outputs" and self.budget is not None and not self.gan_cycle_fits():
                self.note(
                    f"time budget: {format_duration(max(self.budget - self.elapsed(), 0))} of "
                    f"{format_duration(self.budget)} left, too little for a GAN cycle; "
                    "the remaining GAN cycles are skipped"
                )
                self.state.phase, self.state.step = "done", 0
                break
            yield from phases[phase]()
            self.tensors = {}
            long_phase = time.perf_counter() - self._phase_start > CURVES_AFTER_SECONDS
            if phase == "pretrain_generator" and self.state.phase != "done" and long_phase:
                self.write_curves()  # intermediate curves; the final ones are drawn by finish()

    def fix_count(
        self, phase: str, timer: _StepTimer, *, every: int | None = None, cap: int | None = None
    ) -> int:
        """Budget mode: fix the phase's step count from the measured step time."""
        step_s = timer.seconds_per_step(self.state.step)
        # a phase with validations ends with one more (and a checkpoint): keep time for it
        closing = self.state.overhead if every else 0.0
        extra = steps_for_budget(
            self.phase_time_left() - closing,
            step_s,
            every=every,
            overhead_seconds=self.state.overhead,
            minimum=0,
        )
        total = self.state.step + extra
        if cap is not None:
            total = min(total, cap)
        self.state.counts[self.count_key(phase)] = total
        self.note(
            f"time budget: {format_duration(self._phase_seconds or 0.0)} for {self.label(phase)} "
            f"at {step_s:.3f} s/step -> {total} steps",
            step_seconds=round(step_s, 4),
        )
        return total

    def pretrain_generator(self) -> Generator[Progress, None, None]:
        cfg, st, phase = self.cfg.pretrain_generator, self.state, "pretrain_generator"
        G = self.G
        G.train()
        optimizer = torch.optim.AdamW(
            [{**g, "lr": cfg.max_lr} for g in G.parameter_groups()],
            weight_decay=cfg.weight_decay,
        )
        self.load_optimizer("pretrain", optimizer)
        frozen_fraction = cfg.resolved_frozen_fraction(self.cfg.encoder_weights is not None)
        calibration = CALIBRATION_STEPS[phase]
        total = st.counts.get(phase)
        if total is None and self.budget is None:
            total = st.counts[phase] = cfg.steps
            st.frozen_steps = round(frozen_fraction * total)
        if st.step == 0:
            yield self.initial_validation(optimizer, total)
        batches = self.loader(phase, start=st.step, stop=total)
        timer = _StepTimer()
        frozen_now: bool | None = None
        while total is None or st.step < total:
            lr_b, hr_b = self.to_device(next(batches))
            frozen_steps = st.frozen_steps
            if frozen_steps is None:  # budget mode, before the count is fixed
                frozen_steps = calibration if frozen_fraction > 0 else 0
            frozen = st.step < frozen_steps
            if frozen != frozen_now:
                G.freeze_encoder() if frozen else G.unfreeze_encoder()
                frozen_now = frozen
            rate = cfg.max_lr / cfg.div_factor
            if total is not None:
                rate = one_cycle_lr(
                    st.step,
                    total,
                    cfg.max_lr,
                    pct_start=cfg.pct_start,
                    div_factor=cfg.div_factor,
                    final_div_factor=cfg.final_div_factor,
                )
            for group in optimizer.param_groups:
                factor = cfg.encoder_lr_factor if group.get("name") == "encoder" else 1.0
                group["lr"] = rate * factor
            terms = self.generator_step(optimizer, lr_b, hr_b)
            st.step += 1
            timer.tick(st.step)
            if total is None and (st.step == calibration or self.out_of_time(timer, closing=True)):
                total = self.fix_count(phase, timer, every=cfg.checkpoint_every)
                st.frozen_steps = max(
                    round(frozen_fraction * total), calibration if frozen_fraction > 0 else 0
                )
            step = st.step
            checkpoint = step == total or step % cfg.checkpoint_every == 0
            started = time.perf_counter()
            metrics = self.validate() if checkpoint else {}
            preview = self.preview() if checkpoint or self.want_preview(step) else None
            self.log_row(
                phase,
                lr=rate,
                loss=terms["total"],
                **{f"loss_{k}": v for k, v in terms.items() if k != "total"},
                val_psnr=metrics.get("psnr"),
                val_ssim=metrics.get("ssim"),
            )
            if checkpoint:
                self.record_validation(phase, metrics)
                if step == total:
                    self.finish_pretraining(metrics)
                    self.checkpoint()
                else:
                    self.checkpoint({"pretrain": optimizer})
                st.overhead = time.perf_counter() - started  # for the next budget decisions
            # the terms as ``<term>_loss`` (``ssim_loss`` is 1 - SSIM, not the validation SSIM)
            losses = {
                "loss": terms["total"],
                **{f"{k}_loss": v for k, v in terms.items() if k != "total"},
            }
            yield self.event(
                phase,
                step,
                total,
                losses=losses,
                metrics=metrics,
                preview=preview,
                info={"lr": rate, "frozen_encoder": frozen},
            )
            if step == total:
                break
        del batches
        G.unfreeze_encoder()

    def initial_validation(self, optimizer: torch.optim.Optimizer, total: int | None) -> Progress:
        """Score the bicubic baseline and the initial generator, write the first checkpoint.

        The time this takes is the overhead of one checkpoint, used by time budgets.
        """
        st, phase = self.state, "pretrain_generator"
        if self.validator is not None:
            st.baseline = dict(self.validator.baseline)
            skipped = self.validator.n_skipped
            self.note(
                f"bicubic baseline on {self.validator.n_crops} validation crops: psnr "
                f"{st.baseline['psnr']:.2f} dB, ssim {st.baseline['ssim']:.4f}"
                + (f" ({skipped} constant crops left out)" if skipped else "")
            )
        else:
            self.note("no validation data: no metrics, no early stopping, the last G is kept")
        start = time.perf_counter()
        metrics = self.validate()
        preview = self.preview()
        self.record_validation(phase, metrics)
        self.log_row(phase, val_psnr=metrics.get("psnr"), val_ssim=metrics.get("ssim"))
        self.checkpoint({"pretrain": optimizer})
        st.overhead = time.perf_counter() - start
        # start-up, like reading the data and building the models: the budget starts after it
        self._session_start += st.overhead
        self._phase_start += st.overhead
        return self.event(
            phase, 0, total, metrics=metrics, preview=preview, message="initial generator"
        )

    def finish_pretraining(self, metrics: dict[str, float]) -> None:
        st = self.state
        watch = self.cfg.gan.metric
        self.best_state = _clone_state(self.G)
        st.best = {
            "value": metrics.get(watch, math.nan),
            "metric": watch,
            **metrics,
            "phase": "pretrain_generator",
            "cycle": 0,
            "step": st.step,
        }
        if metrics:
            self.note(
                f"pretrained generator: psnr {metrics['psnr']:.2f} dB, ssim {metrics['ssim']:.4f} "
                f"(bicubic {st.baseline['psnr']:.2f} dB, {st.baseline['ssim']:.4f})"
            )
        self.save_best_model(final=False)
        st.phase = "save_outputs" if self.cfg.gan_enabled else "done"
        st.step = 0

    def save_outputs(self) -> Generator[Progress, None, None]:
        import zarr

        st, phase = self.state, "save_outputs"
        wanted = self.cfg.save_outputs.patches
        batch = self.cfg.batch_size
        target = self.run_dir / OUTPUTS_NAME
        tmp = partial_path(target)
        remove_path(tmp)
        self.G.eval()
        batches = self.loader(phase)
        arrays: tuple[Any, Any] | None = None
        n = wanted if self.budget is None else None
        st.step = 0
        timer = _StepTimer()
        try:
            while n is None or st.step < n:
                lr_b, hr_b = next(batches)
                with torch.inference_mode(), self.precision.autocast():
                    gen = self.G(self.to_device([lr_b])[0]).float().cpu().numpy()
                hr = hr_b.numpy()
                if n is None:  # budget mode: fix the patch count from the first batch
                    per_batch = timer.since_start()
                    fit = steps_for_budget(self.phase_time_left(), per_batch, minimum=0)
                    n = min(wanted, batch * (fit + 1))
                    st.counts[self.count_key(phase)] = n
                if arrays is None:
                    arrays = _create_outputs(zarr, tmp, n, batch, hr.shape[1:])
                take = min(batch, n - st.step)
                arrays[0][st.step : st.step + take] = hr[:take]
                arrays[1][st.step : st.step + take] = gen[:take]
                st.step += take
                yield self.event(phase, st.step, n, message=f"{st.step}/{n} patches")
            del batches
            remove_path(target)
            tmp.rename(target)
        finally:
            remove_path(tmp)
            self.G.train()
        st.counts[self.count_key(phase)] = st.step
        st.phase, st.step = "pretrain_critic", 0
        self.checkpoint()

    def pretrain_critic(self) -> Generator[Progress, None, None]:
        import zarr

        cfg, st, phase = self.cfg.pretrain_critic, self.state, "pretrain_critic"
        if not (self.run_dir / OUTPUTS_NAME / "zarr.json").is_file():
            self.note(f"{self.run_dir / OUTPUTS_NAME} is missing: saving the outputs again")
            st.phase, st.step = "save_outputs", 0
            return
        group = zarr.open_group(self.run_dir / OUTPUTS_NAME, mode="r")
        hr_arr, gen_arr = group["hr"], group["gen"]
        n = int(hr_arr.shape[0])
        optimizer = torch.optim.AdamW(
            self.C.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99)
        )
        stop = ThresholdStop(cfg.loss_threshold, cfg.smoothing)
        key = self.count_key(phase)
        total = st.counts.get(key)
        if total is None and self.budget is None:
            total = st.counts[key] = cfg.max_steps
        calibration = min(CALIBRATION_STEPS[phase], cfg.max_steps)
        timer = _StepTimer()
        st.step = 0
        reached = False
        while st.step < (total if total is not None else cfg.max_steps):
            rng = np.random.default_rng([self.cfg.seed, STREAMS[phase], st.cycle, st.step])
            idx = np.sort(rng.choice(n, size=min(self.cfg.batch_size, n), replace=False))
            real = torch.from_numpy(np.asarray(hr_arr.get_orthogonal_selection((idx,))))
            fake = torch.from_numpy(np.asarray(gen_arr.get_orthogonal_selection((idx,))))
            real, fake = self.to_device([real, fake])
            loss = self.critic_step(optimizer, "critic", real, fake)
            st.step += 1
            timer.tick(st.step)
            if total is None and (st.step == calibration or self.out_of_time(timer, closing=False)):
                total = self.fix_count(phase, timer, cap=cfg.max_steps)
            reached = stop.update(loss)
            self.log_row(phase, lr=cfg.lr, critic_loss=loss)
            yield self.event(phase, st.step, total, losses={"critic": loss})
            if reached:
                break
        if reached:
            text = (
                f"critic pretraining stopped after {st.step} steps: mean loss of the last "
                f"{len(stop.recent)} steps {stop.mean:.3f} < {cfg.loss_threshold}"
            )
        else:
            text = (
                f"critic pretraining ran its {st.step} steps; mean loss of the last "
                f"{len(stop.recent)} steps {stop.mean:.3f} (threshold {cfg.loss_threshold})"
            )
        self.note(text, steps=st.step, loss=round(stop.mean, 4))
        st.counts[key] = st.step
        st.phase, st.step = "gan", 0
        st.early, st.critic_batches, st.critic_steps, st.gan_improved = {}, 0, 0, False
        self.precision.drop("critic")
        self.checkpoint()

    def gan(self) -> Generator[Progress, None, None]:
        cfg, st, phase = self.cfg.gan, self.state, "gan"
        G = self.G
        G.unfreeze_encoder()
        G.train()
        opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=cfg.betas)
        opt_c = torch.optim.Adam(self.C.parameters(), lr=cfg.resolved_critic_lr, betas=cfg.betas)
        self.load_optimizer("gan_generator", opt_g)
        self.load_optimizer("gan_critic", opt_c)
        optimizers = {"gan_generator": opt_g, "gan_critic": opt_c}
        if st.early:
            early = EarlyStopping.from_dict(st.early)
        else:
            start_value = st.best.get("value")
            early = EarlyStopping(cfg.patience, best=_finite_or(start_value, -math.inf))
        switch = CriticSwitch(cfg.critic_threshold, cfg.max_critic_steps)
        key = self.count_key(phase)
        total = st.counts.get(key)
        if total is None and self.budget is None:
            total = st.counts[key] = cfg.max_steps
        calibration = min(CALIBRATION_STEPS[phase], cfg.max_steps)
        g_batches = self.loader(phase, start=st.step, stop=total)
        c_batches = self.loader("critic", start=st.critic_batches)
        timer = _StepTimer()
        stopped = False
        while st.step < (total if total is not None else cfg.max_steps):
            critic_steps = 0
            while True:
                lr_c, hr_c = self.to_device(next(c_batches))
                st.critic_batches += 1
                with torch.no_grad(), self.random.active(), self.precision.autocast():
                    fake = G(lr_c)
                c_loss = self.critic_step(opt_c, "gan_critic", hr_c, fake.detach())
                critic_steps += 1
                st.critic_steps += 1
                if switch.switch_to_generator(c_loss, critic_steps):
                    break
            lr_g, hr_g = self.to_device(next(g_batches))
            g_terms = self.gan_generator_step(opt_g, lr_g, hr_g)
            st.step += 1
            timer.tick(st.step)
            if total is None and (st.step == calibration or self.out_of_time(timer, closing=True)):
                total = self.fix_count(phase, timer, every=cfg.checkpoint_every, cap=cfg.max_steps)
            step = st.step
            checkpoint = step == total or step % cfg.checkpoint_every == 0
            metrics = self.validate() if checkpoint else {}
            preview = self.preview() if checkpoint or self.want_preview(step) else None
            if metrics:
                self.record_validation(phase, metrics)
                verdict = early.update(metrics[cfg.metric])
                if verdict.improved:
                    self.best_state = _clone_state(G)
                    st.gan_improved = True
                    st.best = {
                        "value": metrics[cfg.metric],
                        "metric": cfg.metric,
                        **metrics,
                        "phase": phase,
                        "cycle": st.cycle,
                        "step": step,
                    }
                stopped = verdict.stop
                st.early = early.to_dict()
            self.log_row(
                phase,
                lr=cfg.lr,
                loss=g_terms["total"],
                critic_loss=c_loss,
                adv_loss=g_terms["adversarial"],
                critic_steps=critic_steps,
                val_psnr=metrics.get("psnr"),
                val_ssim=metrics.get("ssim"),
            )
            last = stopped or step == total
            if checkpoint and not last:
                self.checkpoint(optimizers)
            event = self.event(
                phase,
                step,
                total,
                losses={
                    "loss": g_terms["total"],
                    "adv": g_terms["adversarial"],
                    "content": g_terms["content"],
                    "critic": c_loss,
                },
                metrics=metrics,
                preview=preview,
                info={"critic_steps": critic_steps, "best": dict(st.best)},
            )
            if last:
                self.finish_gan(stopped, early)  # checkpointed before the last event
            yield event
            if last:
                break
        del g_batches, c_batches

    def finish_gan(self, stopped: bool, early: EarlyStopping) -> None:
        cfg, st = self.cfg.gan, self.state
        where = f"GAN phase (cycle {st.cycle + 1}/{self.cfg.cycles})"
        if self.validator is None:
            self.best_state = _clone_state(self.G)
            st.best = {"phase": "gan", "cycle": st.cycle, "step": st.step}
            self.note(f"{where}: no validation data, kept the last generator")
        elif not st.gan_improved:
            self.note(
                f"{where}: no checkpoint in {st.step} steps beat the generator it started from "
                f"on validation {cfg.metric} ({early.best:.4f}); kept that generator (from "
                f"{st.best.get('phase')}, cycle {st.best.get('cycle', 0) + 1}, step "
                f"{st.best.get('step')})",
                kept=st.best.get("phase"),
            )
        else:
            self.note(
                f"{where}: best validation {cfg.metric} {st.best['value']:.4f} at step "
                f"{st.best['step']}" + (f"; stopped early at step {st.step}" if stopped else ""),
                kept="gan",
            )
        assert self.best_state is not None
        self.G.load_state_dict(self.best_state)
        st.counts[self.count_key("gan")] = st.step
        self.precision.drop("gan_generator", "gan_critic")
        if st.cycle + 1 < self.cfg.cycles:
            st.phase, st.cycle, st.step = "save_outputs", st.cycle + 1, 0
        else:
            st.phase, st.step = "done", 0
        st.early, st.critic_batches, st.critic_steps, st.gan_improved = {}, 0, 0, False
        self.checkpoint()

    # ------------------------------------------------------------------ end

    def write_curves(self) -> None:
        try:
            self.log.flush()
            rows = read_log(self.run_dir / LOG_NAME)
            plot_curves(
                rows,
                self.run_dir / CURVES_NAME,
                baseline=self.state.baseline or None,
                title=f"NoGAN training: {self.run_dir.name}",
            )
        except (OSError, OutputError) as err:  # a figure must never stop a run
            log.warning(f"{self.run_dir / CURVES_NAME}: could not draw the curves ({err})")

    def finish(self) -> TrainResult:
        st = self.state
        if self.best_state is None:
            self.best_state = _clone_state(self.G)
        ran_gan = any(key.startswith("gan") for key in st.counts)
        if ran_gan and st.best.get("phase") == "pretrain_generator":
            self.note("final model: the pretrained generator (no GAN checkpoint beat it)")
        st.finished = True
        model_path = self.save_best_model(final=True)
        self.write_curves()
        # a finished run is never trained further: its last checkpoint is the state alone
        st.optimizers, st.log_rows, st.elapsed = {}, self.log.rows, self.elapsed()
        self.log.flush()
        write_checkpoint(self.checkpoints, st, self.random.tensors())
        return result_from_state(st, self.run_dir, model_path, already_finished=False)
