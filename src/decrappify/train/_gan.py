"""The GAN phase of NoGAN, as functions of the parts of a training session (private).

Generator and critic train together with adaptive switching (the critic trains until its
loss is below a threshold, then the generator takes a step), validation every few
steps, early stopping at the inflection point, and the best generator kept.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

import torch
import torch.nn.functional as F

from decrappify.config.train import TrainConfig
from decrappify.events import Progress
from decrappify.train._phases import critic_step, critic_view, want_preview
from decrappify.train.budget import CALIBRATION_STEPS, PhaseCount, count_key
from decrappify.train.checkpoints import CheckpointStore
from decrappify.train.clock import Clock
from decrappify.train.nets import Nets
from decrappify.train.report import Reporter
from decrappify.train.schedule import (
    CriticSwitch,
    EarlyStopping,
    watch_score,
)
from decrappify.train.state import RunState
from decrappify.train.streams import DataStreams


def gan_generator_step(
    cfg: TrainConfig,
    nets: Nets,
    optimizer: torch.optim.Optimizer,
    lr_b: torch.Tensor,
    hr_b: torch.Tensor,
) -> dict[str, float]:
    """One generator step on the content + adversarial loss (the critic frozen); the terms."""
    gan = cfg.gan
    G, C = nets.train_G, nets.C  # the critic itself: it does not train here
    C.eval()
    for p in C.parameters():
        p.requires_grad_(False)
    try:
        with nets.random.active():
            with nets.precision.autocast():
                pred = G(lr_b)
                logits = C(critic_view(cfg.critic.crop, pred)[0])
            content, _ = nets.loss_fn(pred.float(), hr_b)
            logits = logits.float()
            adversarial = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
            total = gan.w_content * content + gan.w_adv * adversarial
            nets.precision.step("gan_generator", total, optimizer)
    finally:
        for p in C.parameters():
            p.requires_grad_(True)
        C.train()
    return {
        "total": float(total.detach()),
        "content": float(content.detach()),
        "adversarial": float(adversarial.detach()),
    }


def _early_stopping(cfg: TrainConfig, state: RunState) -> EarlyStopping:
    """The GAN phase's early stopping: resumed, or measured from the generator it starts from."""
    if state.early:
        return EarlyStopping.from_dict(state.early)
    gan = cfg.gan
    early = EarlyStopping(gan.patience, best=_finite_or(state.best.get("value"), -math.inf))
    if gan.fidelity_drop is not None:  # sharper, but not at more than this cost in PSNR
        early.floor = _finite_or(state.best.get("psnr"), math.inf) - gan.fidelity_drop
    return early


def _critic_turn(
    cfg: TrainConfig,
    state: RunState,
    nets: Nets,
    opt_c: torch.optim.Optimizer,
    switch: CriticSwitch,
    batches: Any,
) -> tuple[float, int]:
    """Train the critic until the switching rule hands over; its last loss and steps."""
    critic_steps = 0
    while True:
        lr_c, hr_c = next(batches)
        state.critic_batches += 1
        with torch.no_grad(), nets.random.active(), nets.precision.autocast():
            fake = nets.G(lr_c)
        c_loss = critic_step(nets, cfg.critic.crop, opt_c, "gan_critic", hr_c, fake.detach())
        critic_steps += 1
        state.critic_steps += 1
        if switch.switch_to_generator(c_loss, critic_steps):
            return c_loss, critic_steps


def gan(
    cfg: TrainConfig,
    state: RunState,
    nets: Nets,
    data: DataStreams,
    clock: Clock,
    report: Reporter,
    store: CheckpointStore,
) -> Generator[Progress, None, None]:
    """Phase 4: generator and critic together, validation and early stopping at checkpoints."""
    gan_cfg, st, phase = cfg.gan, state, "gan"
    G = nets.G
    nets.freeze_encoder(False)
    G.train()
    opt_g = torch.optim.Adam(G.parameters(), lr=gan_cfg.lr, betas=gan_cfg.betas)
    opt_c = torch.optim.Adam(
        nets.C.parameters(), lr=gan_cfg.resolved_critic_lr, betas=gan_cfg.betas
    )
    store.load_optimizer(st, "gan_generator", opt_g)
    store.load_optimizer(st, "gan_critic", opt_c)
    optimizers = {"gan_generator": opt_g, "gan_critic": opt_c}
    early = _early_stopping(cfg, st)
    switch = CriticSwitch(gan_cfg.critic_threshold, gan_cfg.max_critic_steps)
    count = PhaseCount(
        clock, st, report, phase,
        fixed=gan_cfg.max_steps,
        calibration=CALIBRATION_STEPS[phase],
        every=gan_cfg.checkpoint_every,
        capped=True,
        ranks=nets.ranks,
    )  # fmt: skip
    g_batches = data.device_batches(phase, st.cycle, start=st.step, stop=count.total)
    c_batches = data.device_batches("critic", st.cycle, start=st.critic_batches)
    stopped = False
    while st.step < (count.bound or 0):
        c_loss, critic_steps = _critic_turn(cfg, st, nets, opt_c, switch, c_batches)
        lr_g, hr_g = next(g_batches)
        g_terms = gan_generator_step(cfg, nets, opt_g, lr_g, hr_g)
        st.step += 1
        total = count.after_step()
        step = st.step
        checkpoint = step == total or step % gan_cfg.checkpoint_every == 0
        metrics = data.validate(G) if checkpoint else {}
        preview = data.preview(G) if checkpoint or want_preview(cfg, step) else None
        if metrics:
            stopped = _judge(cfg, st, nets, report, early, metrics)
        report.row(
            phase,
            lr=gan_cfg.lr,
            loss=g_terms["total"],
            critic_loss=c_loss,
            adv_loss=g_terms["adversarial"],
            critic_steps=critic_steps,
            val_psnr=metrics.get("psnr"),
            val_ssim=metrics.get("ssim"),
        )
        last = stopped or step == total
        if checkpoint and not last:
            store.save(st, optimizers)
        event = report.event(
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
            finish_gan(cfg, st, nets, data, report, store, stopped, early)  # checkpointed first
        count.restart_timer()  # validations and checkpoints are not step time
        yield event
        if last:
            break
    del g_batches, c_batches


def _judge(
    cfg: TrainConfig,
    state: RunState,
    nets: Nets,
    report: Reporter,
    early: EarlyStopping,
    metrics: dict[str, float],
) -> bool:
    """Record a GAN checkpoint's validation, keep the generator if best; whether to stop."""
    st, watch = state, cfg.gan.metric
    report.record_validation("gan", metrics)
    score = watch_score(metrics, watch)
    verdict = early.update(score, metrics.get("psnr", math.inf))
    if verdict.improved:
        nets.keep_best()
        st.gan_improved = True
        st.best = {
            "value": score,
            "metric": watch,
            **metrics,
            "phase": "gan",
            "cycle": st.cycle,
            "step": st.step,
        }
    st.early = early.to_dict()
    return verdict.stop


def finish_gan(
    cfg: TrainConfig,
    state: RunState,
    nets: Nets,
    data: DataStreams,
    report: Reporter,
    store: CheckpointStore,
    stopped: bool,
    early: EarlyStopping,
) -> None:
    """Note how the GAN phase ended, go back to the best generator, move on and checkpoint."""
    gan_cfg, st = cfg.gan, state
    where = f"GAN phase (cycle {st.cycle + 1}/{cfg.cycles})"
    if data.validator is None:
        nets.keep_best()
        st.best = {"phase": "gan", "cycle": st.cycle, "step": st.step}
        report.note(f"{where}: no validation data, kept the last generator")
    elif not st.gan_improved:
        report.note(
            f"{where}: no checkpoint in {st.step} steps beat the generator it started from "
            f"on validation {gan_cfg.metric} ({early.best:.4f}); kept that generator (from "
            f"{st.best.get('phase')}, cycle {st.best.get('cycle', 0) + 1}, step "
            f"{st.best.get('step')})",
            kept=st.best.get("phase"),
        )
    else:
        report.note(
            f"{where}: best validation {gan_cfg.metric} {st.best['value']:.4f} at step "
            f"{st.best['step']}" + (f"; stopped early at step {st.step}" if stopped else ""),
            kept="gan",
        )
    assert nets.best is not None
    nets.G.load_state_dict(nets.best)
    st.counts[count_key("gan", st.cycle)] = st.step
    nets.precision.drop("gan_generator", "gan_critic")
    if st.cycle + 1 < cfg.cycles:
        st.phase, st.cycle, st.step = "save_outputs", st.cycle + 1, 0
    else:
        st.phase, st.step = "done", 0
    st.early, st.critic_batches, st.critic_steps, st.gan_improved = {}, 0, 0, False
    store.save(st)


def _finite_or(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else default
