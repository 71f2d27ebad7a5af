"""Train: NoGAN training from files or arrays, with config files and overrides; model metadata."""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from decrappify.api.common import PathLike
from decrappify.errors import InputError
from decrappify.events import Progress, run_to_end

if TYPE_CHECKING:
    from decrappify.config.model import ModelInfo
    from decrappify.config.train import TrainConfig
    from decrappify.pretrained import StartingPoint
    from decrappify.train import TrainResult

#: Settings of :func:`train_config` that are not dotted overrides.
_SETTINGS = (
    "config_file",
    "preset",
    "crappify_file",
    "scale",
    "encoder",
    "time_budget",
    "device",
    "seed",
    "start_from",
    "overrides",
)


def train_config(
    config_file: PathLike | TrainConfig | None = None,
    *,
    preset: str | None = None,
    crappify_file: PathLike | None = None,
    scale: int | None = None,
    encoder: str | None = None,
    time_budget: str | float | None = None,
    device: str | None = None,
    seed: int | None = None,
    start_from: str | None = None,
    paired: bool = False,
    overrides: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """Build a training config from a YAML file (or the defaults) and command-line settings.

    Parameters
    ----------
    config_file : path, TrainConfig or None
        A ``train.yaml`` (for example a run's own, or one written by hand) or a config
        object to start from; None starts from the defaults.
    preset : str or None
        Crappify preset (``em``, ``em-poisson``, ``fluorescence``,
        ``fluorescence-pssr``). The final crappifier's preset also sets the settings
        that differ by kind of data (:func:`~decrappify.config.recipes.recipe_defaults`:
        the loss and GAN phase of EM), unless the config file or ``overrides`` set them.
    crappify_file : path or None
        A crappify YAML file (e.g. from ``decrappify crappify --fit``); overrides
        ``preset``. Without ``scale``, the generator takes the file's scale.
    scale : int or None
        Super-resolution factor: sets the generator's scale and the crappifier's
        downsampling factor. Unless the config file or ``overrides`` set
        ``data.patch_size``, the patch follows the final scale (128 px at scale 1,
        256 otherwise: :func:`~decrappify.config.data.default_patch_size`).
    encoder : str or None
        Generator encoder (``resnet18`` ... ``resnet101``).
    time_budget : str, float or None
        Wall-clock budget (``"20m"``, ``"1h30m"``, seconds).
    device : str or None
        ``auto``, ``cpu`` or ``cuda``.
    seed : int or None
        Seed of everything random.
    start_from : str or None
        The generator's starting weights: ``auto``, ``none``, a shipped starting point
        (``em-4x``, ``fluo-4x``, ``fluo-denoise``) or a model path
        (:mod:`decrappify.train.start`).
    paired : bool
        Training on real LR/HR pairs: the crappifier is set to None (giving a preset or
        a crappify file, or a config file with a crappifier, is then an error).
    overrides : mapping or None
        Dotted keys to values (``{"gan.max_steps": 0}``), applied last.

    Returns
    -------
    TrainConfig
        The validated configuration.

    Raises
    ------
    InputError
        For a missing or invalid file, an unknown override or an invalid value.
    """
    base, explicit = _base_config(config_file)
    values = _crappify_values(
        base,
        explicit,
        name=_name(config_file),
        preset=preset,
        crappify_file=crappify_file,
        scale=scale,
        paired=paired,
    )
    given = {
        "generator.encoder": encoder,
        "time_budget": time_budget,
        "device": device,
        "seed": seed,
        "start_from": None if start_from is None else str(start_from),
    }
    values.update({k: v for k, v in given.items() if v is not None})
    values.update(dict(overrides or {}))
    return base.with_overrides({**values, **_following_defaults(base, values)})


def _base_config(config_file: PathLike | TrainConfig | None) -> tuple[TrainConfig, bool]:
    """Return the config to start from, and whether it names a crappifier of its own."""
    from decrappify.config.train import TrainConfig

    if isinstance(config_file, TrainConfig):
        base = config_file
    elif config_file is not None:
        base = TrainConfig.from_yaml(config_file)
    else:
        return TrainConfig(), False
    return base, "crappify" in base.model_fields_set and base.crappify is not None


def _crappify_values(
    base: TrainConfig,
    explicit: bool,
    *,
    name: str,
    preset: str | None,
    crappify_file: PathLike | None,
    scale: int | None,
    paired: bool,
) -> dict[str, Any]:
    """Return the overrides of the crappifier and the generator's scale."""
    from decrappify.config.crappify import CrappifyConfig

    values: dict[str, Any] = {}
    crappify: Any = None
    if paired:
        if preset is not None or crappify_file is not None:
            raise InputError(
                "crappify: paired training (--lr) uses the real LR images; do not give "
                "--preset or --crappify-config"
            )
        if explicit:
            raise InputError(
                f"{name}: crappify must be null for paired training (--lr) on real LR images"
            )
        values["crappify"] = None
    elif crappify_file is not None:
        crappify = CrappifyConfig.from_yaml(crappify_file)
    elif preset is not None:
        crappify = preset
    if crappify is not None or (scale is not None and not paired):
        chosen = crappify if crappify is not None else base.crappify
        values["crappify"] = _crappify_with_scale(chosen, scale)
    if scale is not None:
        values["generator.scale"] = scale
    elif isinstance(crappify, CrappifyConfig):
        values["generator.scale"] = crappify.scale  # a fitted config sets the scale
    return values


def _following_defaults(base: TrainConfig, values: dict[str, Any]) -> dict[str, Any]:
    """Return the defaults that follow the final scale and crappifier, where none is set."""
    from decrappify.config.data import default_patch_size
    from decrappify.config.recipes import recipe_defaults

    added: dict[str, Any] = {}
    if "data.patch_size" not in values and "patch_size" not in base.data.model_fields_set:
        final_scale = values.get("generator.scale", base.generator.scale)
        added["data.patch_size"] = default_patch_size(final_scale)
    final_crappify = values["crappify"] if "crappify" in values else base.crappify
    for key, value in recipe_defaults(final_crappify).items():
        if key not in values and key not in added and not _is_set(base, key):
            added[key] = value
    return added


def _is_set(config: Any, dotted: str) -> bool:
    """Whether a config (from a file or an object) sets a dotted key itself."""
    node = config
    for part in dotted.split("."):
        if part not in getattr(node, "model_fields_set", ()):
            return False
        node = getattr(node, part)
    return True


def _name(config: Any) -> str:
    return "config" if config is None or not isinstance(config, str | Path) else str(config)


def _crappify_with_scale(crappify: Any, scale: int | None) -> Any:
    """Return the crappifier (a preset name or a config) as JSON-able, with a new scale."""
    from decrappify.config.crappify import CrappifyConfig, get_preset

    if isinstance(crappify, str):
        if scale is None:
            return crappify
        crappify = get_preset(crappify)
    if crappify is None:
        raise InputError("scale: paired training infers the scale from the LR/HR images")
    config = crappify if isinstance(crappify, CrappifyConfig) else CrappifyConfig(**crappify)
    if scale is not None:
        config = config.with_scale(scale)
    return config.model_dump(mode="json")


def _sources(items: Sequence[Any] | None, role: str) -> list[Any] | None:
    """Expand paths, folders and globs; keep arrays and Image records as they are."""
    if items is None:
        return None
    from decrappify.io import expand_inputs

    out: list[Any] = []
    for item in items:
        if isinstance(item, str | Path):
            found = expand_inputs([item])
            if not found:
                raise InputError(f"{item}: no {role} image found")
            out.extend(str(p) for p in found)
        else:
            out.append(item)
    return out


def _recorded_sources(run_dir: Path) -> list[str]:
    """Return the HR image paths a run was started with (``RUN_DIR/data.json``), for resume."""
    path = run_dir / "data.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(
            f"{path}: cannot read the run's training images ({err}); give the HR images again"
        ) from err
    sources = [im.get("source") for im in summary.get("images", [])]
    missing = [s for s in sources if not s or not Path(s).exists()]
    if missing or not sources:
        raise InputError(
            f"{path}: the run's HR images {missing[:3] or sources} are not files any more; "
            "give them again with --hr"
        )
    return sources


def iter_train(
    hr: Sequence[Any] | None,
    out: PathLike,
    *,
    config: TrainConfig | PathLike | None = None,
    lr: Sequence[Any] | None = None,
    resume: bool = False,
    **settings: Any,
) -> Generator[Progress, None, TrainResult]:
    """Train a generator with NoGAN on image files or arrays (progress events).

    Parameters
    ----------
    hr : sequence of path, Image or array, or None
        High-resolution training images: files, folders (every image inside), globs,
        :class:`~decrappify.io.Image` records or arrays. None or empty with ``resume``:
        the images the run was started with (from ``RUN_DIR/data.json``).
    out : path
        Run folder (see :func:`decrappify.train.iter_train`).
    config : TrainConfig, path or None
        A config object, a ``train.yaml`` path, or None: the defaults (with
        ``resume``, the run's own ``train.yaml``).
    lr : sequence or None
        Aligned low-resolution images for paired training (no crappifier).
    resume : bool
        Continue the run in ``out`` from its last checkpoint.
    **settings
        Passed to :func:`train_config`: ``preset``, ``crappify_file``, ``scale``,
        ``encoder``, ``time_budget``, ``device``, ``seed``, ``start_from``, ``overrides``.

    Yields
    ------
    Progress
        One event per training step.

    Returns
    -------
    TrainResult
        Model path, validation metrics, baseline, steps per phase, history.
    """
    from decrappify.config.train import TrainConfig
    from decrappify.devices import prefer_passive_waits

    prefer_passive_waits()  # before torch starts (napari, scripts)
    from decrappify.train import iter_train as run

    unknown = sorted(set(settings) - set(_SETTINGS))
    if unknown:
        raise InputError(f"train: unknown settings {unknown}; expected some of {list(_SETTINGS)}")
    run_dir = Path(out)
    paired = lr is not None
    if config is None and resume and (run_dir / "train.yaml").is_file():
        config = run_dir / "train.yaml"
    if (
        isinstance(config, TrainConfig)
        and not paired
        and not any(v is not None for v in settings.values())
    ):
        cfg = config
    else:
        cfg = train_config(config, paired=paired, **settings)
    hr_list = _sources(hr, "HR")
    if not hr_list:
        if not resume:
            raise InputError("train: give at least one HR training image (--hr)")
        if not (run_dir / "data.json").is_file():
            what = "the folder does not exist" if not run_dir.exists() else "no data.json in it"
            raise InputError(
                f"{run_dir}: no training run to resume ({what}); give the HR images with --hr "
                "to start it"
            )
        hr_list = _recorded_sources(run_dir)
    lr_list = _sources(lr, "LR")
    try:
        return (yield from run(cfg, hr_list, run_dir, lr_sources=lr_list, resume=resume))
    except KeyboardInterrupt as stop:  # Ctrl-C, SIGTERM, SIGHUP: say how to go on
        if (run_dir / "checkpoints" / "state.json").is_file():
            stop.add_note(
                f"the run keeps its last checkpoint: decrappify train --resume -o {run_dir} "
                "continues it"
            )
        raise


def train(hr: Sequence[Any] | None, out: PathLike, **kwargs: Any) -> TrainResult:
    """Run :func:`iter_train` to the end.

    Parameters
    ----------
    hr : sequence of path, Image or array, or None
        High-resolution training images.
    out : path
        Run folder.
    **kwargs
        As :func:`iter_train`.

    Returns
    -------
    TrainResult
        The result.
    """
    result = run_to_end(iter_train(hr, out, **kwargs))
    assert result is not None
    return result


def model_info(path: PathLike) -> ModelInfo:
    """Read a model's metadata without loading its weights.

    Parameters
    ----------
    path : path
        A model folder (``model.json`` + ``model.safetensors``) or a single
        ``.safetensors`` model file.

    Returns
    -------
    ModelInfo
        The metadata (print it with :func:`decrappify.models.describe_model`).

    Raises
    ------
    ModelFileError
        If the model is missing, its weights file truncated (only the header is read),
        or its metadata unreadable or inconsistent.
    """
    from decrappify.models.store import read_model_info

    return read_model_info(path)


def starting_points() -> list[StartingPoint]:
    """List the starting points this installation ships (``train --from``, ``predict NAME``).

    Returns
    -------
    list of StartingPoint
        Each with its ``name``, ``modality``, ``scale`` and a one-line ``summary``; the
        rest (network, data, licence) is in its metadata: :func:`model_info` of the name.
    """
    from decrappify.pretrained import shipped

    return shipped()


def self_check_summary(check: Mapping[str, Any] | None) -> tuple[list[str], str | None]:
    """Describe the end-of-training self-check: lines, and the warning when the model loses.

    Parameters
    ----------
    check : mapping or None
        ``TrainResult.self_check``, or a model's ``training["self_check"]``.

    Returns
    -------
    lines : list of str
        The model's and the classical methods' PSNR / SSIM, and the verdict.
    warning : str or None
        What the model loses to and what to try; None when it beats them all.
    """
    from decrappify.metrics.selfcheck import self_check_lines, self_check_warning

    return self_check_lines(check), self_check_warning(check)


def model_location(model: PathLike) -> Path:
    """Return the folder or file a model path, or a shipped starting point's name, stands for.

    Parameters
    ----------
    model : path
        A model folder, a ``.safetensors`` file or a starting point's name (``em-4x``).

    Returns
    -------
    Path
        The path as given, or the starting point's installed file (an existing path
        wins over a name).
    """
    from decrappify.pretrained import resolve_model_path

    return resolve_model_path(model)
