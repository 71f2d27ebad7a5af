"""The training data pipeline: keyed batches with any number of workers, batches on the device."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

import decrappify.data.dataset as dataset
from decrappify.config.train import TrainConfig
from decrappify.data.dataset import default_workers, lookahead, prefetch_to_device
from decrappify.sample import synthetic_image
from decrappify.train.streams import DataStreams

TINY = {
    "data": {"patch_size": 64, "samples_per_epoch": 64, "validation": {"count": 1, "patches": 2}},
    "batch_size": 2,
    "device": "cpu",
}


def streams(**changes) -> DataStreams:
    config = TrainConfig.validate_dict(TINY).with_overrides(changes).resolved()
    images = [np.asarray(synthetic_image("em", (96, 96), seed=i).data) for i in range(3)]
    return DataStreams(
        config,
        images,
        None,
        config.resolved_crappify(),
        device=torch.device("cpu"),
        autocast=contextlib.nullcontext,
        channels_last=False,
    )


def test_worker_processes_draw_the_same_batches():
    """A batch is a function of (seed, stream, cycle, step), whatever the workers."""
    serial = streams(**{"data.num_workers": 0})
    parallel = streams(**{"data.num_workers": 2})
    assert (serial.workers, parallel.workers) == (0, 2)
    a = list(serial.batches("pretrain_generator", 0, start=3, stop=7))
    b = list(parallel.batches("pretrain_generator", 0, start=3, stop=7))
    assert len(a) == len(b) == 4
    for (lr_a, hr_a), (lr_b, hr_b) in zip(a, b, strict=True):
        assert lr_a.shape == (2, 1, 16, 16) and hr_a.shape == (2, 1, 64, 64)
        assert torch.equal(lr_a, lr_b) and torch.equal(hr_a, hr_b)
    # and a resumed stream (start=5) continues it exactly
    resumed = list(serial.batches("pretrain_generator", 0, start=5, stop=7))
    assert all(torch.equal(x[0], y[0]) for x, y in zip(a[2:], resumed, strict=True))
    other = next(serial.batches("gan", 0, start=3))
    assert not torch.equal(other[1], a[0][1])  # another stream, other samples


def test_the_workers_follow_the_device():
    assert streams().workers == 0  # CPU: the steps use every core
    assert default_workers(torch.device("cpu"), 64) == 0
    assert default_workers(torch.device("cuda"), 16) == 8
    assert default_workers(torch.device("cuda", 1), 2) == 1
    assert default_workers(torch.device("cuda"), 64) == dataset.MAX_DEFAULT_WORKERS


def test_lookahead_starts_the_next_item_before_handing_over_this_one():
    log = []

    def start(x):
        log.append(f"start {x}")
        return x

    def finish(x):
        log.append(f"finish {x}")
        return x * 10

    for value in lookahead(range(3), start, finish):
        log.append(f"use {value}")
    assert log == [
        "start 0", "finish 0", "start 1", "use 0", "finish 1", "start 2", "use 10",
        "finish 2", "use 20",
    ]  # fmt: skip
    assert list(lookahead([], start, finish)) == []


def test_batches_on_the_cpu_are_the_loaders_own():
    data = streams()
    moved = list(data.device_batches("pretrain_generator", 0, stop=2))
    plain = list(data.batches("pretrain_generator", 0, stop=2))
    pairs = [(m, p) for a, b in zip(moved, plain, strict=True) for m, p in zip(a, b, strict=True)]
    assert len(pairs) == 4 and all(torch.equal(m, p) for m, p in pairs)
    lr = prefetch_to_device([plain[0]], torch.device("cpu"), channels_last=True)
    assert next(iter(lr))[0].is_contiguous(memory_format=torch.channels_last)


class FakeStream:
    """Records what a CUDA stream is asked to do (the CUDA path, checked on any machine)."""

    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name

    def wait_stream(self, other: FakeStream) -> None:
        self.log.append(f"{self.name} waits for {other.name}")


class Copied:
    """A batch tensor 'on the device': remembers the streams that used it."""

    def __init__(self, log: list[str], value: int) -> None:
        self.log, self.value = log, value

    def record_stream(self, stream: FakeStream) -> None:
        self.log.append(f"{self.value} used on {stream.name}")


def test_cuda_batches_are_copied_on_a_side_stream_one_ahead(monkeypatch):
    """The copy of batch k+1 starts on the side stream before batch k is handed over, and
    the compute stream waits for a copy before it uses the batch."""
    log: list[str] = []
    side, compute = FakeStream(log, "side"), FakeStream(log, "compute")
    active = ["compute"]

    class Context:
        def __init__(self, stream):
            self.stream = stream

        def __enter__(self):
            active.append(self.stream.name)

        def __exit__(self, *exc):
            active.pop()

    def copy(batch, device, *, channels_last):
        log.append(f"copy {batch[0]} on {active[-1]}")
        return [Copied(log, batch[0])]

    monkeypatch.setattr(torch.cuda, "Stream", lambda device: side)
    monkeypatch.setattr(torch.cuda, "stream", Context)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device: compute)
    monkeypatch.setattr(dataset, "to_device", copy)
    for batch in prefetch_to_device([[0], [1]], torch.device("cuda"), channels_last=True):
        log.append(f"step on {batch[0].value}")
    assert log == [
        "copy 0 on side",
        "compute waits for side",
        "0 used on compute",
        "copy 1 on side",
        "step on 0",
        "compute waits for side",
        "1 used on compute",
        "step on 1",
    ]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_equal_the_cpu_batches():
    data = streams()
    plain = list(data.batches("pretrain_generator", 0, stop=3))
    moved = list(prefetch_to_device(plain, torch.device("cuda"), channels_last=True))
    for a, b in zip(plain, moved, strict=True):
        assert all(torch.equal(x, y.cpu()) for x, y in zip(a, b, strict=True))
