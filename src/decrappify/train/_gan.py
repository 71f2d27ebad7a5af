"""The GAN phase of NoGAN, as functions of a training session (private).

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

from decrappify.events import Progress
from decrappify.train._phases import critic_step, critic_view
from decrappify.train._session import CALIBRATION_STEPS, Session, StepTimer, clone_state
from decrappify.train.schedule import (
    CriticSwitch,
    EarlyStopping,
    watch_score,
)


def gan_generator_step(
    run: Session, optimizer: torch.optim.Optimizer, lr_b: torch.Tensor, hr_b: torch.Tensor
) -> dict[str, float]:
    cfg = run.cfg.gan
    G, C = run.G, run.C
    C.eval()
    for p in C.parameters():
        p.requires_grad_(False)
    try:
        with run.random.active():
            with run.precision.autocast():
                pred = G(lr_b)
                logits = C(critic_view(run, pred)[0])
            content, _ = run.loss_fn(pred.float(), hr_b)
            logits = logits.float()
            adversarial = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
            total = cfg.w_content * content + cfg.w_adv * adversarial
            run.precision.step("gan_generator", total, optimizer)
    finally:
        for p in C.parameters():
            p.requires_grad_(True)
        C.train()
    return {
        "total": float(total.detach()),
        "content": float(content.detach()),
        "adversarial": float(adversarial.detach()),
    }


def gan(run: Session) -> Generator[Progress, None, None]:
    cfg, st, phase = run.cfg.gan, run.state, "gan"
    G = run.G
    G.unfreeze_encoder()
    G.train()
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=cfg.betas)
    opt_c = torch.optim.Adam(run.C.parameters(), lr=cfg.resolved_critic_lr, betas=cfg.betas)
    run.load_optimizer("gan_generator", opt_g)
    run.load_optimizer("gan_critic", opt_c)
    optimizers = {"gan_generator": opt_g, "gan_critic": opt_c}
    if st.early:
        early = EarlyStopping.from_dict(st.early)
    else:
        start_value = st.best.get("value")
        early = EarlyStopping(cfg.patience, best=_finite_or(start_value, -math.inf))
        if cfg.fidelity_drop is not None:  # sharper, but not at more than this cost in PSNR
            early.floor = _finite_or(st.best.get("psnr"), math.inf) - cfg.fidelity_drop
    switch = CriticSwitch(cfg.critic_threshold, cfg.max_critic_steps)
    key = run.count_key(phase)
    total = st.counts.get(key)
    if total is None and run.budget is None:
        total = st.counts[key] = cfg.max_steps
    calibration = min(CALIBRATION_STEPS[phase], cfg.max_steps)
    g_batches = run.loader(phase, start=st.step, stop=total)
    c_batches = run.loader("critic", start=st.critic_batches)
    timer = StepTimer()
    stopped = False
    while st.step < (total if total is not None else cfg.max_steps):
        critic_steps = 0
        while True:
            lr_c, hr_c = run.to_device(next(c_batches))
            st.critic_batches += 1
            with torch.no_grad(), run.random.active(), run.precision.autocast():
                fake = G(lr_c)
            c_loss = critic_step(run, opt_c, "gan_critic", hr_c, fake.detach())
            critic_steps += 1
            st.critic_steps += 1
            if switch.switch_to_generator(c_loss, critic_steps):
                break
        lr_g, hr_g = run.to_device(next(g_batches))
        g_terms = gan_generator_step(run, opt_g, lr_g, hr_g)
        st.step += 1
        timer.tick(st.step)
        if total is None and (st.step == calibration or run.out_of_time(timer, closing=True)):
            total = run.fix_count(phase, timer, every=cfg.checkpoint_every, cap=cfg.max_steps)
        step = st.step
        checkpoint = step == total or step % cfg.checkpoint_every == 0
        metrics = run.validate() if checkpoint else {}
        preview = run.preview() if checkpoint or run.want_preview(step) else None
        if metrics:
            run.record_validation(phase, metrics)
            score = watch_score(metrics, cfg.metric)
            verdict = early.update(score, metrics.get("psnr", math.inf))
            if verdict.improved:
                run.best_state = clone_state(G)
                st.gan_improved = True
                st.best = {
                    "value": score,
                    "metric": cfg.metric,
                    **metrics,
                    "phase": phase,
                    "cycle": st.cycle,
                    "step": step,
                }
            stopped = verdict.stop
            st.early = early.to_dict()
        run.log_row(
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
            run.checkpoint(optimizers)
        event = run.event(
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
            finish_gan(run, stopped, early)  # checkpointed before the last event
        yield event
        if last:
            break
    del g_batches, c_batches


def finish_gan(run: Session, stopped: bool, early: EarlyStopping) -> None:
    cfg, st = run.cfg.gan, run.state
    where = f"GAN phase (cycle {st.cycle + 1}/{run.cfg.cycles})"
    if run.validator is None:
        run.best_state = clone_state(run.G)
        st.best = {"phase": "gan", "cycle": st.cycle, "step": st.step}
        run.note(f"{where}: no validation data, kept the last generator")
    elif not st.gan_improved:
        run.note(
            f"{where}: no checkpoint in {st.step} steps beat the generator it started from "
            f"on validation {cfg.metric} ({early.best:.4f}); kept that generator (from "
            f"{st.best.get('phase')}, cycle {st.best.get('cycle', 0) + 1}, step "
            f"{st.best.get('step')})",
            kept=st.best.get("phase"),
        )
    else:
        run.note(
            f"{where}: best validation {cfg.metric} {st.best['value']:.4f} at step "
            f"{st.best['step']}" + (f"; stopped early at step {st.step}" if stopped else ""),
            kept="gan",
        )
    assert run.best_state is not None
    run.G.load_state_dict(run.best_state)
    st.counts[run.count_key("gan")] = st.step
    run.precision.drop("gan_generator", "gan_critic")
    if st.cycle + 1 < run.cfg.cycles:
        st.phase, st.cycle, st.step = "save_outputs", st.cycle + 1, 0
    else:
        st.phase, st.step = "done", 0
    st.early, st.critic_batches, st.critic_steps, st.gan_improved = {}, 0, 0, False
    run.checkpoint()


def _finite_or(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else default
