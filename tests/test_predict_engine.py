"""Tests for decrappify.predict.engine: chunked, lazy, exact super-resolution of whole images."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F
import zarr
from torch import nn

from _tiny import whole_image_prediction
from decrappify.config.predict import MAX_IN_MEMORY, PredictConfig
from decrappify.devices import resolve_device
from decrappify.errors import Cancelled, InputError, OutputError
from decrappify.events import run_to_end
from decrappify.io import Image, read_image, read_ome_zarr_metadata, write_image
from decrappify.normalize import denormalize, normalize, percentile_range
from decrappify.predict.block_geometry import BlockGrid
from decrappify.predict.block_predictor import BlockPredictor
from decrappify.predict.engine import iter_predict_image, predict_image_region
from decrappify.predict.network import model_handle
from decrappify.predict.plan import iter_plan
from decrappify.predict.receptive import auto_overlap, needed_probe
from decrappify.predict.settings import check_tile, resolve_settings
from decrappify.predict.tile_geometry import default_overlap
from decrappify.predict.tile_predictor import network_grid


class ConvSR(nn.Module):
    """Bilinear upsampling minus a stack of 3×3 convolutions: a small, finite receptive field."""

    multiple = 32

    def __init__(self, scale=2, n_frames=1, depth=3, width=4, seed=0):
        super().__init__()
        self.scale, self.n_frames = scale, n_frames
        generator = torch.Generator().manual_seed(seed)
        layers, channels = [], n_frames
        for i in range(depth):
            out = 1 if i == depth - 1 else width
            conv = nn.Conv2d(channels, out, 3, padding=1)
            with torch.no_grad():
                weight = torch.rand(conv.weight.shape, generator=generator) + 0.5
                conv.weight.copy_(weight / weight.sum(dim=(1, 2, 3), keepdim=True))
                conv.bias.fill_(0.01)
            layers += [conv] + ([nn.ReLU()] if i < depth - 1 else [])
            channels = out
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        up = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        centre = self.n_frames // 2
        return 1.5 * up[:, centre : centre + 1] - 0.5 * self.body(up)


@pytest.fixture
def rng():
    return np.random.default_rng(11)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny convolutions gain nothing from threads on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Receptive-field caches of in-memory models go to a per-test folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("decrappify.predict.receptive._MEMORY", {})


SMALL = {"tile": 32, "batch": 4, "device": "cpu", "threads": 1, "chunk": 64, "block": 128}


def predict(net, image, out=None, *, max_memory=MAX_IN_MEMORY, **settings):
    config = PredictConfig.build(**{**SMALL, **settings})
    return run_to_end(iter_predict_image(net, image, out, config, max_memory=max_memory))


# --------------------------------------------------------------------------- geometry


def test_block_grid_is_whole_chunks_aligned_to_the_scale():
    grid = BlockGrid.plan((3, 500, 700), 3, chunk=1024, block=2048)
    assert grid.block == (1500, 2100)  # whole image along each axis (smaller than 3072)
    grid = BlockGrid.plan((1200, 1500), 3, chunk=1024, block=2048)
    assert grid.block == (3072, 3072)  # lcm(1024, 3): blocks start on LR pixels
    grid = BlockGrid.plan((2, 300, 250), 4, chunk=256, block=512)
    assert grid.out_shape == (2, 1200, 1000)
    assert grid.counts == (2, 3, 2)
    assert grid.chunks == ((1, 1), (512, 512, 176), (512, 488))
    assert grid.indices()[:3] == [(0, 0, 0), (0, 0, 1), (0, 1, 0)]
    assert grid.bounds((1, 2, 1)) == ((1024, 1200), (512, 1000))
    assert grid.slices((1, 2, 1)) == (slice(1, 2), slice(1024, 1200), slice(512, 1000))
    assert sum(grid.pixels(i) for i in grid.indices()) == 2 * 1200 * 1000


def test_tile_must_give_a_multiple_of_32():
    assert check_tile(96, 4) == 96
    with pytest.raises(InputError) as info:
        check_tile(100, 4)
    assert str(info.value) == (
        "tile 100: tile × scale must be a multiple of 32 (100 × 4 = 400); "
        "use a multiple of 8 such as 96 or 104"
    )
    with pytest.raises(
        InputError, match=r"tile 10: .* \(10 × 2 = 20\); use a multiple of 16 such as 16$"
    ):
        check_tile(10, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"overlap": 40}, "overlap must be at most half the tile (tile 64, overlap 40)"),
        ({"overlap": -1}, "overlap must be 'auto' or an integer >= 0 (got -1)"),
        ({"batch": 0}, "batch must be a positive integer (got 0)"),
        ({"device": "tpu"}, "device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps' (got 'tpu')"),
        ({"dtype": "int32"}, "dtype must be one of uint8, uint16, float32 (got int32)"),
        ({"threads": 0}, "threads must be a positive integer (got 0)"),
    ],
)
def test_bad_settings(kwargs, message):
    handle = model_handle(ConvSR(scale=2))
    with pytest.raises(InputError) as info:
        resolve_settings(handle, None, PredictConfig.build(**{"tile": 64, **kwargs}))
    assert str(info.value) == message


def test_device_auto_is_cpu_without_cuda():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="device 'cuda' is not available"):
            resolve_device("cuda")


def test_auto_overlap_covers_small_fields_and_is_capped_for_large_ones():
    assert auto_overlap(2, 2, 128) == default_overlap(2, 2) == 14  # margin 3 >= 2, band 8
    assert auto_overlap(70, 4, 128) == 64  # a U-Net's field: half the tile
    assert needed_probe(128, 4) == 72  # 4 × (margin 16 + 1), rounded to the quantum 8


# --------------------------------------------------------------------------- exactness


@pytest.mark.parametrize(("scale", "shape"), [(2, (150, 130)), (3, (70, 95)), (4, (41, 77))])
def test_chunked_prediction_equals_whole_image_prediction(rng, scale, shape):
    net = ConvSR(scale=scale, depth=3)
    image = (rng.random(shape) * 3000).astype(np.uint16)
    result = predict(net, image, dtype="float32", tile=32 if scale != 3 else 32)
    grid = BlockGrid.plan(shape, scale, chunk=SMALL["chunk"], block=SMALL["block"])
    assert len(grid.indices()) > 1  # several blocks, each with several tiles
    lo, hi = percentile_range(image)
    expected = whole_image_prediction(net, normalize(image, lo, hi))
    got = (result.image.data - lo) / (hi - lo)  # float32 output: raw units, unclipped
    assert result.image.data.shape == (shape[0] * scale, shape[1] * scale)
    assert np.abs(got - expected).max() < 1e-4
    # the overlap the field needs, rounded up onto the network's grid where half a tile
    # holds a grid step (tile_geometry)
    step, overlap = network_grid(net), result.stats["overlap"]
    needed = default_overlap(result.stats["radius"], scale)
    assert overlap == (-(-needed // step) * step if step <= 16 else needed)
    assert result.stats["blocks_computed"] == len(grid.indices())


def test_integer_output_is_the_denormalised_prediction(rng):
    net = ConvSR(scale=2)
    image = (rng.random((90, 70)) * 200 + 20).astype(np.uint8)
    result = predict(net, image)
    assert result.image.dtype == np.uint8
    lo, hi = percentile_range(image)
    expected = denormalize(whole_image_prediction(net, normalize(image, lo, hi)), lo, hi, np.uint8)
    assert np.abs(result.image.data.astype(int) - expected).max() <= 1  # rounding at .5
    assert np.mean(result.image.data != expected) < 1e-3
    wide = predict(net, image, dtype="uint16").image.data
    np.testing.assert_array_equal(np.minimum(wide, 255), result.image.data)


def test_float32_output_is_not_clipped(rng):
    net = ConvSR(scale=2)
    image = rng.random((64, 64)).astype(np.float32) * 10 - 5  # contrasty: overshoots
    result = predict(net, image, dtype="float32")
    lo, hi = percentile_range(image)
    expected = whole_image_prediction(net, normalize(image, lo, hi)) * (hi - lo) + lo
    np.testing.assert_allclose(result.image.data, expected, atol=1e-3)
    assert result.image.data.max() > hi and result.image.data.min() < lo  # beyond the range


def test_stacks_are_predicted_plane_by_plane(rng):
    net = ConvSR(scale=2)
    stack = (rng.random((3, 40, 50)) * 1000).astype(np.uint16)
    result = predict(net, Image(stack, axes="TYX"), dtype="float32")
    lo, hi = percentile_range(stack)  # one range for the whole stack
    assert result.image.axes == "TYX" and result.image.shape == (3, 80, 100)
    for t in range(3):
        expected = whole_image_prediction(net, normalize(stack[t], lo, hi)) * (hi - lo) + lo
        np.testing.assert_allclose(result.image.data[t], expected, atol=1e-4 * (hi - lo))


def test_2_5d_models_take_the_neighbouring_planes_mirrored_at_the_ends(rng):
    net = ConvSR(scale=2, n_frames=3)
    stack = (rng.random((4, 36, 40)) * 1000).astype(np.uint16)
    result = predict(net, stack, dtype="float32")
    lo, hi = percentile_range(stack)
    x = normalize(stack, lo, hi)
    for z, planes in enumerate([(1, 0, 1), (0, 1, 2), (1, 2, 3), (2, 3, 2)]):
        expected = whole_image_prediction(net, x[list(planes)]) * (hi - lo) + lo
        np.testing.assert_allclose(result.image.data[z], expected, atol=1e-4 * (hi - lo))


def test_a_2_5d_model_refuses_a_2d_image(rng):
    with pytest.raises(InputError) as info:
        predict(ConvSR(scale=2, n_frames=5), np.zeros((40, 40), np.uint8))
    assert str(info.value) == (
        "image: the model ConvSR takes 5 neighbouring planes (2.5D) but the image is 2D "
        "(shape (40, 40)); use a ZYX or TYX stack or a 2D model"
    )


def test_scale_check_and_memory_limit(rng):
    image = np.zeros((64, 64), np.uint16)
    with pytest.raises(
        InputError, match=r"^ConvSR: this model upsamples ×2, but scale 4 was asked$"
    ):
        predict(ConvSR(scale=2), image, scale=4)
    with pytest.raises(InputError) as info:
        predict(ConvSR(scale=2), image, max_memory=2**10)
    assert str(info.value) == (
        "image: the result would take 0.0 GiB in memory (limit 0.0 GiB); "
        "give an output path (.zarr or .tif)"
    )


def test_nan_pixels_are_refused(rng):
    image = rng.random((40, 40)).astype(np.float32)
    image[3, 4] = np.nan
    with pytest.raises(InputError, match="NaN"):
        predict(ConvSR(scale=2), image)


# --------------------------------------------------------------------------- files


def test_ome_zarr_output_overlays_the_input_and_matches_memory(rng, tmp_path):
    net = ConvSR(scale=4, depth=2)
    data = (rng.random((2, 120, 90)) * 60000).astype(np.uint16)
    source = write_image(
        Image(data, axes="ZYX", pixel_size=(2.0, 0.4, 0.4), units=("micrometer",) * 3),
        tmp_path / "in.zarr",
        chunks=(1, 64, 64),
    )
    lazy = read_image(source)
    assert lazy.is_lazy
    in_memory = predict(net, lazy, chunk=128, block=256).image  # the same blocks
    result = predict(net, lazy, tmp_path / "out" / "sr.zarr", chunk=128, block=256)
    assert result.path == tmp_path / "out" / "sr.zarr"
    np.testing.assert_array_equal(np.asarray(result.image.data), in_memory.data)
    meta = read_ome_zarr_metadata(result.path)
    assert result.image.pixel_size == pytest.approx((2.0, 0.1, 0.1))
    assert result.image.translate == pytest.approx((0.0, -0.15, -0.15))  # centres overlay
    assert len(meta.paths) == 2  # a pyramid: 480 × 360 → 240 × 180
    level0 = zarr.open_array(result.path / "0", mode="r")
    assert level0.chunks == (1, 128, 128) and level0.dtype == np.uint16
    assert not list((tmp_path / "out").glob(".*"))  # no partial left


def test_tiff_output_matches_memory(rng, tmp_path):
    net = ConvSR(scale=2)
    data = (rng.random((100, 140)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "in.tif", data, resolution=(2.0, 2.0), resolutionunit="CENTIMETER")
    result = predict(net, tmp_path / "in.tif", tmp_path / "sr.tif")
    np.testing.assert_array_equal(tifffile.imread(result.path), predict(net, data).image.data)
    with tifffile.TiffFile(result.path) as tif:
        assert tif.pages[0].is_tiled


def test_existing_output_and_output_inside_the_input_are_refused(rng, tmp_path):
    net = ConvSR(scale=2)
    source = write_image(np.zeros((40, 40), np.uint8), tmp_path / "in.zarr")
    with pytest.raises(OutputError, match="output lies inside the input"):
        predict(net, source, source / "sr.zarr")
    (tmp_path / "sr.zarr").mkdir()
    with pytest.raises(OutputError, match=r"sr.zarr: already exists; pass --overwrite"):
        predict(net, source, tmp_path / "sr.zarr")
    predict(net, source, tmp_path / "sr.zarr", overwrite=True)
    assert read_image(tmp_path / "sr.zarr").shape == (80, 80)


def test_closing_the_generator_leaves_nothing(rng, tmp_path):
    net = ConvSR(scale=2)
    image = (rng.random((200, 200)) * 255).astype(np.uint8)
    events = iter_predict_image(net, image, tmp_path / "out" / "sr.zarr", PredictConfig(**SMALL))
    for event in events:
        if event.info.get("level") == 0:
            break  # first block written
    events.close()
    assert list((tmp_path / "out").iterdir()) == []
    assert not any(t.name.startswith("decrappify-") for t in threading.enumerate())


def test_progress_reports_the_rate(rng):
    events = iter_predict_image(
        ConvSR(scale=2), np.ones((100, 100), np.uint8), None, PredictConfig(**SMALL)
    )
    blocks = [e for e in events if e.info.get("level") == 0]
    assert len(blocks) == 4 and blocks[-1].step == blocks[-1].total == 4
    assert blocks[-1].info["pixels_per_s"] > 0
    assert blocks[-1].info["rate"].endswith(" MPix/s")


# --------------------------------------------------------------------------- runtime


def test_cpu_runs_use_the_given_threads_and_restore_them(rng):
    seen = []

    class Spy(ConvSR):
        def forward(self, x):
            seen.append(torch.get_num_threads())
            return super().forward(x)

    predict(Spy(scale=2), np.ones((40, 40), np.uint8), threads=2)
    assert set(seen) == {2}
    assert torch.get_num_threads() == 1


def test_reading_overlaps_compute(rng, monkeypatch):
    """A slow reader and a slow model run at the same time (one block ahead)."""
    original = BlockPredictor.read

    def slow_read(self, index):
        time.sleep(0.1)
        return original(self, index)

    class SlowNet(ConvSR):
        def forward(self, x):
            time.sleep(0.1)
            return super().forward(x)

    monkeypatch.setattr(BlockPredictor, "read", slow_read)
    image = np.ones((6 * 64, 64), np.uint8)  # 6 blocks of one tile each
    start = time.perf_counter()
    result = predict(SlowNet(scale=2), image, overlap=0, tile=64)
    elapsed = time.perf_counter() - start
    assert result.stats["blocks_computed"] == 6
    assert elapsed < 6 * 0.2 * 0.85  # sequential reading and computing would take 1.2 s


def test_out_of_memory_settings_carry_over_to_the_next_blocks(rng):
    calls = []

    class SmallDevice(ConvSR):
        def forward(self, x):
            calls.append(tuple(x.shape))
            if x.shape[0] > 1:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
            return super().forward(x)

    result = predict(SmallDevice(scale=2), np.ones((128, 64), np.uint8), batch=4, overlap=8)
    assert result.stats["oom_retries"] == [{"tile": [32, 32], "batch": 2},
                                           {"tile": [32, 32], "batch": 1}]  # fmt: skip
    batches = [shape[0] for shape in calls]
    assert batches.count(4) == 1 and batches.count(2) == 1  # only the first block retried
    assert set(batches[2:]) == {1}


def test_cancel_stops_a_running_block(rng):
    config = PredictConfig(tile=32, overlap=0, device="cpu", chunk=128, block=128)
    image = np.ones((64, 64), np.uint8)
    plan = run_to_end(iter_plan(ConvSR(scale=2), image, None, config, max_memory=2**20))
    predictor = BlockPredictor(plan)
    predictor.cancel()
    with pytest.raises(Cancelled):
        predictor.compute((0, 0), predictor.read((0, 0)))


# --------------------------------------------------------------------------- preview


def test_region_preview_equals_the_same_region_of_the_full_prediction(rng):
    net = ConvSR(scale=2, n_frames=3)
    stack = Image(
        (rng.random((3, 90, 80)) * 4000).astype(np.uint16),
        axes="ZYX",
        pixel_size=(1.0, 0.5, 0.5),
        translate=(0.0, 10.0, 20.0),
    )
    full = predict(net, stack).image
    config = PredictConfig(tile=32, device="cpu", threads=1)
    preview = predict_image_region(net, stack, ((30, 61), (5, 40)), config, plane=2)
    assert preview.axes == "YX" and preview.shape == (62, 70)
    np.testing.assert_array_equal(preview.data, full.data[2, 60:122, 10:80])
    # the preview sits where the same pixels of the full result are
    assert preview.pixel_size == pytest.approx(full.pixel_size[-2:])
    assert preview.translate == pytest.approx(
        (full.translate[1] + 60 * 0.25, full.translate[2] + 10 * 0.25)
    )
    with pytest.raises(InputError, match=r"plane must be in \[0, 3\) for a ZYX image"):
        predict_image_region(net, stack, ((0, 8), (0, 8)), PredictConfig(device="cpu"))


def test_region_preview_of_a_lazy_2d_image(rng):
    net = ConvSR(scale=2)
    image = (rng.random((100, 100)) * 255).astype(np.uint8)
    lazy = Image(da.from_array(image, chunks=32))
    region = (slice(10, 30), slice(50, 90))
    preview = predict_image_region(net, lazy, region, PredictConfig(device="cpu"))
    full = predict(net, image).image.data
    np.testing.assert_array_equal(preview.data, full[20:60, 100:180])


# --------------------------------------------------------------------------- model files


def test_receptive_field_is_measured_once_per_model_file(rng, tmp_path, monkeypatch):
    from decrappify.config.model import GeneratorConfig, ModelInfo
    from decrappify.models import build_generator, save_model
    from decrappify.predict import receptive

    cfg = GeneratorConfig(
        encoder="resnet18", grid="hr", scale=2, self_attention=False, nf_factor=0.25, blur=False
    )
    path = save_model(
        tmp_path / "m.safetensors", build_generator(cfg, seed=0), ModelInfo(generator=cfg)
    )
    calls = []
    monkeypatch.setattr(
        "decrappify.predict.receptive.estimate_receptive_field",
        lambda net, **kw: calls.append(kw) or 40,
    )
    image = np.ones((128, 128), np.uint8)  # larger than the tiles (they are cut to the image)
    first = predict(path, image, tile=64)
    assert first.stats["overlap"] == 32 and first.stats["radius"] == 40  # capped: tile // 2
    sidecar = tmp_path / "m.safetensors.receptive_field.json"
    assert sidecar.is_file()
    receptive._MEMORY.clear()  # a new process: the sidecar answers
    assert predict(path, image, tile=64).stats["radius"] == 40
    assert len(calls) == 1 and calls[0]["size"] == calls[0]["max_size"] == 48
    receptive._MEMORY.clear()
    predict(path, image, tile=128)  # a bigger tile needs a bigger probe (40 ≥ 4 × 16 ...)
    assert len(calls) == 1  # ... unless the cached radius already exceeds the new margin
    assert not (Path(str(tmp_path)) / "cache").exists()  # the sidecar was writable


@pytest.mark.slow
def test_compiled_network_gives_the_same_result(rng):
    net = ConvSR(scale=2)
    image = (rng.random((64, 64)) * 255).astype(np.uint8)
    eager = predict(net, image, dtype="float32").image.data
    compiled = predict(net, image, dtype="float32", compile=True).image.data
    np.testing.assert_allclose(compiled, eager, atol=1e-3)
    assert not hasattr(net, "_orig_mod")  # the caller's network is not replaced


def test_resume_computes_only_missing_blocks_and_checks_the_settings(rng, tmp_path):
    net = ConvSR(scale=2)
    image = (rng.random((128, 128)) * 255).astype(np.uint8)
    path = tmp_path / "in.tif"
    tifffile.imwrite(path, image)
    out = tmp_path / "sr.zarr"
    reference = predict(net, path, tmp_path / "ref.zarr")
    assert reference.stats["blocks"] == 4
    events = iter_predict_image(net, path, out, PredictConfig(resume=True, **SMALL))
    written = 0
    for event in events:
        written += event.info.get("level") == 0
        if written == 2:
            break
    events.close()  # interrupted: the partial store is kept for a rerun
    assert (tmp_path / ".sr.zarr.partial").is_dir() and not out.exists()
    again = predict(net, path, out, resume=True)
    assert (again.stats["blocks_resumed"], again.stats["blocks_computed"]) == (2, 2)
    np.testing.assert_array_equal(np.asarray(again.image.data), reference.image.data)
    # another setting that changes the pixels gives another key: the partial restarts
    events = iter_predict_image(net, path, tmp_path / "b.zarr", PredictConfig(resume=True, **SMALL))
    next(e for e in events if e.info.get("level") == 0)
    events.close()
    other = predict(net, path, tmp_path / "b.zarr", resume=True, overlap=10)
    assert (other.stats["blocks_resumed"], other.stats["blocks_computed"]) == (0, 4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_prediction_matches_the_cpu(rng):
    net = ConvSR(scale=2)
    image = (rng.random((200, 150)) * 4000).astype(np.uint16)
    cpu = predict(net, image, dtype="float32").image.data
    gpu = predict(net, image, dtype="float32", device="cuda").image.data  # fp16 autocast
    lo, hi = percentile_range(image)
    assert np.abs(gpu - cpu).max() / (hi - lo) < 1e-2
    exact = predict(net, image, dtype="float32", device="cuda", amp=False).image.data
    assert np.abs(exact - cpu).max() / (hi - lo) < 1e-4


@pytest.mark.parametrize("training", [False, True])
def test_the_callers_network_keeps_its_mode_and_timings_add_up(rng, training):
    net = ConvSR(scale=2).train(training)
    result = predict(net, (rng.random((150, 150)) * 255).astype(np.uint8))
    assert net.training is training
    assert all(m.training is training for m in net.modules())
    stats = result.stats
    assert 0 < stats["forward_seconds"] <= stats["compute_seconds"] <= stats["seconds"]


@pytest.mark.parametrize(
    "changes",
    [
        {"arch": "resnet"},
        {"arch": "resnet", "encoder": "resnet34", "self_attention": True},
        {"arch": "naf"},
    ],
)
def test_networks_loaded_for_prediction_run_cheaper_with_the_same_outputs(tmp_path, changes):
    from decrappify.config.model import ModelInfo
    from decrappify.config.train import TrainConfig
    from decrappify.models import build_generator, load_model, save_model
    from decrappify.predict.network import for_inference

    base = TrainConfig().generator
    cfg = type(base).model_validate({**base.model_dump(), **changes})
    resnet = changes["arch"] == "resnet"  # the ResNet-encoder U-Net has BatchNorm to fold
    net = build_generator(cfg, seed=3)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # trained-like statistics and a decoder that matters
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.uniform_(-0.1, 0.1, generator=generator)
            elif isinstance(module, nn.Conv2d) and not list(module.children()):
                module.weight.add_(0.01 * torch.randn(module.weight.shape, generator=generator))
        for name, param in net.named_parameters():  # the naf blocks' scales start at zero
            if name.endswith(("beta", "gamma")):
                param.uniform_(-0.5, 0.5, generator=generator)
    path = save_model(tmp_path / "m.safetensors", net, ModelInfo(generator=cfg))
    reference = load_model(path).net.eval()
    fast = for_inference(load_model(path).net)
    if resnet:
        assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.unet.encoder.modules())
    assert not any(hasattr(m, "parametrizations") for m in fast.modules())
    x = torch.rand(2, 1, 48, 64, generator=generator)
    with torch.inference_mode():
        expected, got = reference(x), fast(x)
    assert float((expected - got).abs().max()) < 1e-5
    assert float((expected - F.interpolate(x, scale_factor=4, mode="bilinear")).abs().max()) > 1e-2
    # a path given to prediction is loaded this way; a caller's own network is left alone
    handle = model_handle(path)
    if resnet:
        assert not any(isinstance(m, nn.BatchNorm2d) for m in handle.net.unet.encoder.modules())
    own = load_model(path)
    assert model_handle(own).net is own.net
    if resnet:
        assert any(isinstance(m, nn.BatchNorm2d) for m in own.net.modules())
