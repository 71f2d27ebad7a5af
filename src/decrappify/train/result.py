"""What a training run produces: the model file it keeps up to date, and the result it returns.

- :class:`ModelWriter` writes the best generator so far to ``RUN_DIR/model`` with the
  metadata that describes and reproduces it (after generator pretraining, and at the end);
- :class:`TrainResult`, what :func:`decrappify.train.iter_train` returns, is made from
  the run state by :func:`result_from_state`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from decrappify.config.crappify import CrappifyConfig
from decrappify.config.model import ModelInfo
from decrappify.config.train import TrainConfig
from decrappify.models import save_model
from decrappify.train.clock import Clock
from decrappify.train.folder import MODEL_NAME
from decrappify.train.nets import Nets
from decrappify.train.state import RunState, history_record

__all__ = ["ModelWriter", "TrainResult", "result_from_state", "steps_done"]


@dataclass
class TrainResult:
    """What a finished training run returns.

    Parameters
    ----------
    run_dir : Path
        The run folder.
    model_path : Path
        The best generator (``RUN_DIR/model``), loadable with
        :func:`decrappify.models.load_model`.
    metrics : dict of str to float
        Validation ``psnr`` / ``ssim`` (normalised) of the best generator.
    baseline : dict of str to float
        The baseline's ``psnr`` / ``ssim`` on the same crops.
    best : dict
        Where the best generator comes from (``phase``, ``cycle``, ``step``).
    steps : dict of str to int
        Steps run per phase (summed over cycles; patches for ``save_outputs``).
    history : list of dict
        Validation results and notes, in order.
    seconds : float
        Training time over all sessions.
    already_finished : bool
        The run was complete before this call (resume of a finished run).
    baseline_name : str
        What the baseline is: ``"bicubic"``, or ``"input"`` (the input itself) at scale 1.
    """

    run_dir: Path
    model_path: Path
    metrics: dict[str, float]
    baseline: dict[str, float]
    best: dict[str, Any]
    steps: dict[str, int]
    history: list[dict[str, Any]]
    seconds: float
    already_finished: bool = False
    baseline_name: str = "bicubic"

    @property
    def self_check(self) -> dict[str, Any] | None:
        """The model against classical methods (:mod:`decrappify.metrics.selfcheck`), or None."""
        return history_record(self.history, "self_check")

    @property
    def start(self) -> dict[str, Any] | None:
        """Where the generator started (:mod:`decrappify.train.start`), or None."""
        return history_record(self.history, "start")

    @property
    def gain(self) -> dict[str, float]:
        """Improvement of the model over the baseline (``psnr`` in dB, ``ssim``)."""
        return {k: self.metrics[k] - self.baseline[k] for k in self.metrics if k in self.baseline}


class ModelWriter:
    """Writes the best generator so far to ``RUN_DIR/model`` with its full metadata.

    Parameters
    ----------
    run_dir : Path
        The run folder.
    config : TrainConfig
        The run's (resolved) settings.
    nets : Nets
        The networks (the best generator is written).
    data_summary : dict
        The training data summary (``data.json``).
    normalization : NormalizationConfig
        The normalisation of the training images.
    crappify : CrappifyConfig or None
        The crappifier (None in paired mode).
    clock : Clock
        The run's clock (training time).
    writes : bool
        Whether this process writes the model (process 0 of several).
    """

    def __init__(
        self,
        run_dir: Path,
        config: TrainConfig,
        nets: Nets,
        data_summary: dict[str, Any],
        normalization: Any,
        crappify: CrappifyConfig | None,
        clock: Clock,
        *,
        writes: bool = True,
    ) -> None:
        self.writes = writes
        self.path = run_dir / MODEL_NAME
        self.config = config
        self.nets = nets
        self.data_summary = data_summary
        self.normalization = normalization
        self.crappify = crappify
        self.clock = clock

    def save(self, state: RunState, *, final: bool) -> Path:
        """Write the best generator (the current one if none was kept) and its metadata."""
        if not self.writes:
            return self.path
        metrics = {k: v for k, v in state.best.items() if k in ("psnr", "ssim")}
        metrics.update({f"bicubic_{k}": v for k, v in state.baseline.items()})
        info = ModelInfo(
            generator=self.config.generator,
            normalization=self.normalization,
            crappify=None if self.crappify is None else self.crappify.model_dump(mode="json"),
            training=self.summary(state, final=final),
            metrics=metrics,
            history=state.history,
            description=(
                "decrappify NoGAN generator"
                + ("" if final else " (after generator pretraining; the run is not finished)")
            ),
        )
        return save_model(self.path, self.nets.best_generator(), info, overwrite=True)

    def summary(self, state: RunState, *, final: bool) -> dict[str, Any]:
        """Return the ``training`` record of the model's metadata."""
        cfg, summary = self.config, self.data_summary
        validation = summary.get("validation") or {}
        sources = [im.get("source") for im in summary.get("images", [])]
        return {
            "finished": final,
            "recipe": _recipe(cfg, state),
            "steps": steps_done(state),
            "seconds": round(self.clock.elapsed(), 1),
            "time_budget": self.clock.budget,
            "device": str(self.nets.device),
            "precision": self.nets.precision.label,
            "best": {k: v for k, v in state.best.items() if k in ("phase", "cycle", "step")},
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
                "batch_size": cfg.batch_size,
                "seed": cfg.seed,
            },
            "config": cfg.model_dump(mode="json"),
            "start": history_record(state.history, "start"),
            "self_check": history_record(state.history, "self_check"),
        }


def _recipe(config: TrainConfig, state: RunState) -> str:
    if not config.gan_enabled:
        return "generator pretraining only"
    if state.skip_gan:
        return "generator pretraining only (the time budget could not pay for the GAN phases)"
    return "NoGAN"


def steps_done(state: RunState) -> dict[str, int]:
    """Count the steps run per phase, summed over cycles.

    Parameters
    ----------
    state : RunState
        The run state.

    Returns
    -------
    dict of str to int
        Phase name to steps (patches for ``save_outputs``).
    """
    out: dict[str, int] = {}
    for key, value in state.counts.items():
        name = key.split("/")[0]
        out[name] = out.get(name, 0) + int(value)
    return out


def result_from_state(
    state: RunState,
    run_dir: Path,
    model_path: Path,
    *,
    already_finished: bool,
    baseline_name: str = "bicubic",
) -> TrainResult:
    """Build the :class:`TrainResult` of a run from its state.

    Parameters
    ----------
    state : RunState
        The run state.
    run_dir : Path
        The run folder.
    model_path : Path
        The saved model.
    already_finished : bool
        Whether the run was finished before this call.
    baseline_name : str
        What the baseline is (``"input"`` at scale 1).

    Returns
    -------
    TrainResult
        The result.
    """
    return TrainResult(
        run_dir=run_dir,
        model_path=model_path,
        metrics={k: state.best[k] for k in ("psnr", "ssim") if k in state.best},
        baseline=dict(state.baseline),
        best={k: state.best.get(k) for k in ("phase", "cycle", "step")},
        steps=steps_done(state),
        history=list(state.history),
        seconds=state.elapsed,
        already_finished=already_finished,
        baseline_name=baseline_name,
    )
