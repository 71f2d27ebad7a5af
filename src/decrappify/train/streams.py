"""The data of a training run: training pairs drawn in keyed streams, and the validation crops.

Each phase draws its batches from its own stream of sample keys (:data:`STREAMS`,
:class:`KeyBatches`): the batch of step ``s`` is a pure function of ``(seed, stream,
cycle, s)``, so a resumed run draws exactly the batches an uninterrupted one would have,
whatever the number of DataLoader workers. :class:`DataStreams` builds the datasets
from the images (:func:`decrappify.data.dataset.build_datasets`), the
:class:`~decrappify.train.validation.Validator` of the fixed validation crops, and the
DataLoaders of the phases.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from decrappify.config.crappify import CrappifyConfig
from decrappify.config.train import TrainConfig
from decrappify.data.dataset import (
    build_datasets,
    default_workers,
    describe,
    keyed_loader,
    prefetch_to_device,
)
from decrappify.devices import available_cores
from decrappify.errors import InputError
from decrappify.train.distributed import Ranks
from decrappify.train.validation import Validator

__all__ = ["STREAMS", "DataStreams", "KeyBatches"]

#: Data streams: each phase draws its batches from its own sequence of sample keys.
STREAMS = {"pretrain_generator": 1, "save_outputs": 2, "pretrain_critic": 3, "gan": 4, "critic": 5}


class KeyBatches(Sampler):
    """Batches of sample keys for one data stream, a pure function of the step.

    Step ``s`` of a stream takes samples ``s * batch_size ... s * batch_size +
    batch_size - 1``; sample ``c`` is the key ``(base + c // n, c % n)`` of a
    :class:`~decrappify.data.dataset.PairDataset` with ``n`` samples per epoch, where
    ``base`` separates the streams. A resumed run draws exactly the same batches.

    Parameters
    ----------
    stream : int
        Stream number (one per phase and purpose).
    cycle : int
        Cycle of phases 2-4.
    samples_per_epoch : int
        The dataset's length.
    batch_size : int
        Samples per batch.
    start : int
        First step.
    stop : int or None
        End step (exclusive); None for an endless stream.
    part : slice or None
        The part of each batch this process takes (:meth:`Ranks.share
        <decrappify.train.distributed.Ranks.share>`); None for all of it.
    """

    def __init__(
        self,
        stream: int,
        cycle: int,
        samples_per_epoch: int,
        batch_size: int,
        *,
        start: int = 0,
        stop: int | None = None,
        part: slice | None = None,
    ) -> None:
        self.base = (int(stream) * 64 + int(cycle)) << 32
        self.n = int(samples_per_epoch)
        self.batch_size = int(batch_size)
        self.start, self.stop = int(start), stop
        self.part = part if part is not None else slice(None)

    def keys(self, step: int) -> list[tuple[int, int]]:
        """Return the keys of one step's batch.

        Parameters
        ----------
        step : int
            Step number.

        Returns
        -------
        list of (int, int)
            ``(epoch, index)`` keys.
        """
        first = step * self.batch_size
        return [
            (self.base + c // self.n, c % self.n) for c in range(first, first + self.batch_size)
        ]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start
        while self.stop is None or step < self.stop:
            yield self.keys(step)[self.part]
            step += 1


class DataStreams:
    """The training pairs of a run, the batches of each phase and the validation crops.

    Parameters
    ----------
    config : TrainConfig
        The run's (resolved) settings.
    hr_sources, lr_sources : sequences
        High-resolution images, and aligned LR images in paired mode (else None).
    crappify : CrappifyConfig or None
        The degradation making the LR inputs (None in paired mode).
    device : torch.device
        Where the networks run (validation batches go there).
    autocast : callable
        The run's mixed-precision context (validation runs under it).
    channels_last : bool
        Feed channels-last inputs.
    ranks : Ranks or None
        The processes of the run: each draws its part of every batch, process 0
        validates.

    Raises
    ------
    InputError
        When the LR/HR pairs' scale differs from the generator's.
    """

    def __init__(
        self,
        config: TrainConfig,
        hr_sources: Sequence[Any],
        lr_sources: Sequence[Any] | None,
        crappify: CrappifyConfig | None,
        *,
        device: torch.device,
        autocast: Callable[[], contextlib.AbstractContextManager[Any]],
        channels_last: bool,
        ranks: Ranks | None = None,
    ) -> None:
        self.ranks = ranks if ranks is not None else Ranks()
        self.part = self.ranks.share(config.batch_size)
        self.config = config
        self.device = device
        self.channels_last = channels_last
        #: DataLoader worker processes (``data.num_workers``, or the device's default).
        self.workers = config.data.num_workers
        if self.workers is None:
            self.workers = default_workers(device, available_cores())
        self.train_set, val_set = build_datasets(
            list(hr_sources), config.data, crappify, lr_images=lr_sources
        )
        scale = self.train_set.maker.scale
        if scale != config.generator.scale:
            raise InputError(
                f"generator.scale: {config.generator.scale}, but the LR/HR pairs have scale "
                f"{scale}; set the scale to {scale}"
            )
        self.summary = describe(self.train_set, val_set)
        validator = None
        if val_set is not None:
            validator = Validator(
                val_set,
                scale=scale,
                device=device,
                batch_size=config.batch_size,
                autocast=autocast,
                channels_last=channels_last,
            )
        #: Scores generators on the fixed crops (None without validation crops).
        self.validator = validator if validator is not None and validator.enabled else None
        #: Source, shape and dtype of each training image (checked on resume).
        self.inputs = [
            {"source": im.source, "shape": list(im.shape), "dtype": str(im.dtype)}
            for im in self.train_set.maker.hr_images
        ]

    @property
    def normalization(self) -> Any:
        """The normalisation of the training images (stored with the model)."""
        return self.train_set.maker.normalization

    def batches(
        self, stream: str, cycle: int, *, start: int = 0, stop: int | None = None
    ) -> Iterator[Any]:
        """Iterate over the ``(lr, hr)`` CPU batches of a stream from step ``start`` to ``stop``."""
        sampler = KeyBatches(
            STREAMS[stream],
            cycle,
            len(self.train_set),
            self.config.batch_size,
            start=start,
            stop=stop,
            part=self.part,
        )
        loader = keyed_loader(
            self.train_set,
            sampler,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
        )
        return iter(loader)

    def device_batches(
        self, stream: str, cycle: int, *, start: int = 0, stop: int | None = None
    ) -> Iterator[list[torch.Tensor]]:
        """Iterate over a stream's batches on the device (the next one copied ahead)."""
        return prefetch_to_device(
            self.batches(stream, cycle, start=start, stop=stop),
            self.device,
            channels_last=self.channels_last,
        )

    def validate(self, net: torch.nn.Module) -> dict[str, float]:
        """Score a generator on the validation crops (empty without crops).

        Process 0 scores, the others take its scores.
        """
        scores = {}
        if self.validator is not None and self.ranks.is_main:
            scores = self.validator.evaluate(net)
        return self.ranks.decide(scores)

    def preview(self, net: torch.nn.Module) -> np.ndarray | None:
        """LR | prediction | HR of the first validation crop (None without crops; process 0)."""
        if self.validator is None or not self.ranks.is_main:
            return None
        return self.validator.preview(net)
