"""Reading and checking weight files (``.pth`` / ``.pt`` state dicts and ``.safetensors``).

Weights are never unpickled: ``.pth`` files are read with ``torch.load(weights_only=True)``,
which only rebuilds tensors and plain containers. Mismatches are reported in one line
that names the file and the first offending keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from decrappify.errors import ModelFileError

#: How many offending keys an error message lists.
MAX_KEYS_IN_MESSAGE = 3

_TORCH_SUFFIXES = (".pth", ".pt", ".bin")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a local ``.pth``/``.pt`` or ``.safetensors`` file.

    ``.pth`` files may hold the state dict itself or wrap it as ``{"state_dict": ...}``
    or ``{"model": ...}``; a ``module.`` prefix (from ``DataParallel``) is removed.

    Parameters
    ----------
    path : str or Path
        The file (``~`` is expanded to the home folder).

    Returns
    -------
    dict of str to torch.Tensor
        Tensors on the CPU.

    Raises
    ------
    ModelFileError
        If the file is missing, unreadable, needs full unpickling, or holds no tensors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelFileError(f"{path}: weights file not found")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            raw: object = load_file(str(path), device="cpu")
        except Exception as err:  # safetensors raises several error types
            raise ModelFileError(
                f"{path}: not a readable safetensors file ({_one_line(err)})"
            ) from err
    elif suffix in _TORCH_SUFFIXES:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # UnpicklingError, RuntimeError, EOFError ...
            raise ModelFileError(
                f"{path}: cannot be read as a plain state dict with torch.load(weights_only=True)"
                f" ({_one_line(err)}); save it with torch.save(model.state_dict()) or as"
                " .safetensors"
            ) from err
    else:
        raise ModelFileError(
            f"{path}: expected a .pth, .pt or .safetensors weights file, "
            f"got {suffix or 'no suffix'!r}"
        )
    return _unwrap(raw, path)


def _unwrap(raw: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(raw, Mapping):
        for key in ("state_dict", "model"):
            inner = raw.get(key)
            if isinstance(inner, Mapping):
                raw = inner
                break
    if not isinstance(raw, Mapping):
        raise ModelFileError(f"{path}: expected a state dict, got {type(raw).__name__}")
    tensors = {str(k): v for k, v in raw.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelFileError(f"{path}: expected a state dict of tensors, found no tensors")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    return tensors


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:200] if text else type(err).__name__


def _first(keys: Iterable[str]) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:MAX_KEYS_IN_MESSAGE])
    more = len(keys) - MAX_KEYS_IN_MESSAGE
    return shown + (f" (and {more} more)" if more > 0 else "")


def state_dict_mismatch(
    expected: Mapping[str, torch.Size | tuple[int, ...]],
    got: Mapping[str, torch.Tensor],
) -> str | None:
    """Describe how a state dict differs from the expected names and shapes.

    Parameters
    ----------
    expected : mapping of str to shape
        Parameter and buffer names the module needs, with their shapes.
    got : mapping of str to torch.Tensor
        What the file holds.

    Returns
    -------
    str or None
        ``"missing keys a, b; unexpected keys c; wrong shapes d (expected (..), got (..))"``
        (only the parts that apply, first keys of each), or None when everything matches.
    """
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    wrong = [
        f"{k} (expected {tuple(expected[k])}, got {tuple(got[k].shape)})"
        for k in expected
        if k in got and tuple(got[k].shape) != tuple(expected[k])
    ]
    parts = []
    if missing:
        parts.append(f"missing keys {_first(missing)}")
    if unexpected:
        parts.append(f"unexpected keys {_first(unexpected)}")
    if wrong:
        parts.append(f"wrong shapes {_first(wrong)}")
    return "; ".join(parts) or None


def load_checked(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str | Path,
    what: str,
) -> None:
    """Load a state dict into a module after checking every name and shape.

    Parameters
    ----------
    module : torch.nn.Module
        The module to fill (in place).
    state : mapping of str to torch.Tensor
        The tensors; they must match the module's state dict exactly.
    source : str or Path
        The file they came from, for messages.
    what : str
        What the module is (``"resnet34 encoder"``), for messages.

    Raises
    ------
    ModelFileError
        If names or shapes differ; the message names the file and the first offending
        keys.
    """
    expected = {k: v.shape for k, v in module.state_dict().items()}
    problem = state_dict_mismatch(expected, state)
    if problem:
        raise ModelFileError(f"{source}: does not match the {what}: {problem}")
    module.load_state_dict(dict(state), strict=True)


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict: every tensor's name, dtype, shape and bytes, by name.

    It does not depend on the file layout, so the digest recorded in a model's metadata
    when it is saved (``ModelInfo.weights_sha256``) is checked against the tensors read
    back from any safetensors file holding them.

    Parameters
    ----------
    tensors : mapping of str to torch.Tensor
        The weights (any device).

    Returns
    -------
    str
        Hex digest.
    """
    import hashlib

    sha = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        sha.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        sha.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()
