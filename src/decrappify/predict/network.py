"""The network behind a prediction: its geometry, identity and per-process cache (torch)."""

from __future__ import annotations

import collections
import contextlib
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from decrappify.config.normalization import NormalizationConfig
from decrappify.errors import InputError, ModelFileError
from decrappify.io import Image
from decrappify.predict.identity import path_digest
from decrappify.predict.tile_geometry import DEFAULT_MULTIPLE

__all__ = [
    "ModelHandle",
    "check_image",
    "evaluating",
    "for_inference",
    "load_count",
    "model_handle",
    "net_attributes",
    "prepare_net",
    "state_digest",
    "worker_net",
]


@dataclass(frozen=True)
class ModelHandle:
    """A super-resolution network with what prediction needs to know about it.

    Parameters
    ----------
    net : torch.nn.Module
        The network: ``(N, n_frames, h, w)`` normalised LR in, ``(N, 1, h·s, w·s)`` out.
    scale : int
        Upsampling factor.
    n_frames : int
        Input planes (1, or an odd number for 2.5D models).
    multiple : int
        HR tile sides must be multiples of this (32 for the U-Nets).
    normalization : NormalizationConfig
        Percentiles the model was trained with.
    digest : str
        SHA-256 of the model file (or of the state dict of an in-memory network).
    path : Path or None
        The model file or folder, if any (distributed workers load it from there).
    name : str
        For messages.
    crappify : dict or None
        The crappifier the model was trained with (its forward model gives the
        data-consistency map), None when unknown.
    """

    net: Any
    scale: int
    n_frames: int
    multiple: int
    normalization: NormalizationConfig
    digest: str
    path: Path | None
    name: str
    crappify: dict[str, Any] | None = None


def model_handle(model: Any, normalization: NormalizationConfig | None = None) -> ModelHandle:
    """Describe a model for prediction.

    Parameters
    ----------
    model : LoadedModel, str, Path, torch.nn.Module or ModelHandle
        A model read by :func:`decrappify.models.load_model`, its path (read here, its
        network made cheaper to run by :func:`for_inference`), a bare network with
        ``scale`` and ``n_frames`` attributes (and optionally ``multiple``), or a handle
        (returned as is). A caller's own network is never altered.
    normalization : NormalizationConfig or None
        Normalisation of a bare network (default percentiles 0.1–99.9); a loaded model
        uses its own.

    Returns
    -------
    ModelHandle
        The network and its properties.

    Raises
    ------
    ModelFileError
        For a missing or corrupted model file, or metadata that contradicts the network.
    InputError
        For an object that is not a model.
    """
    from decrappify.models.store import INFO_NAME, WEIGHTS_NAME, LoadedModel, load_model

    if isinstance(model, ModelHandle):
        return model
    owned = isinstance(model, str | Path)
    if owned:
        model = load_model(model)
    if isinstance(model, LoadedModel):
        net = for_inference(model.net) if owned else model.net
        generator = model.info.generator
        scale, n_frames, multiple = net_attributes(net, str(model.path))
        if (generator.scale, generator.n_frames) != (scale, n_frames):
            raise ModelFileError(
                f"{model.path}: metadata says scale {generator.scale} and {generator.n_frames} "
                f"frame(s), but the network has scale {scale} and {n_frames} frame(s)"
            )
        path = Path(model.path)
        if path.exists():
            digest = path_digest(path, (WEIGHTS_NAME, INFO_NAME))
        else:
            digest, path = state_digest(net), None
        return ModelHandle(
            net=net,
            scale=scale,
            n_frames=n_frames,
            multiple=multiple,
            normalization=model.info.normalization,
            digest=digest,
            path=path,
            name=Path(model.path).name,
            crappify=model.info.crappify,
        )
    if isinstance(model, torch.nn.Module):
        scale, n_frames, multiple = net_attributes(model, type(model).__name__)
        return ModelHandle(
            net=model,
            scale=scale,
            n_frames=n_frames,
            multiple=multiple,
            normalization=normalization or NormalizationConfig(),
            digest=state_digest(model),
            path=None,
            name=type(model).__name__,
        )
    raise InputError(
        "model: expected a model path, a LoadedModel or a torch network, "
        f"got {type(model).__name__}"
    )


def state_digest(net: torch.nn.Module) -> str:
    """SHA-256 of a network's class, geometry and state dict (parameters and buffers).

    Parameters
    ----------
    net : torch.nn.Module
        The network.

    Returns
    -------
    str
        Hex digest.
    """
    sha = hashlib.sha256(type(net).__qualname__.encode())
    sha.update(repr(net_attributes(net)[:2]).encode())
    for key, value in sorted(net.state_dict().items()):
        sha.update(key.encode())
        tensor = value.detach().to("cpu").contiguous()
        sha.update(str(tensor.dtype).encode())
        sha.update(repr(tuple(tensor.shape)).encode())
        sha.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def net_attributes(net: Any, name: str = "net") -> tuple[int, int, int]:
    """Read and check a network's geometry attributes.

    Parameters
    ----------
    net : torch.nn.Module
        Network with ``scale`` and ``n_frames`` (and optionally ``multiple``, default 32).
    name : str
        What to call the network in messages.

    Returns
    -------
    tuple of int
        ``(scale, n_frames, multiple)``.

    Raises
    ------
    InputError
        ``net: expected an integer attribute scale >= 1, got None``.
    """
    values = (
        ("scale", getattr(net, "scale", None)),
        ("n_frames", getattr(net, "n_frames", 1)),
        ("multiple", getattr(net, "multiple", DEFAULT_MULTIPLE)),
    )
    for label, value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name}: expected an integer attribute {label} >= 1, got {value!r}")
    scale, n_frames, multiple = (int(v) for _, v in values)  # type: ignore[arg-type]
    return scale, n_frames, multiple


@contextlib.contextmanager
def evaluating(net: torch.nn.Module) -> Iterator[None]:
    """Put a network in eval mode for a block, then restore its training flag.

    Parameters
    ----------
    net : torch.nn.Module
        The network.

    Yields
    ------
    None
        Inside the block the network is in eval mode.
    """
    was_training = net.training
    net.eval()
    try:
        yield
    finally:
        net.train(was_training)


def check_image(image: Image, handle: ModelHandle) -> None:
    """Refuse an image the model cannot process.

    Parameters
    ----------
    image : Image
        The input.
    handle : ModelHandle
        The model.

    Raises
    ------
    InputError
        For a 2.5D model on a 2D image, or an unsupported pixel type.
    """
    if handle.n_frames > 1 and image.ndim == 2:
        raise InputError(
            f"{image.name}: the model {handle.name} takes {handle.n_frames} neighbouring planes "
            f"(2.5D) but the image is 2D (shape {image.shape}); use a ZYX or TYX stack or a "
            "2D model"
        )
    if image.dtype.kind not in "uif":
        raise InputError(f"{image.name}: cannot super-resolve pixel type {image.dtype}")


# --------------------------------------------------------------------------- worker cache

#: torch threads of this process's prediction tasks, set by the distributed worker plugin
#: (torch's thread count is per thread, so each task applies it).
WORKER_TORCH_THREADS: int | None = None
_NETS: collections.OrderedDict[tuple[Any, ...], Any] = collections.OrderedDict()
_NETS_LOCK = threading.Lock()
_LOADS: collections.Counter[str] = collections.Counter()


def load_count(digest: str | None = None) -> int:
    """Count how often this process loaded a model from its file (distributed workers).

    Parameters
    ----------
    digest : str or None
        One model's digest, or None for all models.

    Returns
    -------
    int
        The count (workers load each model once).
    """
    return _LOADS[digest] if digest is not None else sum(_LOADS.values())


def worker_net(
    path: str | None, digest: str, device: torch.device, compile: bool, shipped: Any = None
) -> Any:
    """Get the network of a model in this process, loaded once and kept.

    Parameters
    ----------
    path : str or None
        The model file or folder.
    digest : str
        The model's SHA-256 (the cache key, with the device type and ``compile``).
    device : torch.device
        Where the network runs.
    compile : bool
        ``torch.compile`` it.
    shipped : torch.nn.Module or None
        The network itself, when it has no file (sent to the worker once).

    Returns
    -------
    torch.nn.Module
        The prepared network (eval mode, on ``device``); the two most recent are kept.

    Raises
    ------
    ModelFileError
        When there is neither a network nor a file.
    """
    key = (digest, device.type, compile)
    with _NETS_LOCK:
        if key in _NETS:
            _NETS.move_to_end(key)
            return _NETS[key]
        if shipped is not None:
            net = shipped
        elif path is not None:
            from decrappify.models.store import load_model

            net = for_inference(load_model(path).net)
            _LOADS[digest] += 1
        else:
            raise ModelFileError("model: no file to load the network from on this worker")
        net = prepare_net(net, device, compile)
        _NETS[key] = net
        while len(_NETS) > 2:
            _NETS.popitem(last=False)
        return net


def prepare_net(net: Any, device: torch.device, compile: bool) -> Any:
    """Move a network to its device in eval mode, and compile it if asked.

    Parameters
    ----------
    net : torch.nn.Module
        The network (moved in place).
    device : torch.device
        Its device.
    compile : bool
        Wrap it with ``torch.compile`` (static shapes: one compilation per tile size).

    Returns
    -------
    torch.nn.Module
        The network, or its compiled wrapper.
    """
    net = net.to(device).eval()
    if compile:
        net = torch.compile(net, dynamic=False)
    return net


# --------------------------------------------------------------------------- inference


def for_inference(net: torch.nn.Module) -> torch.nn.Module:
    """Make a network prediction owns cheaper to run, with the same outputs (in place).

    Weight and spectral normalisation are baked into plain weights (otherwise they are
    recomputed, and oneDNN re-lays the weights out, at every forward pass); a convolution
    directly followed by a BatchNorm (adjacent in a ``Sequential``, or ``convN``/``bnN``
    of a ResNet block, which apply them in that order) absorbs its eval statistics; and
    activations run in place (each takes a fresh tensor in these networks). About a third
    less CPU time per forward pass for the default generator; the outputs change by float
    rounding (tested). Only for networks loaded from a file here: a caller's own network
    (training, napari) is never altered.

    Parameters
    ----------
    net : torch.nn.Module
        The network, freshly loaded.

    Returns
    -------
    torch.nn.Module
        The same module, in eval mode.
    """
    from torch.nn.utils import parametrize
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net.eval()
    baked = [
        (module, name)
        for module in net.modules()
        if parametrize.is_parametrized(module)
        for name in list(module.parametrizations.keys())
    ]
    for module, name in baked:
        parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    for module in list(net.modules()):
        pairs: list[tuple[str, str]] = []
        if isinstance(module, torch.nn.Sequential):
            names = [name for name, _ in module.named_children()]
            pairs += list(zip(names, names[1:], strict=False))
        if type(module).__module__ == "decrappify.models.resnet":
            pairs += [(f"conv{i}", f"bn{i}") for i in (1, 2, 3)]
        for conv_name, bn_name in pairs:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, torch.nn.Identity())
        if isinstance(module, torch.nn.ReLU | torch.nn.LeakyReLU):
            module.inplace = True
    return net
