"""Where the generator starts: a shipped starting point, a trained model, or random weights.

``start_from`` (``decrappify train --from``) is read once, when a run starts (a resumed
run continues from its checkpoint):

* ``auto`` (the default): the shipped starting point (:mod:`decrappify.pretrained`) of
  the run's scale and modality, when its network is the run's; otherwise random weights.
  The modality comes from the crappifier's name (``em*``, ``fluo*``); a fitted or custom
  crappifier, or real pairs, take the starting point only when it is the one of their
  scale. ImageNet encoder weights (``encoder_weights``) mean random decoder weights: a
  starting point is then not taken.
* ``none``: random weights.
* a starting point's name or a model (folder or ``.safetensors``): that model, which must
  have the run's network and scale; anything else is refused with the setting that
  differs.

:func:`choose_start` decides and says why (the reason goes to the run's history and log);
:func:`load_start` fills the generator.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from decrappify.config.model import GeneratorConfig, ModelInfo
from decrappify.config.train import TrainConfig
from decrappify.errors import InputError
from decrappify.pretrained import (
    AUTO,
    NONE,
    STARTING_POINTS,
    crappifier_modality,
    resolve_model_path,
    shipped,
    starting_point_path,
)
from decrappify.train.state import history_record

__all__ = [
    "START_KEY",
    "Start",
    "choose_start",
    "fine_tuning",
    "generator_max_lr",
    "generator_mismatch",
    "keep_better_start",
    "load_start",
]

#: Key of the history entry (and of the training summary) that records the start.
START_KEY = "start"


@dataclass(frozen=True)
class Start:
    """The generator's starting weights, and why.

    Parameters
    ----------
    name : str or None
        The starting point's name or the model path given; None for random weights.
    path : Path or None
        The model file or folder read; None for random weights.
    reason : str
        One sentence for the log: which, and why.
    info : ModelInfo or None
        The starting model's metadata.
    """

    name: str | None
    path: Path | None
    reason: str
    info: ModelInfo | None = field(default=None, compare=False)

    def record(self) -> dict[str, Any]:
        """Summarise the start for the run's history and its model's training summary.

        Returns
        -------
        dict
            ``from`` (name, path or None), ``reason``, and for a model its ``sha256``
            and ``provenance`` (data, licence) when it records one.
        """
        out: dict[str, Any] = {"from": self.name, "reason": self.reason}
        if self.path is not None:
            out["path"] = str(self.path)
            out["sha256"] = _sha256(self.path)
        if self.info is not None:
            provenance = self.info.training.get("provenance")
            if isinstance(provenance, dict):
                out["provenance"] = provenance
        return out


def _sha256(path: Path) -> str:
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        with file.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def generator_mismatch(ours: GeneratorConfig, theirs: GeneratorConfig) -> str | None:
    """How a model's network differs from the run's, or None when it is the same.

    Parameters
    ----------
    ours : GeneratorConfig
        The run's generator.
    theirs : GeneratorConfig
        The starting model's.

    Returns
    -------
    str or None
        ``"it is a x4 model, this run trains x1"`` or ``"its network differs:
        generator.encoder_depth is 4 there, 3 here (and 2 more settings)"``.
    """
    if ours.scale != theirs.scale:
        return f"it is a x{theirs.scale} model, this run trains x{ours.scale}"
    a, b = _flat(ours.model_dump(mode="json")), _flat(theirs.model_dump(mode="json"))
    diff = [k for k in a if a[k] != b.get(k)] + [k for k in b if k not in a]
    if not diff:
        return None
    first = diff[0]
    more = f" (and {len(diff) - 1} more settings)" if len(diff) > 1 else ""
    return (
        f"its network differs: generator.{first} is {b.get(first)!r} there, {a[first]!r} here{more}"
    )


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys (``naf.width``), so that a difference names one."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def choose_start(config: TrainConfig) -> Start:
    """Decide the generator's starting weights for a new run.

    Parameters
    ----------
    config : TrainConfig
        The run's settings (``start_from``, the generator, the crappifier).

    Returns
    -------
    Start
        The choice and its reason.

    Raises
    ------
    InputError
        For a model given by name or path that does not fit the run (another scale or
        network), or combined with ``encoder_weights``.
    ModelFileError
        For a model path that cannot be read.
    """
    value = config.start_from
    if value == NONE:
        return Start(None, None, "random initial weights (start_from none)")
    if value == AUTO:
        return _auto(config)
    if config.encoder_weights is not None:
        raise InputError(
            f"start_from {value!r}: a whole starting model and encoder_weights exclude each "
            "other; give one of them (--from none to use the encoder weights)"
        )
    from decrappify.models.store import read_model_info

    path = resolve_model_path(value)
    info = read_model_info(path)
    problem = generator_mismatch(config.generator, info.generator)
    if problem:
        raise InputError(
            f"start_from {value!r}: cannot start from this model: {problem}; choose a "
            "starting point that fits the run, set the generator to match it (--set "
            "generator.KEY=VALUE), or --from none"
        )
    kind = "shipped starting point" if value in STARTING_POINTS else "model"
    return Start(value, path, f"from the {kind} {value} (start_from)", info)


def _auto(config: TrainConfig) -> Start:
    """Choose the shipped starting point of the run's scale and modality, if its network fits."""
    from decrappify.models.store import read_model_info

    scale = config.generator.scale
    if config.encoder_weights is not None:
        return Start(None, None, "ImageNet encoder weights and a random decoder (encoder_weights)")
    crappify = config.resolved_crappify()
    modality = crappifier_modality(crappify)
    candidates = [
        sp
        for sp in shipped()
        if sp.scale == scale and (modality is None or sp.modality == modality)
    ]
    what = f"x{scale}" + (f" {modality}" if modality else "")
    if not candidates:
        return Start(None, None, f"random initial weights: no shipped starting point for {what}")
    if len(candidates) > 1:
        names = " or ".join(f"--from {sp.name}" for sp in candidates)
        return Start(
            None,
            None,
            f"random initial weights: the crappifier does not say which modality ({names})",
        )
    chosen = candidates[0]
    path = starting_point_path(chosen.name)
    info = read_model_info(path)
    problem = generator_mismatch(config.generator, info.generator)
    if problem:
        return Start(
            None,
            None,
            f"random initial weights: the shipped starting point {chosen.name} does not fit "
            f"({problem}; tools/train_starting_points.py trains them for another network)",
        )
    why = f"modality {modality} from the crappifier" if modality else "the only one at this scale"
    return Start(
        chosen.name, path, f"from the shipped starting point {chosen.name} (x{scale}, {why})", info
    )


def load_start(start: Start, generator: torch.nn.Module) -> None:
    """Copy the starting model's weights into the run's generator (in place, on its device).

    Parameters
    ----------
    start : Start
        The choice (nothing happens for random weights).
    generator : torch.nn.Module
        The run's generator, built from the same config as the starting model.
    """
    if start.path is None:
        return
    from decrappify.models.store import load_model

    loaded = load_model(start.path)
    with torch.no_grad():
        generator.load_state_dict(loaded.net.state_dict(), strict=True)


def fine_tuning(history: list[dict[str, Any]]) -> bool:
    """Whether the run's generator started from a trained model (its history says).

    Parameters
    ----------
    history : list of dict
        The run's history.

    Returns
    -------
    bool
        True when the start record names a model: generator pretraining then uses
        ``pretrain_generator.fine_tune_lr_factor``.
    """
    record = history_record(history, START_KEY)
    return bool(record and record.get("path"))


def generator_max_lr(config: TrainConfig, history: list[dict[str, Any]]) -> float:
    """Return the peak learning rate of generator pretraining (lower when fine-tuning).

    Parameters
    ----------
    config : TrainConfig
        The run's settings (``pretrain_generator.max_lr`` and ``fine_tune_lr_factor``).
    history : list of dict
        The run's history (its start record).

    Returns
    -------
    float
        ``max_lr``, times ``fine_tune_lr_factor`` when the run started from a model.
    """
    pre = config.pretrain_generator
    return pre.max_lr * (pre.fine_tune_lr_factor if fine_tuning(history) else 1.0)


def keep_better_start(state: Any, nets: Any, report: Any) -> None:
    """Make the starting model the run's model when fine-tuning did worse on validation.

    The starting model's validation scores are those of step 0 (before any step). When
    its PSNR is above the best generator's, the best generator becomes the starting
    model again and the history says so: a fine-tune never returns a model worse than
    the one it started from.

    Parameters
    ----------
    state : RunState
        A finished run's state (its history and best).
    nets : Nets
        Its networks (``best`` becomes the starting model's state).
    report : Reporter
        Where the note goes.
    """
    from decrappify.errors import DecrappifyError
    from decrappify.models.store import load_model

    st = state
    record = history_record(st.history, START_KEY)
    initial = next(
        (
            e
            for e in st.history
            if e.get("phase") == "pretrain_generator" and e.get("step") == 0 and "psnr" in e
        ),
        None,
    )
    if not record or not record.get("path") or initial is None or "psnr" not in st.best:
        return
    if initial["psnr"] <= st.best["psnr"]:
        return
    try:
        weights = load_model(record["path"]).net.state_dict()
    except DecrappifyError as err:
        report.note(f"the starting model could not be read again to compare with ({err})")
        return
    nets.best = {k: v.detach().clone() for k, v in weights.items()}
    scores = {k: initial[k] for k in ("psnr", "ssim", "frc") if k in initial}
    report.note(
        f"the trained generator (psnr {st.best['psnr']:.2f} dB) did not beat its start "
        f"{record.get('from')} ({initial['psnr']:.2f} dB) on the validation crops: the model "
        "is the starting model"
    )
    st.best = {**st.best, **scores, "phase": "start", "cycle": 0, "step": 0}
