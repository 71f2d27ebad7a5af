"""The first NoGAN phases, as functions of a training session (private).

1. :func:`pretrain_generator` (after :func:`initial_validation`): the generator alone,
   content loss, one-cycle AdamW, encoder frozen for a first part;
2. :func:`save_outputs`: its outputs on a sample of training patches go to
   ``RUN_DIR/gen_outputs.zarr`` with the matching HR patches;
3. :func:`pretrain_critic`: the critic learns to tell real HR patches from those outputs.

The GAN phase is :mod:`._gan`.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from decrappify.events import Progress
from decrappify.io.atomic import partial_path, remove_path
from decrappify.train._session import CALIBRATION_STEPS, STREAMS, Session, StepTimer, clone_state
from decrappify.train.run import (
    OUTPUTS_NAME,
    critic_loss,
)
from decrappify.train.schedule import (
    ThresholdStop,
    one_cycle_lr,
    steps_for_budget,
    watch_score,
)
from decrappify.train.start import fine_tuning


def generator_step(
    run: Session, optimizer: torch.optim.Optimizer, lr_b: torch.Tensor, hr_b: torch.Tensor
) -> dict[str, float]:
    with run.random.active():
        with run.precision.autocast():
            pred = run.G(lr_b)
        loss, terms = run.loss_fn(pred.float(), hr_b)
        run.precision.step("pretrain", loss, optimizer)
    return terms


def critic_view(run: Session, *images: torch.Tensor) -> list[torch.Tensor]:
    """The window of each batch the critic judges (``critic.crop``), one random position.

    Call it inside ``run.random.active()`` (the position is drawn from the run's
    generator, so a resumed run draws the same ones).
    """
    crop = run.cfg.critic.crop
    h, w = images[0].shape[-2:]
    if crop is None or (crop >= h and crop >= w):
        return list(images)
    ch, cw = min(crop, h), min(crop, w)
    top = int(torch.randint(0, h - ch + 1, ()))
    left = int(torch.randint(0, w - cw + 1, ()))
    return [x[..., top : top + ch, left : left + cw] for x in images]


def critic_step(
    run: Session,
    optimizer: torch.optim.Optimizer,
    name: str,
    real: torch.Tensor,
    fake: torch.Tensor,
) -> float:
    run.C.train()
    with run.random.active():
        real, fake = critic_view(run, real, fake)
        with run.precision.autocast():
            logits = run.C(torch.cat([real, fake]))
        logits = logits.float()
        loss = critic_loss(logits[: len(real)], logits[len(real) :])
        run.precision.step(name, loss, optimizer)
    return float(loss.detach())


def pretrain_generator(run: Session) -> Generator[Progress, None, None]:
    cfg, st, phase = run.cfg.pretrain_generator, run.state, "pretrain_generator"
    G = run.G
    G.train()
    max_lr = cfg.max_lr * (cfg.fine_tune_lr_factor if fine_tuning(st.history) else 1.0)
    optimizer = torch.optim.AdamW(
        [{**g, "lr": max_lr} for g in G.parameter_groups()],
        weight_decay=cfg.weight_decay,
    )
    run.load_optimizer("pretrain", optimizer)
    frozen_fraction = cfg.resolved_frozen_fraction(run.cfg.encoder_weights is not None)
    calibration = CALIBRATION_STEPS[phase]
    total = st.counts.get(phase)
    if total is None and run.budget is None:
        total = st.counts[phase] = cfg.steps
        st.frozen_steps = round(frozen_fraction * total)
    if st.step == 0:
        yield initial_validation(run, optimizer, total)
    # with a budget the count may be fitted again as the run goes: no fixed end
    batches = run.loader(phase, start=st.step, stop=total if run.budget is None else None)
    timer = StepTimer()
    frozen_now: bool | None = None
    while total is None or st.step < total:
        lr_b, hr_b = run.to_device(next(batches))
        frozen_steps = st.frozen_steps
        if frozen_steps is None:  # budget mode, before the count is fixed
            frozen_steps = calibration if frozen_fraction > 0 else 0
        frozen = st.step < frozen_steps
        if frozen != frozen_now:
            G.freeze_encoder() if frozen else G.unfreeze_encoder()
            frozen_now = frozen
        rate = max_lr / cfg.div_factor
        if total is not None:
            rate = one_cycle_lr(
                st.step,
                total,
                max_lr,
                pct_start=cfg.pct_start,
                div_factor=cfg.div_factor,
                final_div_factor=cfg.final_div_factor,
            )
        for group in optimizer.param_groups:
            factor = cfg.encoder_lr_factor if group.get("name") == "encoder" else 1.0
            group["lr"] = rate * factor
        terms = generator_step(run, optimizer, lr_b, hr_b)
        st.step += 1
        timer.tick(st.step)
        if total is None and (st.step == calibration or run.out_of_time(timer, closing=True)):
            total = run.fix_count(phase, timer, every=cfg.checkpoint_every)
            st.frozen_steps = max(
                round(frozen_fraction * total), calibration if frozen_fraction > 0 else 0
            )
        step = st.step
        checkpoint = step == total or step % cfg.checkpoint_every == 0
        started = time.perf_counter()
        metrics = run.validate() if checkpoint else {}
        preview = run.preview() if checkpoint or run.want_preview(step) else None
        run.log_row(
            phase,
            lr=rate,
            loss=terms["total"],
            **{f"loss_{k}": v for k, v in terms.items() if k != "total"},
            val_psnr=metrics.get("psnr"),
            val_ssim=metrics.get("ssim"),
        )
        if checkpoint:
            run.record_validation(phase, metrics)
            if step == total:
                finish_pretraining(run, metrics)
                run.checkpoint()
            else:
                run.checkpoint({"pretrain": optimizer})
            st.overhead = time.perf_counter() - started  # for the next budget decisions
            if run.budget is not None and step < total:
                total = run.fix_count(phase, timer, every=cfg.checkpoint_every, was=total)
                timer = StepTimer()  # the next fit sees the steps from here on
        # the terms as ``<term>_loss`` (``ssim_loss`` is 1 - SSIM, not the validation SSIM)
        losses = {
            "loss": terms["total"],
            **{f"{k}_loss": v for k, v in terms.items() if k != "total"},
        }
        yield run.event(
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


def initial_validation(
    run: Session, optimizer: torch.optim.Optimizer, total: int | None
) -> Progress:
    """Score the baseline and the initial generator, write the first checkpoint.

    The baseline is bicubic upsampling, or the input itself at scale 1.

    The time this takes is the overhead of one checkpoint, used by time budgets.
    """
    st, phase = run.state, "pretrain_generator"
    if run.validator is not None:
        st.baseline = dict(run.validator.baseline)
        skipped = run.validator.n_skipped
        run.note(
            f"{run.validator.baseline_name} baseline on {run.validator.n_crops} validation "
            f"crops: psnr "
            f"{st.baseline['psnr']:.2f} dB, ssim {st.baseline['ssim']:.4f}"
            + (f" ({skipped} constant crops left out)" if skipped else "")
        )
    else:
        run.note("no validation data: no metrics, no early stopping, the last G is kept")
    start = time.perf_counter()
    metrics = run.validate()
    preview = run.preview()
    run.record_validation(phase, metrics)
    run.log_row(phase, val_psnr=metrics.get("psnr"), val_ssim=metrics.get("ssim"))
    run.checkpoint({"pretrain": optimizer})
    st.overhead = time.perf_counter() - start
    run.exclude_startup(st.overhead)  # like reading the data: the budget starts after it
    return run.event(phase, 0, total, metrics=metrics, preview=preview, message="initial generator")


def finish_pretraining(run: Session, metrics: dict[str, float]) -> None:
    st = run.state
    watch = run.cfg.gan.metric
    run.best_state = clone_state(run.G)
    st.best = {
        "value": watch_score(metrics, watch),
        "metric": watch,
        **metrics,
        "phase": "pretrain_generator",
        "cycle": 0,
        "step": st.step,
    }
    if metrics:
        run.note(
            f"pretrained generator: psnr {metrics['psnr']:.2f} dB, ssim {metrics['ssim']:.4f} "
            f"({run.baseline_name} {st.baseline['psnr']:.2f} dB, {st.baseline['ssim']:.4f})"
        )
    run.save_best_model(final=False)
    st.phase = "save_outputs" if run.cfg.gan_enabled else "done"
    st.step = 0


def save_outputs(run: Session) -> Generator[Progress, None, None]:
    import zarr

    st, phase = run.state, "save_outputs"
    wanted = run.cfg.save_outputs.patches
    batch = run.cfg.batch_size
    target = run.run_dir / OUTPUTS_NAME
    tmp = partial_path(target)
    remove_path(tmp)
    run.G.eval()
    batches = run.loader(phase)
    arrays: tuple[Any, Any] | None = None
    n = wanted if run.budget is None else None
    st.step = 0
    timer = StepTimer()
    try:
        while n is None or st.step < n:
            lr_b, hr_b = next(batches)
            with torch.inference_mode(), run.precision.autocast():
                gen = run.G(run.to_device([lr_b])[0]).float().cpu().numpy()
            hr = hr_b.numpy()
            if n is None:  # budget mode: fix the patch count from the first batch
                per_batch = timer.since_start()
                fit = steps_for_budget(run.phase_time_left(), per_batch, minimum=0)
                n = min(wanted, batch * (fit + 1))
                st.counts[run.count_key(phase)] = n
            if arrays is None:
                arrays = _create_outputs(zarr, tmp, n, batch, hr.shape[1:])
            take = min(batch, n - st.step)
            arrays[0][st.step : st.step + take] = hr[:take]
            arrays[1][st.step : st.step + take] = gen[:take]
            st.step += take
            yield run.event(phase, st.step, n, message=f"{st.step}/{n} patches")
        del batches
        remove_path(target)
        tmp.rename(target)
    finally:
        remove_path(tmp)
        run.G.train()
    st.counts[run.count_key(phase)] = st.step
    st.phase, st.step = "pretrain_critic", 0
    run.checkpoint()


def pretrain_critic(run: Session) -> Generator[Progress, None, None]:
    import zarr

    cfg, st, phase = run.cfg.pretrain_critic, run.state, "pretrain_critic"
    if not (run.run_dir / OUTPUTS_NAME / "zarr.json").is_file():
        run.note(f"{run.run_dir / OUTPUTS_NAME} is missing: saving the outputs again")
        st.phase, st.step = "save_outputs", 0
        return
    group = zarr.open_group(run.run_dir / OUTPUTS_NAME, mode="r")
    hr_arr, gen_arr = group["hr"], group["gen"]
    n = int(hr_arr.shape[0])
    optimizer = torch.optim.AdamW(
        run.C.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99)
    )
    stop = ThresholdStop(cfg.loss_threshold, cfg.smoothing)
    key = run.count_key(phase)
    total = st.counts.get(key)
    if total is None and run.budget is None:
        total = st.counts[key] = cfg.max_steps
    calibration = min(CALIBRATION_STEPS[phase], cfg.max_steps)
    timer = StepTimer()
    st.step = 0
    reached = False
    while st.step < (total if total is not None else cfg.max_steps):
        rng = np.random.default_rng([run.cfg.seed, STREAMS[phase], st.cycle, st.step])
        idx = np.sort(rng.choice(n, size=min(run.cfg.batch_size, n), replace=False))
        real = torch.from_numpy(np.asarray(hr_arr.get_orthogonal_selection((idx,))))
        fake = torch.from_numpy(np.asarray(gen_arr.get_orthogonal_selection((idx,))))
        real, fake = run.to_device([real, fake])
        loss = critic_step(run, optimizer, "critic", real, fake)
        st.step += 1
        timer.tick(st.step)
        if total is None and (st.step == calibration or run.out_of_time(timer, closing=False)):
            total = run.fix_count(phase, timer, cap=cfg.max_steps)
        reached = stop.update(loss)
        run.log_row(phase, lr=cfg.lr, critic_loss=loss)
        yield run.event(phase, st.step, total, losses={"critic": loss})
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
    run.note(text, steps=st.step, loss=round(stop.mean, 4))
    st.counts[key] = st.step
    st.phase, st.step = "gan", 0
    st.early, st.critic_batches, st.critic_steps, st.gan_improved = {}, 0, 0, False
    run.precision.drop("critic")
    run.checkpoint()


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
