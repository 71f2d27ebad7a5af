"""The model file: weights in safetensors, metadata (:class:`ModelInfo`) in JSON. Never pickle.

Two layouts, chosen by the path's suffix:

- a folder ``name/`` holding ``model.safetensors`` and ``model.json`` (easy to inspect);
- a single ``name.safetensors`` whose header metadata holds the same JSON under the key
  ``"decrappify"`` (one file to share).

Writes are atomic: everything goes to ``.<name>.partial`` beside the target, renamed at
the end. :func:`save_tensors` / :func:`read_tensors` are the same machinery for any state
dict (trainer checkpoints of the generator and the critic, spectral-norm vectors
included).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import ValidationError
from torch import nn

from decrappify import __version__
from decrappify.config.base import format_validation_error
from decrappify.config.model import MODEL_FORMAT_VERSION, Arch, GeneratorConfig, ModelInfo
from decrappify.errors import InputError, ModelFileError, OutputError
from decrappify.io.atomic import hidden_sibling, partial_path, write_failure
from decrappify.models.factory import generator_skeleton
from decrappify.models.unet import SuperResolutionNet
from decrappify.models.weights import load_checked, state_dict_mismatch, tensors_digest
from decrappify.pretrained import resolve_model_path

log = logging.getLogger("decrappify")

#: File names inside a model folder.
WEIGHTS_NAME = "model.safetensors"
INFO_NAME = "model.json"
#: safetensors header key holding the JSON metadata of a single-file model.
METADATA_KEY = "decrappify"
#: Weights header key of a folder model holding a copy of its generator config.
GENERATOR_KEY = "decrappify_generator"


@dataclass(frozen=True)
class LoadedModel:
    """A model read from disk.

    Parameters
    ----------
    net : SuperResolutionNet
        The network, in eval mode, on the requested device.
    info : ModelInfo
        Its metadata.
    path : Path
        Where it was read from.
    """

    net: SuperResolutionNet
    info: ModelInfo
    path: Path


def _partial(path: Path) -> Path:
    return partial_path(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def _cpu_tensors(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def save_tensors(
    path: str | Path,
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write tensors (a state dict) to a ``.safetensors`` file atomically.

    Parameters
    ----------
    path : str or Path
        Target file (replaced if it exists).
    tensors : mapping of str to torch.Tensor
        For example ``module.state_dict()``; moved to the CPU, made contiguous.
    metadata : mapping of str to str or None
        Header metadata.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    OutputError
        If the file cannot be written.
    """
    from safetensors.torch import save_file

    path = Path(path)
    tmp = _partial(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(_cpu_tensors(tensors), str(tmp), metadata=dict(metadata or {}))
        os.replace(tmp, path)
    except Exception as err:  # safetensors reports a full disk as SafetensorError
        failure = write_failure(path, err, writing=True)
        if failure is not None:
            raise failure from err
        if isinstance(err, OSError):
            raise OutputError(f"{path}: cannot write weights ({err.strerror or err})") from err
        raise
    finally:
        _remove(tmp)
    return path


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a ``.safetensors`` file.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    tensors : dict of str to torch.Tensor
        CPU tensors.
    metadata : dict of str to str
        Header metadata (empty if none).

    Raises
    ------
    ModelFileError
        If the file is missing, truncated or not safetensors.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: weights file not found")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises SafetensorError, OSError, ...
        raise ModelFileError(_unreadable(path, err)) from err
    return tensors, metadata


def read_header(path: str | Path) -> dict[str, str]:
    """Read the header metadata of a ``.safetensors`` file, not its tensors.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    dict of str to str
        Header metadata (empty if none).

    Raises
    ------
    ModelFileError
        If the file is not safetensors, or is truncated (safetensors checks that the
        tensors the header lists fill the file).
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return dict(f.metadata() or {})
    except Exception as err:  # safetensors raises SafetensorError, OSError, ...
        raise ModelFileError(_unreadable(Path(path), err)) from err


def _unreadable(path: Path, err: BaseException) -> str:
    text = " ".join(str(err).split())[:200] or type(err).__name__
    return f"{path}: not a readable safetensors file, it may be truncated or corrupted ({text})"


def _check_info_matches(net: SuperResolutionNet, generator: GeneratorConfig, target: Path) -> None:
    if net.config is not None:
        ours, theirs = net.config.model_dump(), generator.model_dump()
        diff = [k for k in ours if ours[k] != theirs[k]]
        if diff:
            k = diff[0]
            raise InputError(
                f"{target}: info.generator does not describe the network: {k} is "
                f"{theirs[k]!r} in info but {ours[k]!r} in the network"
            )
        return
    expected = {k: v.shape for k, v in generator_skeleton(generator).state_dict().items()}
    problem = state_dict_mismatch(expected, net.state_dict())
    if problem:
        raise InputError(f"{target}: info.generator does not describe the network: {problem}")


def save_model(
    path: str | Path, net: SuperResolutionNet, info: ModelInfo, *, overwrite: bool = False
) -> Path:
    """Save a trained generator and its metadata.

    Parameters
    ----------
    path : str or Path
        ``name.safetensors`` for a single file (metadata in the header), anything else
        for a folder with ``model.safetensors`` + ``model.json``.
    net : SuperResolutionNet
        The network (any device; saved as CPU tensors).
    info : ModelInfo
        Metadata; ``info.generator`` must describe ``net``.
    overwrite : bool
        Replace an existing model at ``path``.

    Returns
    -------
    Path
        The written file or folder.

    Raises
    ------
    OutputError
        If ``path`` exists and ``overwrite`` is False, or it cannot be written.
    InputError
        If ``info.generator`` does not describe ``net``.
    """
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputError(f"{path}: already exists; choose another name or pass --overwrite")
    _check_info_matches(net, info.generator, path)
    tensors = net.state_dict()
    info = info.model_copy(update={"weights_sha256": tensors_digest(tensors)})
    text = info.model_dump_json(indent=2)
    if path.suffix.lower() == ".safetensors":
        if path.is_dir():
            raise OutputError(f"{path}: is a folder; cannot replace it with a model file")
        return save_tensors(path, tensors, {METADATA_KEY: text, "format": "decrappify"})
    tmp, old = _partial(path), hidden_sibling(path, "old")
    moved_aside = False
    try:
        _remove(tmp)
        tmp.mkdir(parents=True)
        header = {"format": "decrappify", GENERATOR_KEY: info.generator.model_dump_json()}
        save_tensors(tmp / WEIGHTS_NAME, tensors, header)
        (tmp / INFO_NAME).write_text(text + "\n", encoding="utf-8")
        if path.exists() or path.is_symlink():
            _remove(old)
            os.replace(path, old)
            moved_aside = True
        os.replace(tmp, path)
    except (OSError, OutputError) as err:
        if moved_aside and not path.exists():
            os.replace(old, path)  # put the previous model back
        if isinstance(err, OutputError):
            raise
        raise write_failure(path, err) or OutputError(
            f"{path}: cannot write the model ({err.strerror or err})"
        ) from err
    finally:
        _remove(tmp)
        if path.exists():
            _remove(old)
    return path


def parse_model_info(text: str, source: str | Path) -> ModelInfo:
    """Validate the JSON metadata of a model file.

    Parameters
    ----------
    text : str
        The JSON.
    source : str or Path
        Where it came from, for messages.

    Returns
    -------
    ModelInfo
        The metadata.

    Raises
    ------
    ModelFileError
        If the JSON is invalid, its format version is newer than this release reads,
        or a field is invalid.
    """
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise ModelFileError(f"{source}: model metadata is not valid JSON ({err})") from err
    if not isinstance(raw, dict):
        raise ModelFileError(
            f"{source}: model metadata must be a JSON object, got {type(raw).__name__}"
        )
    version = raw.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(
            f"{source}: model metadata needs an integer format_version, got {version!r}"
        )
    if version > MODEL_FORMAT_VERSION:
        raise ModelFileError(
            f"{source}: model format version {version} is newer than decrappify {__version__} "
            f"reads (up to {MODEL_FORMAT_VERSION}); upgrade decrappify"
        )
    generator = raw.get("generator")
    if generator is None:
        raise ModelFileError(
            f"{source}: the model metadata has no 'generator' section (the network: encoder, "
            f"scale, ...), so it cannot describe the weights; restore the model's {INFO_NAME}"
        )
    if version < 2 and isinstance(generator, dict):  # before the "lr" layout existed
        raw["generator"] = {**generator, "grid": generator.get("grid", "hr")}
    try:
        info = ModelInfo.model_validate(raw)
    except ValidationError as err:
        raise ModelFileError(
            f"{source}: invalid model metadata: {format_validation_error(err)}"
        ) from err
    check_consistent(info, source)
    return info


def _generator_name(cfg: GeneratorConfig) -> str:
    """Name the network in a load error: ``"resnet34 wide generator"``, ``"naf generator"``."""
    if cfg.arch == Arch.NAF:
        return f"naf generator ({cfg.describe().partition('(')[2].rstrip(')')})"
    return f"{cfg.encoder.value} {cfg.preset.value} generator"


def check_consistent(info: ModelInfo, source: str | Path) -> None:
    """Refuse metadata whose scale disagrees with the crappifier or the training data.

    Parameters
    ----------
    info : ModelInfo
        The metadata.
    source : str or Path
        Where it came from, for messages.

    Raises
    ------
    ModelFileError
        When ``generator.scale`` differs from ``crappify.scale`` or from
        ``training.data.scale`` (an edited or damaged ``model.json``).
    """
    scale = info.generator.scale
    data = info.training.get("data") if isinstance(info.training, dict) else None
    others = {
        "crappify.scale": (info.crappify or {}).get("scale"),
        "training.data.scale": data.get("scale") if isinstance(data, dict) else None,
    }
    for key, value in others.items():
        if isinstance(value, int) and not isinstance(value, bool) and value != scale:
            raise ModelFileError(
                f"{source}: inconsistent model metadata: generator.scale is {scale} but "
                f"{key} is {value}; the model was trained for x{value}, restore its metadata"
            )


def check_weights_header(info: ModelInfo, header: Mapping[str, str], source: str | Path) -> None:
    """Refuse metadata that does not describe the weights it was saved with.

    Folder models keep a copy of ``generator`` in the weights file's header (since this
    check exists); a ``model.json`` edited afterwards no longer matches it.

    Parameters
    ----------
    info : ModelInfo
        The metadata.
    header : mapping of str to str
        The weights file's header metadata.
    source : str or Path
        The model, for messages.

    Raises
    ------
    ModelFileError
        When the header's generator differs from ``info.generator``.
    """
    text = header.get(GENERATOR_KEY)
    if text is None:
        return
    try:
        saved = GeneratorConfig.model_validate_json(text).model_dump(mode="json")
    except ValidationError:
        return
    current = info.generator.model_dump(mode="json")
    diff = [k for k in current if current[k] != saved.get(k)]
    if diff:
        key = diff[0]
        raise ModelFileError(
            f"{source}: inconsistent model: {INFO_NAME} says generator.{key} is "
            f"{json.dumps(current[key])}, the weights were saved with {json.dumps(saved[key])}; "
            f"restore the model's {INFO_NAME}"
        )


def read_model_info(path: str | Path) -> ModelInfo:
    """Read a model's metadata without loading its weights.

    Parameters
    ----------
    path : str or Path
        A model folder (``model.json`` + ``model.safetensors``), a single
        ``.safetensors`` model file (only its header is read) or the name of a shipped
        starting point (``em-4x``, :mod:`decrappify.pretrained`).

    Returns
    -------
    ModelInfo
        The metadata.

    Raises
    ------
    ModelFileError
        If the model is missing, its weights file truncated (only its header is read),
        or its metadata unreadable or inconsistent; the message names the file.
    """
    path = resolve_model_path(path)
    if path.is_dir():
        weights, info_file = _locate(path)
        info = _info_from_json(info_file)  # type: ignore[arg-type]
        check_weights_header(info, read_header(weights), path)  # refuses truncated weights
    elif path.is_file():
        weights, info = path, _info_from_header(read_header(path), path)
    else:
        raise ModelFileError(_not_found(path))
    if info.weights_sha256 is not None:
        check_weights_digest(info, read_tensors(weights)[0], path)
    return info


def check_weights_digest(info: ModelInfo, tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    """Refuse weights that are not those the metadata was saved with.

    Parameters
    ----------
    info : ModelInfo
        The metadata; models saved before format 3 record no digest and are not checked
        (a message at debug level says so).
    tensors : mapping of str to torch.Tensor
        The weights read.
    path : Path
        The model, for messages.

    Raises
    ------
    ModelFileError
        When the weights' digest differs from ``info.weights_sha256`` (another run's
        ``model.safetensors`` copied in, or damaged weights).
    """
    if info.weights_sha256 is None:
        log.debug("%s: saved before weights digests; its weights are not checked", path)
        return
    actual = tensors_digest(tensors)
    if actual != info.weights_sha256:
        raise ModelFileError(
            f"{path}: the weights are not the ones its metadata describes (it records weights "
            f"{info.weights_sha256[:12]}, the file holds {actual[:12]}): {WEIGHTS_NAME} was "
            f"replaced or damaged; put back the model's own {WEIGHTS_NAME}, or use the "
            "model folder it came from whole"
        )


def _info_from_json(info_file: Path) -> ModelInfo:
    try:
        text = info_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{info_file}: cannot read model metadata ({err})") from err
    return parse_model_info(text, info_file)


def _info_from_header(header: Mapping[str, str], path: Path) -> ModelInfo:
    text = header.get(METADATA_KEY)
    if text is None and (GENERATOR_KEY in header or (path.parent / INFO_NAME).is_file()):
        raise ModelFileError(
            f"{path}: this is the weights file of the model folder {path.parent}; pass the "
            f"folder ({path.parent}), which holds its metadata ({INFO_NAME}) too"
        )
    if text is None:
        raise ModelFileError(
            f"{path}: not a decrappify model (no {METADATA_KEY!r} metadata in the header)"
        )
    return parse_model_info(text, path)


def _not_found(path: Path) -> str:
    return (
        f"{path}: model not found (expected a folder with {INFO_NAME} and {WEIGHTS_NAME}, "
        "or a .safetensors file)"
    )


def _locate(path: Path) -> tuple[Path, Path | None]:
    """Return (weights file, JSON file or None when the metadata is in the header)."""
    if path.is_dir():
        weights, info = path / WEIGHTS_NAME, path / INFO_NAME
        for needed in (weights, info):
            if not needed.is_file():
                raise ModelFileError(
                    f"{path}: not a decrappify model folder ({needed.name} missing)"
                )
        return weights, info
    if path.is_file():
        return path, None
    raise ModelFileError(_not_found(path))


def load_model(path: str | Path, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Read a model saved by :func:`save_model`.

    Parameters
    ----------
    path : str or Path
        Model folder, ``.safetensors`` file or the name of a shipped starting point
        (:mod:`decrappify.pretrained`).
    device : str or torch.device
        Where to put the network.

    Returns
    -------
    LoadedModel
        The network (eval mode) and its metadata; ``path`` is the file read.

    Raises
    ------
    ModelFileError
        If the model is missing, corrupted (truncated weights, bad JSON), written by a
        newer format version, or its weights do not match the architecture in its
        metadata; the message names the file.
    """
    path = resolve_model_path(path)
    weights, info_file = _locate(path)
    tensors, header = read_tensors(weights)
    info = _info_from_header(header, path) if info_file is None else _info_from_json(info_file)
    net = generator_skeleton(info.generator)
    cfg = info.generator
    load_checked(
        net,
        tensors,
        source=weights,
        what=f"{_generator_name(cfg)} described in its metadata",
    )
    check_weights_header(info, header, path)  # what the weights' shapes cannot tell (scale)
    check_weights_digest(info, tensors, path)  # another run's weights of the same shapes
    return LoadedModel(net=net.to(device).eval(), info=info, path=path)


def count_parameters(module: nn.Module) -> int:
    """Count the parameters of a module.

    Parameters
    ----------
    module : torch.nn.Module
        The module.

    Returns
    -------
    int
        Total element count of its parameters.
    """
    return sum(p.numel() for p in module.parameters())
