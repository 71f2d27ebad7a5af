"""Automatic overlap: the model's receptive field, measured once and cached (torch).

Tiled prediction equals whole-image prediction when each tile's context margin covers the
network's receptive-field radius (:func:`decrappify.predict.tile_geometry.default_overlap`, about
four times the radius). Measuring the radius
(:func:`estimate_receptive_field`) differentiates the network on a
probe image; on a CPU a real U-Net takes from seconds (small probe) to minutes (large
probe), so the result is cached:

* in this process, by model digest;
* in a JSON sidecar beside the model file (``<model>.receptive_field.json``, or
  ``receptive_field.json`` inside a model folder), keyed by the model's SHA-256, so it is
  measured once per model file;
* in ``$XDG_CACHE_HOME/decrappify/receptive_field/<sha256>.json`` (default
  ``~/.cache/…``) when the model's folder is not writable.

Only as large a probe as the decision needs is used: the overlap is capped at half the
tile (:func:`auto_overlap`), so a radius beyond the cap's context margin is never
needed exactly — a probe of four times that margin tells whether the cap applies.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from decrappify.errors import InputError
from decrappify.predict.network import evaluating, net_attributes
from decrappify.predict.tile_geometry import (
    default_overlap,
    split_overlap,
    tile_quantum,
)

__all__ = [
    "DEFAULT_TOL",
    "RadiusRecord",
    "auto_overlap",
    "cache_paths",
    "estimate_receptive_field",
    "max_overlap",
    "needed_probe",
    "radius_from_response",
    "receptive_radius",
]

log = logging.getLogger("decrappify")

#: Fraction of the input sensitivity allowed outside the measured radius.
DEFAULT_TOL = 1e-3
#: Smallest probe side in LR pixels.
MIN_PROBE = 32
_MEMORY: dict[str, RadiusRecord] = {}
_MEMORY_LOCK = threading.Lock()


@dataclass(frozen=True)
class RadiusRecord:
    """A measured receptive-field radius.

    Parameters
    ----------
    radius : int
        Radius in LR pixels at tolerance ``tol``.
    probe : int
        Side of the largest probe used, in LR pixels.
    saturated : bool
        True when the radius reached a quarter of the probe: the true radius may be
        larger (only a lower bound is known).
    tol : float
        The tolerance.
    """

    radius: int
    probe: int
    saturated: bool
    tol: float = DEFAULT_TOL

    def resolves(self, radius: int) -> bool:
        """Whether this record tells if the true radius exceeds ``radius``.

        Parameters
        ----------
        radius : int
            The radius a decision depends on.

        Returns
        -------
        bool
            True when the record is exact (not saturated) or already larger.
        """
        return not self.saturated or self.radius > radius


def max_overlap(tile: int) -> int:
    """Largest overlap the automatic choice uses: half the tile.

    Parameters
    ----------
    tile : int
        Tile side in LR pixels.

    Returns
    -------
    int
        ``tile // 2``.
    """
    return int(tile) // 2


def auto_overlap(radius: int, scale: int, tile: int, *, blend: float = 0.5) -> int:
    """Overlap for a receptive-field radius: exact if it fits, else capped at half the tile.

    Parameters
    ----------
    radius : int
        Receptive-field radius in LR pixels.
    scale : int
        Super-resolution factor.
    tile : int
        Tile side in LR pixels.
    blend : float
        Cross-fade fraction of the overlap.

    Returns
    -------
    int
        ``min(default_overlap(radius, scale), tile // 2)``. Below the cap, tiled
        prediction equals whole-image prediction; at the cap (U-Nets, whose field decays
        slowly over hundreds of HR pixels) the residual difference is cross-faded, not
        cut, so it shows no seam.
    """
    return min(default_overlap(radius, scale, blend=blend), max_overlap(tile))


def needed_probe(tile: int, scale: int, multiple: int = 32, *, blend: float = 0.5) -> int:
    """Probe side that decides :func:`auto_overlap` for ``tile``.

    Parameters
    ----------
    tile : int
        Tile side in LR pixels.
    scale : int
        Super-resolution factor.
    multiple : int
        The network's size multiple.
    blend : float
        Cross-fade fraction.

    Returns
    -------
    int
        Four times (plus one) the context margin of the capped overlap, rounded up to a
        valid tile size, at least :data:`MIN_PROBE`.
    """
    margin, _ = split_overlap(max_overlap(tile), blend)
    quantum = tile_quantum(scale, multiple)
    side = max(MIN_PROBE, 4 * (margin + 1))
    return int(math.ceil(side / quantum) * quantum)


def cache_paths(model_path: str | Path | None, digest: str) -> list[Path]:
    """Where a measured radius may be stored, in order of preference.

    Parameters
    ----------
    model_path : str, Path or None
        The model file or folder (None for in-memory models).
    digest : str
        SHA-256 of the model.

    Returns
    -------
    list of Path
        The sidecar beside the model (if any), then the user cache file.
    """
    paths = []
    if model_path is not None:
        model_path = Path(model_path)
        if model_path.is_dir():
            paths.append(model_path / "receptive_field.json")
        else:
            paths.append(model_path.with_name(model_path.name + ".receptive_field.json"))
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    paths.append(root / "decrappify" / "receptive_field" / f"{digest}.json")
    return paths


def estimate_receptive_field(
    net: torch.nn.Module,
    *,
    tol: float = 1e-3,
    size: int = 64,
    max_size: int = 256,
    n_random: int = 1,
    seed: int = 0,
) -> int:
    """Measure a network's receptive-field radius in LR pixels, from its input gradient.

    The outputs of the central LR pixel of a probe (its ``scale × scale`` HR pixels,
    summed with random signs so that nothing cancels) are differentiated with respect to
    the input, on a zeros input and on ``n_random`` uniform random inputs (zeros alone
    can hide paths behind inactive ReLUs). The radius is the smallest Chebyshev distance
    holding all but ``tol`` of the summed absolute gradient. The probe grows (up to
    ``max_size``) while the radius reaches a quarter of it.

    Parameters
    ----------
    net : torch.nn.Module
        Super-resolution network with ``scale`` and ``n_frames`` (and optionally
        ``multiple``) attributes. It is run in eval mode on its own device and dtype;
        its mode is restored and its parameters' gradients are untouched.
    tol : float
        Fraction of the sensitivity allowed outside the radius. 0 gives the exact
        support (right for networks with a finite receptive field, such as plain
        convolution stacks); U-Nets have a huge theoretical field whose tail decays, and
        ``1e-3`` keeps the part that changes outputs by more than about 0.1 %.
    size : int
        First probe side in LR pixels (rounded up to a valid tile size).
    max_size : int
        Largest probe side; a radius of ``max_size // 4`` or more is returned as is.
    n_random : int
        Random probes in addition to the zeros input.
    seed : int
        Seed of the random probes.

    Returns
    -------
    int
        Radius ``r`` in LR pixels: the outputs of LR pixel ``p`` depend (up to ``tol``)
        only on LR pixels within ``p ± r``. Pass it to
        :func:`~decrappify.predict.tile_geometry.default_overlap`.
    """
    scale, n_frames, multiple = net_attributes(net)
    if not 0.0 <= tol < 1.0:
        raise InputError(f"tol must be in [0, 1) (got {tol})")
    quantum = tile_quantum(scale, multiple)
    side = max(2 * quantum, math.ceil(size / quantum) * quantum)
    limit = max(side, max_size // quantum * quantum)
    parameter = next(net.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None else torch.float32
    generator = torch.Generator().manual_seed(seed)
    with evaluating(net), torch.enable_grad():
        while True:
            center = side // 2
            signs = torch.randint(0, 2, (scale, scale), generator=generator) * 2.0 - 1.0
            signs = signs.to(device=device, dtype=torch.float32)
            response = np.zeros((side, side))
            for probe in range(1 + n_random):
                x = torch.zeros(1, n_frames, side, side)
                if probe:
                    x = torch.rand(x.shape, generator=generator)
                x = x.to(device=device, dtype=dtype).requires_grad_(True)
                y = net(x)
                pixel = slice(center * scale, (center + 1) * scale)
                block = y[0, 0, pixel, pixel]
                (grad,) = torch.autograd.grad((block.float() * signs).sum(), x)
                response = np.maximum(
                    response, grad.detach().abs().sum(dim=(0, 1)).double().cpu().numpy()
                )
            radius = radius_from_response(response, (center, center), tol)
            if 4 * radius < side or side >= limit:
                return radius
            side = min(limit, 2 * side)


def receptive_radius(
    net: Any,
    *,
    digest: str,
    model_path: str | Path | None = None,
    probe: int = 64,
    tol: float = DEFAULT_TOL,
    needed: int | None = None,
) -> RadiusRecord:
    """Get the network's receptive-field radius from a cache, or measure it once.

    Parameters
    ----------
    net : torch.nn.Module
        Network with ``scale``, ``n_frames`` and ``multiple`` attributes.
    digest : str
        SHA-256 of the model (the cache key).
    model_path : str, Path or None
        The model file or folder, for the sidecar cache.
    probe : int
        Probe side in LR pixels (see :func:`needed_probe`).
    tol : float
        Sensitivity allowed outside the radius.
    needed : int or None
        The radius the caller's decision depends on: a cached record that cannot tell
        whether the true radius exceeds it is measured again with ``probe``.

    Returns
    -------
    RadiusRecord
        The radius and how it was measured.
    """
    threshold = needed if needed is not None else 0
    with _MEMORY_LOCK:
        record = _MEMORY.get(digest)
    if record is None or record.tol != tol or not record.resolves(threshold):
        record = _read_cached(cache_paths(model_path, digest), digest, tol, threshold)
    if record is None:
        log.info("measuring the receptive field of the model (once per model file)")
        radius = estimate_receptive_field(net, tol=tol, size=probe, max_size=probe)
        quantum = tile_quantum(int(net.scale), int(getattr(net, "multiple", 32)))
        side = max(2 * quantum, math.ceil(probe / quantum) * quantum)
        record = RadiusRecord(radius=radius, probe=side, saturated=4 * radius >= side, tol=tol)
        _write_cached(cache_paths(model_path, digest), digest, record)
    with _MEMORY_LOCK:
        _MEMORY[digest] = record
    return record


def _read_cached(paths: list[Path], digest: str, tol: float, needed: int) -> RadiusRecord | None:
    for path in paths:
        try:
            raw = json.loads(path.read_text())
            if raw.get("sha256") != digest:
                continue
            record = RadiusRecord(
                radius=int(raw["radius"]),
                probe=int(raw["probe"]),
                saturated=bool(raw["saturated"]),
                tol=float(raw["tol"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if record.tol == tol and record.resolves(needed):
            return record
    return None


def _write_cached(paths: list[Path], digest: str, record: RadiusRecord) -> None:
    from decrappify.io import atomic_write_text

    text = json.dumps(
        {
            "sha256": digest,
            "radius": record.radius,
            "probe": record.probe,
            "saturated": record.saturated,
            "tol": record.tol,
            "what": "decrappify receptive-field radius in LR pixels (cache, safe to delete)",
        },
        indent=2,
    )
    for path in paths:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text + "\n")
            return
        except OSError as err:  # OutputError is an OSError
            log.debug("cannot cache the receptive field in %s (%s)", path, err)
            continue


def radius_from_response(response: np.ndarray, center: tuple[int, int], tol: float = 0.0) -> int:
    """Receptive-field radius from a map of input sensitivities.

    Parameters
    ----------
    response : numpy.ndarray
        2D non-negative map, for example ``|∂ output / ∂ input|`` of the outputs of one
        LR pixel.
    center : tuple of int
        The LR pixel whose outputs were probed.
    tol : float
        Fraction of the total response allowed outside the radius; 0 gives the exact
        support (the farthest non-zero pixel).

    Returns
    -------
    int
        Smallest Chebyshev radius ``r`` such that the response outside the
        ``(2r + 1)²`` square around ``center`` is at most ``tol`` times the total.
    """
    response = np.abs(np.asarray(response, dtype=np.float64))
    yy, xx = np.indices(response.shape)
    dist = np.maximum(np.abs(yy - center[0]), np.abs(xx - center[1]))
    rings = np.bincount(dist.ravel(), weights=response.ravel())
    total = rings.sum()
    if total == 0:
        return 0
    # outside[r] = response beyond radius r, summed from the outermost ring inwards so
    # that all-zero rings give exactly 0.
    outside = np.concatenate([np.cumsum(rings[::-1])[::-1][1:], [0.0]])
    return int(np.argmax(outside <= tol * total))
