"""torch datasets of LR/HR pairs crappified on the fly, and their loaders.

- :class:`PairDataset` is map-style: ``dataset[(epoch, index)]`` (or ``dataset[index]``
  at :attr:`PairDataset.epoch`) is a deterministic function of ``(seed, epoch, index)``,
  so a resumed run sees exactly the samples an uninterrupted run would have seen, and
  worker processes need no seeding: no global random state is used anywhere.
- :class:`EpochSampler` yields ``(epoch, index)`` keys from the main process and moves
  to the next epoch each time it is iterated (set it with ``set_epoch`` when resuming),
  which also works with persistent workers.
- :class:`ValidationSet` holds fixed crops: the same positions and crappify seeds every
  epoch and every run with the same seed, no augmentation, cached after first use.
- :func:`build_datasets` splits the images by image (:func:`~decrappify.data.patches.
  split_by_image`), computes each image's statistics once and builds both sets;
  :func:`make_loaders` wraps them in ``torch.utils.data.DataLoader`` objects.
- The training pipeline that keeps an accelerator busy: :func:`keyed_loader` (worker
  processes, pinned memory and their prefetch; :func:`default_workers` per device) and
  :func:`prefetch_to_device` (the next batch is copied to the device while the current
  one is used).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from decrappify.config.data import DataConfig
from decrappify.config.normalization import NormalizationConfig
from decrappify.data.pairs import (
    EITHER_CRAPPIFY_OR_PAIRS,
    TRAIN_KEY,
    VALIDATION_KEY,
    ImageStats,
    Pair,
    PairMaker,
    as_image,
    image_stats,
    pair_scale,
)
from decrappify.data.patches import Region, split_by_image
from decrappify.errors import InputError
from decrappify.io.image import Image

if TYPE_CHECKING:
    from decrappify.config.crappify import CrappifyConfig

Batch = tuple[torch.Tensor, torch.Tensor]


def _tensors(pair: Pair) -> Batch:
    return torch.from_numpy(pair.lr), torch.from_numpy(pair.hr)


class PairDataset(Dataset):
    """Random training pairs, a deterministic function of ``(seed, epoch, index)``.

    Parameters
    ----------
    maker : PairMaker
        Makes the pairs (training regions, augmentation on).
    samples_per_epoch : int
        Length of the dataset (one epoch).
    augment : bool
        Apply the configured augmentation.
    epoch : int
        Epoch used by integer indices.

    Notes
    -----
    ``dataset[i]`` returns ``(lr, hr)`` float32 tensors of shapes
    ``(n_frames, p // scale, p // scale)`` and ``(1, p, p)``. Index with an
    ``(epoch, index)`` tuple to choose the epoch explicitly (what :class:`EpochSampler`
    does).
    """

    def __init__(
        self, maker: PairMaker, samples_per_epoch: int, *, augment: bool = True, epoch: int = 0
    ) -> None:
        if samples_per_epoch < 1:
            raise InputError(f"samples_per_epoch: must be >= 1 (got {samples_per_epoch})")
        self.maker = maker
        self.samples_per_epoch = int(samples_per_epoch)
        self.augment = augment
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch used by integer indices.

        Parameters
        ----------
        epoch : int
            Non-negative epoch number.
        """
        if epoch < 0:
            raise InputError(f"epoch: must be >= 0 (got {epoch})")
        self.epoch = int(epoch)

    def sample(self, epoch: int, index: int) -> Pair:
        """Return the pair of one sample with its metadata (numpy arrays).

        Parameters
        ----------
        epoch : int
            Epoch number (>= 0).
        index : int
            Sample index in ``[0, samples_per_epoch)``.

        Returns
        -------
        Pair
            The pair, its position, crappify seed and augmentation.
        """
        if not 0 <= index < self.samples_per_epoch or epoch < 0:
            raise IndexError(
                f"sample (epoch {epoch}, index {index}) out of range: epochs >= 0, "
                f"indices in [0, {self.samples_per_epoch})"
            )
        return self.maker.make((TRAIN_KEY, epoch, index), augment=self.augment)

    def __getitem__(self, key: int | tuple[int, int]) -> Batch:
        if isinstance(key, tuple):
            epoch, index = key
        else:
            epoch, index = self.epoch, key
        return _tensors(self.sample(int(epoch), int(index)))

    def describe(self) -> dict[str, Any]:
        """Summarise the training data for the model metadata.

        Returns
        -------
        dict
            :meth:`PairMaker.describe` plus ``samples_per_epoch``.
        """
        return {**self.maker.describe(), "samples_per_epoch": self.samples_per_epoch}


class ValidationSet(Dataset):
    """Fixed validation crops: identical every epoch and every run with the same seed.

    Parameters
    ----------
    maker : PairMaker
        Makes the pairs (validation regions).
    n_crops : int
        Number of crops.
    cache : bool
        Keep the crops in memory after first use (``n_crops`` patches).
    """

    def __init__(self, maker: PairMaker, n_crops: int, *, cache: bool = True) -> None:
        if n_crops < 1:
            raise InputError(f"validation.patches: must be >= 1 (got {n_crops})")
        self.maker = maker
        self.n_crops = int(n_crops)
        self.cache = cache
        self._cache: dict[int, Pair] = {}

    def __len__(self) -> int:
        return self.n_crops

    def crop(self, index: int) -> Pair:
        """Return one fixed crop with its metadata (numpy arrays).

        Parameters
        ----------
        index : int
            Crop index in ``[0, n_crops)``.

        Returns
        -------
        Pair
            The pair (no augmentation).
        """
        if not 0 <= index < self.n_crops:
            raise IndexError(f"validation crop {index} out of range [0, {self.n_crops})")
        pair = self._cache.get(index)
        if pair is None:
            pair = self.maker.make((VALIDATION_KEY, index), augment=False)
            if self.cache:
                self._cache[index] = pair
        return pair

    def __getitem__(self, index: int) -> Batch:
        return _tensors(self.crop(int(index)))

    def describe(self) -> dict[str, Any]:
        """Summarise the validation data for the model metadata.

        Returns
        -------
        dict
            :meth:`PairMaker.describe` plus ``crops``.
        """
        return {**self.maker.describe(), "crops": self.n_crops}


class EpochSampler(Sampler):
    """Yield ``(epoch, index)`` keys for a :class:`PairDataset`, one epoch per iteration.

    Each ``iter()`` yields the keys of the current epoch, in index order (the samples
    are random already), then advances the epoch, so consecutive epochs see new patches
    without anyone calling ``set_epoch``. Call :meth:`set_epoch` to resume.

    Parameters
    ----------
    samples_per_epoch : int
        Indices per epoch.
    start_epoch : int
        Epoch of the first iteration.
    """

    def __init__(self, samples_per_epoch: int, *, start_epoch: int = 0) -> None:
        self.samples_per_epoch = int(samples_per_epoch)
        self.epoch = int(start_epoch)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of the next iteration.

        Parameters
        ----------
        epoch : int
            Non-negative epoch number.
        """
        if epoch < 0:
            raise InputError(f"epoch: must be >= 0 (got {epoch})")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        self.epoch += 1
        return iter([(epoch, i) for i in range(self.samples_per_epoch)])


def build_datasets(
    hr_images: Sequence[Any],
    config: DataConfig | None = None,
    crappify: CrappifyConfig | None = None,
    *,
    lr_images: Sequence[Any] | None = None,
) -> tuple[PairDataset, ValidationSet | None]:
    """Split images by image and build the training and validation datasets.

    Parameters
    ----------
    hr_images : sequence of Image or array-like
        High-resolution training images (2D or stacks; lazy arrays stay lazy).
    config : DataConfig or None
        Data settings (defaults when None).
    crappify : CrappifyConfig or None
        The degradation that makes the LR inputs; None in paired mode.
    lr_images : sequence of Image or array-like or None
        Aligned LR images (paired mode), one per HR image.

    Returns
    -------
    train : PairDataset
        ``config.samples_per_epoch`` random augmented pairs per epoch.
    validation : ValidationSet or None
        ``config.validation.patches`` fixed crops, or None when validation is disabled.
    """
    config = config or DataConfig()
    hr = [as_image(x, role="HR image", index=i) for i, x in enumerate(hr_images)]
    lr = (
        None
        if lr_images is None
        else [as_image(x, role="LR image", index=i) for i, x in enumerate(lr_images)]
    )
    if (lr is None) == (crappify is None):
        raise InputError(EITHER_CRAPPIFY_OR_PAIRS)
    scale = pair_scale(hr, lr) if lr is not None else int(crappify.scale)  # type: ignore[union-attr]
    config.check_scale(scale)
    train_regions, val_regions = split_by_image(
        hr,
        val_fraction=config.validation.fraction,
        val_count=config.validation.count,
        seed=config.seed,
        patch_size=config.patch_size,
        grid=scale if lr is not None else 1,
    )
    normalization = config.resolve_normalization(
        crappify.normalization if crappify is not None else None
    )
    stats = _all_stats(hr, normalization, config.patch_size, config.seed)
    lr_stats = (
        None
        if lr is None
        else _all_stats(lr, normalization, config.patch_size // scale, config.seed)
    )
    train = PairMaker(
        hr, train_regions, config, crappify=crappify, lr_images=lr, stats=stats, lr_stats=lr_stats
    )
    train_set = PairDataset(train, config.samples_per_epoch)
    if not val_regions:
        return train_set, None
    val_config = config.model_copy(
        update={"patch_size": validation_crop_size(config, val_regions, scale)}
    )
    val = PairMaker(
        hr, val_regions, val_config, crappify=crappify, lr_images=lr, stats=stats, lr_stats=lr_stats
    )
    return train_set, ValidationSet(val, config.validation.patches)


def validation_crop_size(config: DataConfig, regions: Sequence[Region], scale: int) -> int:
    """Side of the validation crops: ``validation.size``, or twice the patch (>= 256).

    Parameters
    ----------
    config : DataConfig
        Patch size and validation settings.
    regions : sequence of Region
        The validation regions; the crops fit in the smallest.
    scale : int
        Super-resolution factor (crop sides are multiples of ``lcm(32, scale)``).

    Returns
    -------
    int
        The side in HR pixels, never below the training patch.
    """
    wanted = config.validation.size or max(2 * config.patch_size, 256)
    room = min(min(r.rows[1] - r.rows[0], r.cols[1] - r.cols[0]) for r in regions)
    step = math.lcm(32, scale)
    return max(config.patch_size, min(wanted, room) // step * step)


def _all_stats(
    images: Sequence[Image], normalization: NormalizationConfig, patch: int, seed: int
) -> list[ImageStats | None]:
    return [image_stats(image, normalization, patch_size=patch, seed=seed) for image in images]


def _worker_init(worker_id: int) -> None:
    """Keep each DataLoader worker to one torch thread (the workers are the parallelism)."""
    del worker_id
    torch.set_num_threads(1)


#: Most DataLoader workers chosen by :func:`default_workers`.
MAX_DEFAULT_WORKERS = 8
#: Batches each worker prepares ahead (DataLoader's ``prefetch_factor``).
PREFETCH_BATCHES = 4


def default_workers(device: torch.device, cores: int) -> int:
    """Choose the DataLoader workers for a device when the config leaves it to the run.

    On the CPU the training steps use every core, so crappifying in workers only takes
    cores from them (``benchmarks/data_pipeline.py``): 0. On an accelerator the CPU
    cores are free to make the next batches: half of them (up to
    :data:`MAX_DEFAULT_WORKERS`), at least one.
    """
    if device.type == "cpu":
        return 0
    return max(1, min(MAX_DEFAULT_WORKERS, cores // 2))


def keyed_loader(
    dataset: Dataset, batch_sampler: Sampler, *, num_workers: int, pin_memory: bool
) -> DataLoader:
    """Load batches of keys, with worker processes and pinned memory where asked.

    The batches are the same with any number of workers: samples depend only on their
    key (:class:`PairDataset`), and the workers return them in the sampler's order. Each
    worker prepares :data:`PREFETCH_BATCHES` batches ahead; with ``pin_memory`` the
    batches come in page-locked memory, which an accelerator copies from asynchronously.
    """
    if num_workers < 0:
        raise InputError(f"data.num_workers: must be >= 0 (got {num_workers})")
    workers: dict[str, Any] = {}
    if num_workers:
        workers = {"worker_init_fn": _worker_init, "prefetch_factor": PREFETCH_BATCHES}
    return DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        **workers,
    )


def to_device(
    batch: Sequence[torch.Tensor], device: torch.device, *, channels_last: bool
) -> list[torch.Tensor]:
    """Move a batch's tensors to a device (asynchronously from pinned memory)."""
    out = []
    for x in batch:
        x = x.to(device, non_blocking=True)
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        out.append(x)
    return out


B = TypeVar("B")
P = TypeVar("P")


def lookahead(items: Iterable[B], start: Callable[[B], P], finish: Callable[[P], B]) -> Iterator[B]:
    """Yield ``finish(start(item))`` for each item, starting item k + 1 before yielding item k."""
    iterator = iter(items)
    try:
        pending = start(next(iterator))
    except StopIteration:
        return
    for item in iterator:
        ready = finish(pending)
        pending = start(item)
        yield ready
    yield finish(pending)


def prefetch_to_device(
    batches: Iterable[Sequence[torch.Tensor]], device: torch.device, *, channels_last: bool
) -> Iterator[list[torch.Tensor]]:
    """Move batches to the device, copying the next while the current is used (CUDA).

    On a CUDA device the copy of batch k + 1 runs on a side stream while the caller works
    on batch k; before batch k is handed over the caller's stream waits for its copy, and
    its memory is marked as used by that stream. Elsewhere the batches are moved as they
    come (the CPU needs no copy). ``channels_last`` gives 4D tensors that memory format.
    """

    def move(batch: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return to_device(batch, device, channels_last=channels_last)

    if device.type != "cuda":
        return (move(batch) for batch in batches)
    stream = torch.cuda.Stream(device)

    def start(batch: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        with torch.cuda.stream(stream):
            return move(batch)

    def finish(moved: list[torch.Tensor]) -> list[torch.Tensor]:
        current = torch.cuda.current_stream(device)
        current.wait_stream(stream)
        for x in moved:
            x.record_stream(current)
        return moved

    return lookahead(batches, start, finish)


def make_loaders(
    train: PairDataset,
    validation: ValidationSet | None = None,
    *,
    batch_size: int | None = None,
    num_workers: int | None = None,
    start_epoch: int = 0,
) -> tuple[DataLoader, DataLoader | None]:
    """Wrap the datasets in DataLoaders.

    The training loader draws keys from an :class:`EpochSampler` (reach it as
    ``loader.sampler`` to ``set_epoch`` when resuming) and drops a last incomplete
    batch. Batches are the same with any ``num_workers``: samples depend only on their
    key. The validation loader runs in the main process, in crop order, so its cached
    crops are reused every epoch.

    Parameters
    ----------
    train : PairDataset
        Training pairs.
    validation : ValidationSet or None
        Fixed validation crops.
    batch_size : int or None
        Patches per batch (``DataConfig.batch_size`` of the training maker when None).
    num_workers : int or None
        Training worker processes (``DataConfig.num_workers`` when None).
    start_epoch : int
        Epoch of the first training iteration.

    Returns
    -------
    train_loader : DataLoader
        Yields ``(lr, hr)`` batches of shapes ``(B, n_frames, p/s, p/s)`` and
        ``(B, 1, p, p)``.
    validation_loader : DataLoader or None
        The same for the validation crops.
    """
    config = train.maker.config
    batch_size = config.batch_size if batch_size is None else int(batch_size)
    num_workers = (config.num_workers or 0) if num_workers is None else int(num_workers)
    if batch_size < 1:
        raise InputError(f"batch_size: must be >= 1 (got {batch_size})")
    if num_workers < 0:
        raise InputError(f"num_workers: must be >= 0 (got {num_workers})")
    pin = torch.cuda.is_available()
    train_loader = DataLoader(
        train,
        batch_size=batch_size,
        sampler=EpochSampler(len(train), start_epoch=start_epoch),
        num_workers=num_workers,
        worker_init_fn=_worker_init if num_workers > 0 else None,
        persistent_workers=num_workers > 0,
        drop_last=len(train) >= batch_size,
        pin_memory=pin,
    )
    val_loader = None
    if validation is not None:
        val_loader = DataLoader(
            validation, batch_size=batch_size, shuffle=False, num_workers=0, pin_memory=pin
        )
    return train_loader, val_loader


def describe(train: PairDataset, validation: ValidationSet | None = None) -> dict[str, Any]:
    """Summarise the training and validation data for the model metadata.

    Parameters
    ----------
    train : PairDataset
        Training pairs.
    validation : ValidationSet or None
        Fixed validation crops.

    Returns
    -------
    dict
        The training summary (:meth:`PairDataset.describe`) with a ``validation`` entry
        (regions, positions, crops and their size; None without validation).
    """
    summary = train.describe()
    summary["batch_size"] = train.maker.config.batch_size
    if validation is None:
        summary["validation"] = None
    else:
        val = validation.describe()
        summary["validation"] = {
            "n_images": val["n_images"],
            "regions": val["regions"],
            "positions": val["positions"],
            "crops": val["crops"],
            "patch_size": val["patch_size"],
        }
    return summary
