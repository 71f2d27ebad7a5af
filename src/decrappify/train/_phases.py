"""The first NoGAN phases, as functions of the parts of a training session (private).

1. :func:`pretrain_generator` (after :func:`initial_validation`): the generator alone,
   content loss, one-cycle AdamW, encoder frozen for a first part;
2. :func:`save_outputs`: its outputs on a sample of training patches go to
   ``RUN_DIR/gen_outputs.zarr`` with the matching HR patches;
3. :func:`pretrain_critic`: the critic learns to tell real HR patches from those outputs.

The GAN phase is :mod:`._gan`.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from decrappify.config.train import TrainConfig
from decrappify.errors import InputError
from decrappify.events import Progress
from decrappify.io.atomic import partial_path, remove_path
from decrappify.models.critic import critic_accuracy
from decrappify.train.budget import (
    CALIBRATION_STEPS,
    PhaseCount,
    count_key,
    drop_unaffordable_gan,
)
from decrappify.train.checkpoints import CheckpointStore
from decrappify.train.clock import Clock
from decrappify.train.nets import Nets
from decrappify.train.report import Reporter
from decrappify.train.result import ModelWriter
from decrappify.train.schedule import (
    ThresholdStop,
    one_cycle_lr,
    steps_for_budget,
    watch_score,
)
from decrappify.train.start import generator_max_lr
from decrappify.train.state import RunState
from decrappify.train.streams import STREAMS, DataStreams


def generator_step(
    nets: Nets, optimizer: torch.optim.Optimizer, lr_b: torch.Tensor, hr_b: torch.Tensor
) -> dict[str, float]:
    """One optimiser step of the generator on the content loss; the global batch's terms."""
    with nets.random.active():
        with nets.precision.autocast():
            pred = nets.train_G(lr_b)
        loss, terms = nets.loss_fn(pred.float(), hr_b)
        nets.precision.step("pretrain", loss, optimizer)
    return nets.ranks.mean(terms)  # the global batch's losses


def critic_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """The critic's loss: mean BCE of real (label 1) and generated (label 0) logits.

    ``(BCE(real, 1) + BCE(fake, 0)) / 2``; ``ln 2`` at chance.
    """
    real = F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real))
    fake = F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))
    return (real + fake) / 2


def critic_view(crop: int | None, *images: torch.Tensor) -> list[torch.Tensor]:
    """The window of each batch the critic judges (``critic.crop``), one random position.

    Call it inside ``nets.random.active()`` (the position is drawn from the run's
    generator, so a resumed run draws the same ones).
    """
    h, w = images[0].shape[-2:]
    if crop is None or (crop >= h and crop >= w):
        return list(images)
    ch, cw = min(crop, h), min(crop, w)
    top = int(torch.randint(0, h - ch + 1, ()))
    left = int(torch.randint(0, w - cw + 1, ()))
    return [x[..., top : top + ch, left : left + cw] for x in images]


def critic_step(
    nets: Nets,
    crop: int | None,
    optimizer: torch.optim.Optimizer,
    name: str,
    real: torch.Tensor,
    fake: torch.Tensor,
) -> float:
    """One optimiser step of the critic on real and generated batches; the global batch's loss."""
    nets.C.train()
    with nets.random.active():
        real, fake = critic_view(crop, real, fake)
        with nets.precision.autocast():
            logits = nets.train_C(torch.cat([real, fake]))
        logits = logits.float()
        loss = critic_loss(logits[: len(real)], logits[len(real) :])
        nets.precision.step(name, loss, optimizer)
    return nets.ranks.mean({"loss": float(loss.detach())})["loss"]


def _set_rate(
    cfg: TrainConfig,
    optimizer: torch.optim.Optimizer,
    step: int,
    total: int | None,
    max_lr: float,
) -> float:
    """Set the one-cycle learning rate of a pretraining step (the start rate while the
    count is not fixed yet); the decoder's rate."""
    pre = cfg.pretrain_generator
    rate = max_lr / pre.div_factor
    if total is not None:
        rate = one_cycle_lr(
            step,
            total,
            max_lr,
            pct_start=pre.pct_start,
            div_factor=pre.div_factor,
            final_div_factor=pre.final_div_factor,
        )
    for group in optimizer.param_groups:
        factor = pre.encoder_lr_factor if group.get("name") == "encoder" else 1.0
        group["lr"] = rate * factor
    return rate


def pretrain_generator(
    cfg: TrainConfig,
    state: RunState,
    nets: Nets,
    data: DataStreams,
    clock: Clock,
    report: Reporter,
    store: CheckpointStore,
    model: ModelWriter,
) -> Generator[Progress, None, None]:
    """Phase 1: the generator alone (one event per step, validation at checkpoints)."""
    pre, st, phase = cfg.pretrain_generator, state, "pretrain_generator"
    G = nets.G
    G.train()
    max_lr = generator_max_lr(cfg, st.history)  # lower when fine-tuning a trained model
    optimizer = torch.optim.AdamW(
        [{**g, "lr": max_lr} for g in G.parameter_groups()], weight_decay=pre.weight_decay
    )
    store.load_optimizer(st, "pretrain", optimizer)
    frozen_fraction = pre.resolved_frozen_fraction(cfg.encoder_weights is not None)
    count = PhaseCount(
        clock, st, report, phase,
        fixed=pre.steps,
        calibration=CALIBRATION_STEPS[phase],
        every=pre.checkpoint_every,
        on_first_fit=lambda step_s: drop_unaffordable_gan(cfg, st, clock, report, step_s),
        ranks=nets.ranks,
    )  # fmt: skip
    if st.step == 0:
        yield initial_validation(st, nets, data, clock, report, store, optimizer, count.total)
        count.restart_timer()
    # with a budget the count follows the machine's speed: no fixed end
    stop = None if clock.limited else count.total
    batches = data.device_batches(phase, st.cycle, start=st.step, stop=stop)
    frozen_now: bool | None = None
    while count.total is None or st.step < count.total:
        lr_b, hr_b = next(batches)
        frozen = _frozen(st, count, frozen_fraction)
        if frozen != frozen_now:
            nets.freeze_encoder(frozen)
            frozen_now = frozen
        rate = _set_rate(cfg, optimizer, st.step, count.total, max_lr)
        terms = generator_step(nets, optimizer, lr_b, hr_b)
        st.step += 1
        total = count.after_step()
        step = st.step
        checkpoint = step == total or step % pre.checkpoint_every == 0
        started = clock.now()
        metrics = data.validate(G) if checkpoint else {}
        preview = data.preview(G) if checkpoint or want_preview(cfg, step) else None
        report.row(
            phase,
            lr=rate,
            loss=terms["total"],
            **{f"loss_{k}": v for k, v in terms.items() if k != "total"},
            val_psnr=metrics.get("psnr"),
            val_ssim=metrics.get("ssim"),
        )
        if checkpoint:
            report.record_validation(phase, metrics)
            if step == total:
                finish_pretraining(cfg, st, nets, report, model, metrics)
                store.save(st)
            else:
                store.save(st, {"pretrain": optimizer})
            st.overhead = clock.now() - started  # for the next budget decisions
        count.restart_timer()  # validations and previews are not step time
        # the terms as ``<term>_loss`` (``ssim_loss`` is 1 - SSIM, not the validation SSIM)
        losses = {
            "loss": terms["total"],
            **{f"{k}_loss": v for k, v in terms.items() if k != "total"},
        }
        yield report.event(
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
    nets.freeze_encoder(False)


def _frozen(state: RunState, count: PhaseCount, frozen_fraction: float) -> bool:
    """Whether the encoder is frozen for the next step (its share of the count, once fixed)."""
    # under a budget the measured steps are frozen too
    least = count.calibration if frozen_fraction > 0 and count.clock.limited else 0
    if state.frozen_steps is None and count.total is not None:
        state.frozen_steps = max(round(frozen_fraction * count.total), least)
    frozen_steps = least if state.frozen_steps is None else state.frozen_steps
    return state.step < frozen_steps


def want_preview(cfg: TrainConfig, step: int) -> bool:
    """Whether step ``step`` yields a preview image (``preview_every``)."""
    return bool(cfg.preview_every) and step % cfg.preview_every == 0


def initial_validation(
    state: RunState,
    nets: Nets,
    data: DataStreams,
    clock: Clock,
    report: Reporter,
    store: CheckpointStore,
    optimizer: torch.optim.Optimizer,
    total: int | None,
) -> Progress:
    """Score the baseline and the initial generator, write the first checkpoint.

    The baseline is bicubic upsampling, or the input itself at scale 1.

    The time this takes is the overhead of one checkpoint, used by time budgets.
    """
    st, phase, validator = state, "pretrain_generator", data.validator
    if validator is not None:
        st.baseline = dict(validator.baseline)
        skipped = validator.n_skipped
        report.note(
            f"{validator.baseline_name} baseline on {validator.n_crops} validation "
            f"crops: psnr "
            f"{st.baseline['psnr']:.2f} dB, ssim {st.baseline['ssim']:.4f}"
            + (f" ({skipped} constant crops left out)" if skipped else "")
        )
    else:
        report.note("no validation data: no metrics, no early stopping, the last G is kept")
    start = clock.now()
    metrics = data.validate(nets.G)
    preview = data.preview(nets.G)
    report.record_validation(phase, metrics)
    report.row(phase, val_psnr=metrics.get("psnr"), val_ssim=metrics.get("ssim"))
    store.save(st, {"pretrain": optimizer})
    st.overhead = clock.now() - start
    clock.exclude(st.overhead)  # like reading the data: the budget starts after it
    return report.event(
        phase, 0, total, metrics=metrics, preview=preview, message="initial generator"
    )


def finish_pretraining(
    cfg: TrainConfig,
    state: RunState,
    nets: Nets,
    report: Reporter,
    model: ModelWriter,
    metrics: dict[str, float],
) -> None:
    """Keep the pretrained generator as the best so far, write it to ``model/``, move on."""
    st = state
    watch = cfg.gan.metric
    nets.keep_best()
    st.best = {
        "value": watch_score(metrics, watch),
        "metric": watch,
        **metrics,
        "phase": "pretrain_generator",
        "cycle": 0,
        "step": st.step,
    }
    if metrics:
        report.note(
            f"pretrained generator: psnr {metrics['psnr']:.2f} dB, ssim {metrics['ssim']:.4f} "
            f"({report.baseline_name} {st.baseline['psnr']:.2f} dB, {st.baseline['ssim']:.4f})"
        )
    model.save(st, final=False)
    st.phase = "save_outputs" if cfg.gan_enabled and not st.skip_gan else "done"
    st.step = 0


def save_outputs(
    cfg: TrainConfig,
    state: RunState,
    nets: Nets,
    data: DataStreams,
    clock: Clock,
    report: Reporter,
    store: CheckpointStore,
    target: Path,
) -> Generator[Progress, None, None]:
    """Phase 2: the generator's outputs on training patches, with the HR patches, to ``target``.

    On several processes each computes its part of every batch and process 0 writes them.
    """
    import zarr

    st, phase, ranks = state, "save_outputs", nets.ranks
    wanted = cfg.save_outputs.patches
    batch = cfg.batch_size
    tmp = partial_path(target)
    if ranks.is_main:
        remove_path(tmp)
    nets.G.eval()
    batches = data.batches(phase, st.cycle)
    arrays: tuple[Any, Any] | None = None
    n = wanted if not clock.limited else None
    st.step = 0
    timer = clock.timer()
    try:
        while n is None or st.step < n:
            hr, gen = _outputs(nets, *next(batches))
            if n is None:  # budget mode: fix the patch count from the first batch
                per_batch = max(timer.since_start(), 1e-6)  # the first batch, allocation included
                fit = steps_for_budget(clock.phase_time_left(), per_batch, minimum=0)
                n = ranks.decide(min(wanted, batch * (fit + 1)))
                st.counts[count_key(phase, st.cycle)] = n
            if arrays is None and ranks.is_main:
                arrays = _create_outputs(zarr, tmp, n, batch, hr.shape[1:])
            take = min(batch, n - st.step)
            if arrays is not None:
                arrays[0][st.step : st.step + take] = hr[:take]
                arrays[1][st.step : st.step + take] = gen[:take]
            st.step += take
            timer.tick()
            late = (
                clock.limited and st.step < n and clock.phase_time_left() < timer.seconds_per_step()
            )
            if ranks.decide(late):
                n = st.step  # the machine got slower: end within the share
                for array in arrays or ():
                    array.resize((n, *array.shape[1:]))
            yield report.event(phase, st.step, n, message=f"{st.step}/{n} patches")
        del batches
        if ranks.is_main:
            remove_path(target)
            tmp.rename(target)
    finally:
        if ranks.is_main:
            remove_path(tmp)
        nets.G.train()
    ranks.barrier()  # the outputs are there for every process
    st.counts[count_key(phase, st.cycle)] = st.step
    st.phase, st.step = "pretrain_critic", 0
    store.save(st)


def _outputs(nets: Nets, lr_b: torch.Tensor, hr_b: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The HR patches and the generator's outputs of a whole batch (every process's part)."""
    with torch.inference_mode(), nets.precision.autocast():
        gen = nets.G(nets.to_device([lr_b])[0]).float()
    ranks = nets.ranks
    return ranks.gather(hr_b).numpy(), ranks.gather(gen).cpu().numpy()


def pretrain_critic(
    cfg: TrainConfig,
    state: RunState,
    nets: Nets,
    clock: Clock,
    report: Reporter,
    store: CheckpointStore,
    outputs: Path,
) -> Generator[Progress, None, None]:
    """Phase 3: the critic alone, real HR patches against the saved ``outputs``."""
    import zarr

    pre, st, phase = cfg.pretrain_critic, state, "pretrain_critic"
    if not (outputs / "zarr.json").is_file():
        report.note(f"{outputs} is missing: saving the outputs again")
        st.phase, st.step = "save_outputs", 0
        return
    group = zarr.open_group(outputs, mode="r")
    hr_arr, gen_arr = group["hr"], group["gen"]
    n, held = held_out_split(int(hr_arr.shape[0]), pre.holdout)
    if n < nets.ranks.world:
        raise InputError(
            f"save_outputs.patches: {n} saved patches cannot feed the {nets.ranks.world} "
            "processes of the run; save at least one per process"
        )
    optimizer = torch.optim.AdamW(
        nets.C.parameters(), lr=pre.lr, weight_decay=pre.weight_decay, betas=(0.9, 0.99)
    )
    stop = ThresholdStop(pre.loss_threshold, pre.smoothing)
    count = PhaseCount(
        clock, st, report, phase,
        fixed=pre.max_steps, calibration=CALIBRATION_STEPS[phase], capped=True, ranks=nets.ranks,
    )  # fmt: skip
    st.step = 0
    reached = False
    while st.step < (count.bound or 0):
        rng = np.random.default_rng([cfg.seed, STREAMS[phase], st.cycle, st.step])
        idx = np.sort(rng.choice(n, size=min(cfg.batch_size, n), replace=False))
        idx = np.array_split(idx, nets.ranks.world)[nets.ranks.rank]  # this process's part
        real = torch.from_numpy(np.asarray(hr_arr.get_orthogonal_selection((idx,))))
        fake = torch.from_numpy(np.asarray(gen_arr.get_orthogonal_selection((idx,))))
        real, fake = nets.to_device([real, fake])
        loss = critic_step(nets, cfg.critic.crop, optimizer, "critic", real, fake)
        st.step += 1
        total = count.after_step()
        reached = stop.update(loss)
        report.row(phase, lr=pre.lr, critic_loss=loss)
        yield report.event(phase, st.step, total, losses={"critic": loss})
        if reached:
            break
    accuracy = held_out_accuracy(nets, cfg, hr_arr, gen_arr, range(n, n + held))
    _finish_critic(pre.loss_threshold, st, nets, report, store, stop, reached, count.key, accuracy)


def _finish_critic(
    threshold: float,
    state: RunState,
    nets: Nets,
    report: Reporter,
    store: CheckpointStore,
    stop: ThresholdStop,
    reached: bool,
    key: str,
    accuracy: dict[str, float],
) -> None:
    """Note how critic pretraining ended, record its count and move on to the GAN phase."""
    st = state
    if reached:
        text = (
            f"critic pretraining stopped after {st.step} steps: mean loss of the last "
            f"{len(stop.recent)} steps {stop.mean:.3f} < {threshold}"
        )
    else:
        text = (
            f"critic pretraining ran its {st.step} steps; mean loss of the last "
            f"{len(stop.recent)} steps {stop.mean:.3f} (threshold {threshold})"
        )
    if accuracy:
        text += (
            f"; held-out accuracy {100 * accuracy['accuracy']:.1f} % on {accuracy['patches']:g} "
            f"real and as many generated patches (real {100 * accuracy['real']:.1f} %, "
            f"generated {100 * accuracy['fake']:.1f} %)"
        )
    extra = {f"critic_{k}": round(v, 4) for k, v in accuracy.items() if k != "patches"}
    report.note(text, steps=st.step, loss=round(stop.mean, 4), **extra)
    st.counts[key] = st.step
    st.phase, st.step = "gan", 0
    st.early, st.critic_batches, st.critic_steps, st.gan_improved = {}, 0, 0, False
    nets.precision.drop("critic")
    store.save(st)


def held_out_split(n: int, fraction: float) -> tuple[int, int]:
    """Saved patches the critic trains on, and the ones after them held back to test it.

    At least one patch always trains; nothing is held back when ``fraction`` is 0 or
    only one patch was saved.
    """
    held = min(int(round(n * fraction)), n - 1) if fraction > 0 else 0
    return n - max(held, 0), max(held, 0)


def held_out_accuracy(
    nets: Nets, cfg: TrainConfig, hr_arr: Any, gen_arr: Any, indices: range
) -> dict[str, float]:
    """The critic's accuracy on held-back real patches and generator outputs (empty if none)."""
    if not len(indices):
        return {}
    idx = np.asarray(indices)
    real = torch.from_numpy(np.asarray(hr_arr.get_orthogonal_selection((idx,))))
    fake = torch.from_numpy(np.asarray(gen_arr.get_orthogonal_selection((idx,))))
    real, fake = nets.to_device([real, fake])
    with nets.precision.autocast():
        scores = critic_accuracy(
            nets.C, real, fake, crop=cfg.critic.crop, batch_size=cfg.batch_size
        )
    return {**scores, "patches": float(len(idx))}


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
