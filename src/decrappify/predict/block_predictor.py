"""The per-block work of chunked prediction: read an LR block, run the tiles, map back.

A :class:`BlockPredictor` takes the :class:`~decrappify.predict.plan.PredictPlan` of one
image whole: its block grid, model, settings and normalisation range. For one block it
reads the LR rectangle under it plus a halo of ``overlap`` pixels (the planes around it
for a 2.5D model), normalises it, runs the tiled forward pass
(:func:`decrappify.predict.tile_predictor.predict_region`) and maps the result back to
intensities in the output dtype (with test-time augmentation, the 8 predictions' spread
goes to a second array, the *spread sink*). Local runs drive it from a read/compute
pipeline (:mod:`decrappify.predict.local_pipeline`), distributed runs from one dask task
per block (:mod:`decrappify.predict.dask_graph`, :func:`remote_block`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from decrappify.data.patches import neighbour_planes
from decrappify.errors import Cancelled
from decrappify.normalize import denormalize, normalize
from decrappify.predict import network
from decrappify.predict.block_geometry import input_region_for_output
from decrappify.predict.device_arrays import TorchArrays
from decrappify.predict.network import worker_net
from decrappify.predict.oom import TileSettings
from decrappify.predict.plan import PredictPlan
from decrappify.predict.tile_geometry import Bounds
from decrappify.predict.tile_predictor import predict_region

__all__ = ["BlockPredictor", "fetch", "plane_slices", "remote_block"]

log = logging.getLogger("decrappify")

_FORWARD_LOCK = threading.Lock()  # one forward pass at a time per process (torch threads)


class BlockPredictor:
    """Computes one output block from its LR input: the per-block work of prediction.

    Parameters
    ----------
    plan : PredictPlan
        The image's prediction (input, grid, model, settings, normalisation, token).
    spread_sink : array-like or None
        With ``settings.tta``: where each block's spread (the standard deviation of the 8
        dihedral predictions, in the output's grey levels, float32) is stored, indexed
        like the output (a numpy array, or a zarr array that distributed workers open).
    degraded_sink : array-like or None
        With a consistency map: where each block's share of the forward model (the block
        degraded on the model's device while it is in memory) is stored, laid out by
        ``plan.degraded_slots``.
    """

    def __init__(
        self, plan: PredictPlan, spread_sink: Any = None, degraded_sink: Any = None
    ) -> None:
        self.plan = plan
        self.grid = plan.grid
        self.settings = plan.settings
        self.scale = plan.handle.scale
        self.n_frames = plan.handle.n_frames
        self.lo, self.hi = float(plan.lo), float(plan.hi)
        self.token = plan.token
        self.spread_sink = spread_sink
        self.degraded_sink = degraded_sink
        self._data = plan.image.data
        self._net = plan.handle.net
        self._prepared: Any = None
        self._run = plan.settings  # what the tiles run with: tile and batch shrink on OOM
        self._cancel = threading.Event()
        self.blocks_computed = 0
        self.compute_seconds = 0.0
        self.trust_seconds = 0.0  # degrading blocks for the consistency map
        self.retries: list[dict[str, Any]] = []  # out-of-memory steps down (local runs)

    @property
    def model_path(self) -> str | None:
        """The model file distributed workers load the network from."""
        path = self.plan.handle.path
        return str(path) if path is not None else None

    # pickled for distributed workers: settings and geometry only; data and the network
    # travel as task inputs (or are loaded on the worker from the model file).
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_data", "_net", "_prepared"):
            state[name] = None
        state["plan"] = self.plan.for_workers()
        state["_cancel"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cancel = threading.Event()

    def __dask_tokenize__(self) -> str:
        return self.token

    def planes(self, index: Sequence[int]) -> tuple[int, ...] | None:
        """Planes of the input a block needs (None for a 2D image).

        Parameters
        ----------
        index : sequence of int
            Block index.

        Returns
        -------
        tuple of int or None
            ``n_frames`` planes centred on the block's plane, mirrored at the stack ends.
        """
        return self.planes_around(int(index[0])) if self.grid.lead else None

    def planes_around(self, plane: int) -> tuple[int, ...]:
        """List the ``n_frames`` input planes centred on ``plane`` (mirrored at the ends).

        Parameters
        ----------
        plane : int
            The plane to predict.

        Returns
        -------
        tuple of int
            Plane indices, as in training (:func:`~decrappify.data.patches.neighbour_planes`).
        """
        if self.n_frames == 1:
            return (plane,)
        return neighbour_planes(plane, self.n_frames, (0, self.grid.lead[0]))

    def input_bounds(self, index: Sequence[int]) -> tuple[Bounds, Bounds]:
        """LR rectangle to read for a block, and the block's footprint inside it.

        Parameters
        ----------
        index : sequence of int
            Block index.

        Returns
        -------
        tuple of Bounds
            ``(read, region)`` as
            :func:`~decrappify.predict.block_geometry.input_region_for_output`.
        """
        return input_region_for_output(
            self.grid.bounds(index),
            scale=self.scale,
            halo=self.settings.overlap,
            lr_shape=self.grid.lr_shape,
        )

    def input_slices(self, index: Sequence[int]) -> list[tuple[Any, ...]]:
        """Index the distinct input planes a block reads, in plane order.

        Parameters
        ----------
        index : sequence of int
            Block index.

        Returns
        -------
        list of tuple
            One index per distinct plane (one for a 2D image).
        """
        read, _ = self.input_bounds(index)
        return plane_slices(read, self.planes(index))

    def read(self, index: Sequence[int]) -> list[np.ndarray]:
        """Read the raw input planes of a block (local runs).

        Parameters
        ----------
        index : sequence of int
            Block index.

        Returns
        -------
        list of numpy.ndarray
            The distinct planes, as :meth:`input_slices`.
        """
        return [fetch(self._data, item) for item in self.input_slices(index)]

    def compute(self, index: Sequence[int], parts: Sequence[np.ndarray], net: Any = None) -> Any:
        """Super-resolve one block from its raw input planes.

        Parameters
        ----------
        index : sequence of int
            Block index.
        parts : sequence of numpy.ndarray
            The distinct input planes (:meth:`read`).
        net : torch.nn.Module or None
            The network prepared for the device (default: this process's one).

        Returns
        -------
        numpy.ndarray
            The block in the output dtype, with length-1 leading axes.
        """
        _, region = self.input_bounds(index)
        out, spread = self._predict(parts, self.planes(index), region, net)
        lead = (1,) * len(self.grid.lead)
        if spread is not None and self.spread_sink is not None:
            self.spread_sink[self.grid.slices(index)] = spread.reshape(lead + spread.shape)
        if self.degraded_sink is not None:
            self._degrade(index, out)
        self.blocks_computed += 1
        return out.reshape(lead + out.shape)

    def _degrade(self, index: Sequence[int], out: np.ndarray) -> None:
        """Store the block's share of the consistency map's forward model (on the device)."""
        slots, forward = self.plan.degraded_slots, self.plan.trust.forward
        assert slots is not None and forward is not None
        start = time.perf_counter()
        arrays = TorchArrays(self.settings.device)
        hr = arrays.asarray(normalize(out, self.lo, self.hi))  # the output's grey levels
        (y0, _), (x0, _) = self.grid.bounds(index)
        share = slots.share(forward, hr, index, (y0, x0), arrays)
        self.degraded_sink[slots.slot(index)] = share
        self.trust_seconds += time.perf_counter() - start

    def super_resolve(
        self,
        parts: Sequence[np.ndarray],
        planes: Sequence[int] | None,
        region: Bounds,
        net: Any = None,
    ) -> np.ndarray:
        """Normalise an LR rectangle, predict a region of it and map it back to intensities.

        Parameters
        ----------
        parts : sequence of numpy.ndarray
            Raw LR rectangles of the distinct planes in ``planes`` (sorted), or one
            rectangle for a 2D image.
        planes : sequence of int or None
            The frames in network order (repeats allowed), None for a 2D image.
        region : Bounds
            The rectangle of the parts to super-resolve (the rest is context).
        net : torch.nn.Module or None
            The network prepared for the device (default: this process's one).

        Returns
        -------
        numpy.ndarray
            2D HR result in the output dtype (with ``tta``: the mean of the 8 predictions).
        """
        return self._predict(parts, planes, region, net)[0]

    def _predict(
        self,
        parts: Sequence[np.ndarray],
        planes: Sequence[int] | None,
        region: Bounds,
        net: Any = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Predict: the result in the output dtype and, with ``tta``, its spread in grey levels."""
        net = net if net is not None else self._local_net()
        if planes is None:
            frames = np.asarray(parts[0])[None]
        else:
            order = {p: i for i, p in enumerate(sorted(set(planes)))}
            frames = np.stack([np.asarray(parts[order[p]]) for p in planes])
        lr = normalize(frames, self.lo, self.hi)
        (y0, y1), (x0, x1) = region
        spread = None
        if self.settings.tta:
            spread = np.empty(((y1 - y0) * self.scale, (x1 - x0) * self.scale), np.float32)
        start = time.perf_counter()
        with _FORWARD_LOCK:
            out = predict_region(
                net,
                lr if self.n_frames > 1 else lr[0],
                region,
                self._run,
                progress=self._check_cancel,
                on_retry=self._remember,
                spread=spread,
            )
        self.compute_seconds += time.perf_counter() - start
        if spread is not None:
            spread *= np.float32(self.hi - self.lo)  # normalised units -> grey levels
        return denormalize(out, self.lo, self.hi, np.dtype(self.settings.out_dtype)), spread

    def cancel(self) -> None:
        """Make a running block stop after its current batch (raises ``Cancelled``)."""
        self._cancel.set()

    def _check_cancel(self, done: int, total: int) -> None:
        if self._cancel.is_set():
            raise Cancelled("prediction cancelled")

    def _remember(self, failed: TileSettings, following: TileSettings) -> None:
        log.warning(
            "out of memory with tile %s and batch %d: retrying with tile %s and batch %d",
            failed.tile,
            failed.batch_size,
            following.tile,
            following.batch_size,
        )
        self._run = replace(self._run, tile=following.tile, batch=following.batch_size)
        self.retries.append({"tile": list(following.tile), "batch": following.batch_size})

    def _local_net(self) -> Any:
        # the caller's own network (its training flag is restored after each block), or a
        # compiled wrapper kept in the process cache for the next images of a batch
        if self._prepared is None:
            s = self.settings
            if self._net is not None and not s.compile:
                net = self._net
            else:
                digest = self.plan.handle.digest
                net = worker_net(self.model_path, digest, s.device, s.compile, shipped=self._net)
            self._prepared = _TimedNet(net) if s.device.type == "cpu" else net
        return self._prepared

    @property
    def forward_seconds(self) -> float | None:
        """Seconds spent in the network's forward passes in this process (CPU runs)."""
        prepared = self._prepared
        return prepared.seconds if isinstance(prepared, _TimedNet) else None


class _TimedNet(torch.nn.Module):
    """Wraps a network and adds up the time of its forward passes (CPU: synchronous)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.inner = net
        self.scale = net.scale
        self.n_frames = getattr(net, "n_frames", 1)
        self.multiple = getattr(net, "multiple", 32)
        self.seconds = 0.0
        self.training = net.training  # so that restoring the mode restores the caller's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        try:
            return self.inner(x)
        finally:
            self.seconds += time.perf_counter() - start


def plane_slices(read: Bounds, planes: Sequence[int] | None) -> list[tuple[Any, ...]]:
    """Index the distinct planes of an LR rectangle, in plane order.

    Parameters
    ----------
    read : Bounds
        The LR rectangle.
    planes : sequence of int or None
        The planes (repeats allowed), None for a 2D image.

    Returns
    -------
    list of tuple
        One index per distinct plane (one for a 2D image).
    """
    (y0, y1), (x0, x1) = read
    yx = (slice(y0, y1), slice(x0, x1))
    if planes is None:
        return [yx]
    return [(p, *yx) for p in sorted(set(planes))]


def fetch(data: Any, item: tuple[Any, ...]) -> np.ndarray:
    """Read one region of a numpy, zarr or dask array into memory (dask: in this thread).

    Parameters
    ----------
    data : array-like
        The image.
    item : tuple
        The index.

    Returns
    -------
    numpy.ndarray
        The pixels.
    """
    region = data[item]
    if hasattr(region, "compute"):
        from dask.local import get_sync  # not the name "sync": dask would import distributed

        region = region.compute(scheduler=get_sync)
    return np.asarray(region)


def remote_block(
    predictor: BlockPredictor, index: tuple[int, ...], shipped: Any, *parts: np.ndarray
) -> np.ndarray:
    """Task of a distributed block: get this worker's network, then compute."""
    s = predictor.settings
    threads = network.WORKER_TORCH_THREADS
    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)  # per thread: set in the worker's task thread
    digest = predictor.plan.handle.digest
    net = worker_net(predictor.model_path, digest, s.device, s.compile, shipped)
    return predictor.compute(index, parts, net)
