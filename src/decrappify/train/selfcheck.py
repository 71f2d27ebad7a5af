"""The end-of-training self-check: is the model better than a classical method.

When a run ends, its model is scored on the validation crops (the same normalised PSNR /
SSIM as every checkpoint) next to:

* at scale > 1: bilinear and bicubic interpolation, and a Gaussian smoothing of the LR
  input (then bicubic) whose sigma is tuned on these crops;
* at scale 1: the noisy input itself and the classical denoisers of
  :mod:`decrappify.metrics.denoise` (Gaussian, total variation, non-local means), each
  tuned on these crops; BM3D is left out for its cost (``decrappify evaluate --baselines
  bm3d`` scores it).

Tuning on the scored crops favours the baselines: the bar is strict. A model with a
lower PSNR than any of them *loses*, and the record says so with what to try (a longer
budget, a shipped starting point, a crappifier fitted to the microscope). The record is
described in :mod:`decrappify.metrics.selfcheck`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from decrappify.config.train import TrainConfig
from decrappify.durations import format_duration
from decrappify.metrics.baselines import Baseline, upsample
from decrappify.metrics.denoise import PARAM_GRIDS
from decrappify.metrics.selfcheck import loses_to, self_check_lines, self_check_warning
from decrappify.pretrained import shipped
from decrappify.train.result import steps_done
from decrappify.train.start import START_KEY, keep_better_start
from decrappify.train.state import history_record
from decrappify.train.validation import normalized_psnr, normalized_scores

log = logging.getLogger("decrappify")

__all__ = [
    "SELF_CHECK_KEY",
    "advice",
    "check_run",
    "classical_baselines",
    "run_self_check",
]

#: Key of the history entry (and of the training summary) holding the self-check.
SELF_CHECK_KEY = "self_check"
#: The classical denoisers tuned at scale 1 (at larger scales only the Gaussian).
DENOISERS_AT_SCALE_1 = ("gaussian", "tv", "nl-means")


def _two(scores: Mapping[str, float]) -> dict[str, float]:
    return {k: round(float(scores[k]), 4) for k in ("psnr", "ssim") if k in scores}


def _tuned(name: str, lr: np.ndarray, hr: np.ndarray) -> tuple[Baseline, np.ndarray]:
    """Find the denoiser's parameter with the best mean PSNR on the crops; return its outputs.

    Tuned on PSNR alone (the SSIM of every candidate would cost most of the self-check's
    time, which the end of a time-budgeted run pays for).
    """
    best: tuple[float, Baseline, np.ndarray] | None = None
    for value in PARAM_GRIDS[name]:
        baseline = Baseline(name, value)
        preds = np.stack([baseline.apply(x, y.shape) for x, y in zip(lr, hr, strict=True)])
        score = float(np.mean([normalized_psnr(p, y) for p, y in zip(preds, hr, strict=True)]))
        if best is None or score > best[0]:
            best = (score, baseline, preds)
    assert best is not None
    return best[1], best[2]


def _psnr_ssim(preds: np.ndarray, hr: np.ndarray) -> dict[str, float]:
    """Mean normalised PSNR (capped at 100 dB) and SSIM, as the validation reports them."""
    scores = np.array([normalized_scores(p, y) for p, y in zip(preds, hr, strict=True)])
    return _two({"psnr": np.minimum(scores[:, 0], 100.0).mean(), "ssim": scores[:, 1].mean()})


def classical_baselines(
    lr: np.ndarray, hr: np.ndarray, scale: int, plain: Mapping[str, float] | None = None
) -> dict[str, dict[str, float]]:
    """Score the classical methods on validation crops.

    Parameters
    ----------
    lr : numpy.ndarray
        ``(n, n_frames, h, w)`` inputs (the centre frame is used).
    hr : numpy.ndarray
        ``(n, h * scale, w * scale)`` ground truths.
    scale : int
        Upsampling factor.
    plain : mapping or None
        The bicubic (scale 1: input) scores when already known (the validator's baseline).

    Returns
    -------
    dict
        ``{"bilinear": {...}, "bicubic": {...}, "gaussian=1.5": {...}}`` at scale > 1,
        ``{"input": ..., "gaussian=2": ..., "tv=0.1": ..., "nl-means=1": ...}`` at scale 1;
        each ``{"psnr": ..., "ssim": ...}``.
    """
    centre = lr[:, lr.shape[1] // 2]
    out: dict[str, dict[str, float]] = {}
    if scale == 1:
        out["input"] = _two(plain) if plain else _psnr_ssim(centre, hr)
        names: tuple[str, ...] = DENOISERS_AT_SCALE_1
    else:
        for method in ("bilinear", "bicubic"):
            if method == "bicubic" and plain:
                out[method] = _two(plain)
                continue
            up = np.stack([upsample(x, scale, method) for x in centre])
            out[method] = _psnr_ssim(up, hr)
        names = ("gaussian",)
    for name in names:
        baseline, preds = _tuned(name, centre, hr)
        out[baseline.key] = _psnr_ssim(preds, hr)
    return out


def advice(
    config: TrainConfig, start: Mapping[str, Any] | None, steps: Mapping[str, int]
) -> list[str]:
    """List what to try when the model loses, for this run.

    Parameters
    ----------
    config : TrainConfig
        The run's settings.
    start : mapping or None
        The run's start record (:meth:`decrappify.train.start.Start.record`).
    steps : mapping
        Steps run per phase.

    Returns
    -------
    list of str
        A longer budget; a shipped starting point when the run started from random
        weights and one exists at its scale; a fitted crappifier when it used a preset.
    """
    tips = []
    if config.time_budget is not None:
        tips.append(
            f"a longer time budget (this run: {format_duration(config.time_budget)}; "
            "--time-budget 20m or more)"
        )
    else:
        tips.append(
            f"more training ({steps.get('pretrain_generator', 0)} generator steps here; "
            "--time-budget 20m or a higher pretrain_generator.steps)"
        )
    if start is None or start.get("from") is None:
        names = [sp.name for sp in shipped() if sp.scale == config.generator.scale]
        if names:
            tips.append("a starting point (" + " or ".join(f"--from {n}" for n in names) + ")")
    crappify = config.resolved_crappify()
    if crappify is not None and crappify.name != "fitted":
        tips.append(
            "a crappifier fitted to your microscope (decrappify crappify --fit on real "
            "noisy frames, then train --crappify-config)"
        )
    return tips


def run_self_check(
    lr: np.ndarray,
    hr: np.ndarray,
    *,
    model: Mapping[str, float],
    config: TrainConfig,
    plain: Mapping[str, float] | None = None,
    start: Mapping[str, Any] | None = None,
    steps: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Score the classical methods on the validation crops and judge the model against them.

    Parameters
    ----------
    lr, hr : numpy.ndarray
        The validation crops (:class:`~decrappify.train.validation.Validator` ``lr`` /
        ``hr``).
    model : mapping
        The model's validation ``psnr`` / ``ssim`` on the same crops.
    config : TrainConfig
        The run's settings (scale, budget, crappifier).
    plain : mapping or None
        The validator's bicubic (scale 1: input) scores.
    start : mapping or None
        The run's start record.
    steps : mapping or None
        Steps run per phase.

    Returns
    -------
    dict
        The record (:mod:`decrappify.metrics.selfcheck`), with ``crops`` and ``seconds``.
    """
    began = time.perf_counter()
    baselines = classical_baselines(lr, hr, config.generator.scale, plain)
    ours = _two(model)
    lost = loses_to(ours, baselines)
    return {
        "model": ours,
        "baselines": baselines,
        "loses_to": lost,
        "advice": advice(config, start, steps or {}) if lost else [],
        "metric": "psnr",
        "crops": len(hr),
        "seconds": round(time.perf_counter() - began, 1),
    }


def check_run(parts: Any) -> None:
    """Self-check a finished run's best generator and note the result in its history.

    A fine-tuned generator that did worse than its starting model is replaced by it
    first (:func:`~decrappify.train.start.keep_better_start`).

    Parameters
    ----------
    parts : Parts
        The run's parts: its validation crops (none: no check), state (the best
        generator's ``psnr`` / ``ssim``, the baseline, the history), networks, report
        and config. A loss is logged as a warning.
    """
    st, report, validator = parts.state, parts.report, parts.data.validator
    keep_better_start(st, parts.nets, report)
    model = {k: st.best[k] for k in ("psnr", "ssim") if k in st.best}
    if validator is None or not model:
        report.note("self-check: no validation crops, the model could not be checked")
        return
    record = run_self_check(
        validator.lr,
        validator.hr,
        model=model,
        config=parts.config,
        plain=st.baseline or None,
        start=history_record(st.history, START_KEY),
        steps=steps_done(st),
    )
    warning = self_check_warning(record)
    verdict = "it loses" if warning else "it beats them all"
    report.note(f"self-check: {self_check_lines(record)[0]}: {verdict}", **{SELF_CHECK_KEY: record})
    if warning:
        log.warning(warning)
