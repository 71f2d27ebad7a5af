"""Tests of the tiled forward pass (predict.tile_predictor), OOM fallback and receptive field."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _tiny import whole_image_prediction
from decrappify.errors import InputError, ModelFileError
from decrappify.predict.block_geometry import input_region_for_output, output_blocks
from decrappify.predict.oom import (
    TileSettings,
    is_out_of_memory,
    next_settings_after_oom,
    run_with_oom_retry,
)
from decrappify.predict.receptive import estimate_receptive_field
from decrappify.predict.settings import PredictSettings
from decrappify.predict.tile_geometry import default_overlap, plan_tiles
from decrappify.predict.tile_predictor import predict_plane, predict_region


def S(batch_size: int = 8, **settings) -> PredictSettings:
    """The settings of a tiled prediction (``batch_size`` is ``batch``)."""
    return PredictSettings(batch=batch_size, **settings)


class ConvSR(nn.Module):
    """Bilinear upsampling and a stack of 3×3 convolutions: a known, finite receptive field.

    Weights are positive and normalised (each layer a weighted local average) so that the
    whole field carries signal; with ``bias < 0`` a zeros input leaves every ReLU dead.
    """

    multiple = 32

    def __init__(self, scale=2, n_frames=1, depth=3, width=4, seed=0, bias=0.01):
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
                conv.bias.fill_(bias)
            layers.append(conv)
            if i < depth - 1:
                layers.append(nn.ReLU())
            channels = out
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        h, w = x.shape[-2:]
        if (h * self.scale) % self.multiple or (w * self.scale) % self.multiple:
            raise RuntimeError(f"size {h}×{w} × {self.scale} is not a multiple of 32")
        up = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        centre = self.n_frames // 2
        return up[:, centre : centre + 1] - self.body(up)


class OOMNet(nn.Module):
    """Wraps a network and raises CUDA's out-of-memory error above a pixel budget."""

    def __init__(self, inner, budget, error=None):
        super().__init__()
        self.inner = inner
        self.scale, self.n_frames, self.multiple = inner.scale, inner.n_frames, inner.multiple
        self.budget = budget
        self.error = error
        self.calls: list[tuple[tuple[int, ...], bool]] = []

    def forward(self, x):
        fits = x.shape[0] * x.shape[-2] * x.shape[-1] <= self.budget
        self.calls.append((tuple(x.shape), fits))
        if not fits:
            raise self.error or torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total capacity)"
            )
        return self.inner(x)


class Upsampler(nn.Module):
    """Plain bilinear upsampling by ``factor``, whatever ``scale`` it claims."""

    multiple = 32
    n_frames = 1

    def __init__(self, scale, factor):
        super().__init__()
        self.scale, self.factor = scale, factor

    def forward(self, x):
        return F.interpolate(x, scale_factor=self.factor, mode="bilinear", align_corners=False)


def analytic_radius(scale: int, depth: int) -> int:
    """LR radius of ConvSR: HR pixel q sees upsampled pixels q ± depth, each of which
    interpolates LR pixels floor(x) and floor(x) + 1 at x = (u + ½)/scale − ½ (only floor(x)
    when x is an integer)."""
    p, radius = 1000, 0
    for q in range(p * scale, (p + 1) * scale):
        for u in range(q - depth, q + depth + 1):
            x = Fraction(2 * u + 1, 2 * scale) - Fraction(1, 2)
            k = math.floor(x)
            radius = max(radius, abs(k - p), abs(k + (x != k) - p))
    return radius


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These tiny convolutions gain nothing from threads, and on a busy 2-core machine
    OpenMP spinning makes them ~50× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- receptive field -----------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
@pytest.mark.parametrize("depth", [1, 3, 6])
def test_receptive_field_matches_the_analytic_radius(scale, depth):
    net = ConvSR(scale=scale, depth=depth)
    expected = analytic_radius(scale, depth)
    assert estimate_receptive_field(net, tol=0.0) == expected
    assert estimate_receptive_field(net) <= expected


def test_receptive_field_values():
    assert [analytic_radius(2, d) for d in (1, 3, 5, 9)] == [1, 2, 3, 5]
    assert estimate_receptive_field(ConvSR(scale=2, depth=3)) == 2  # default tol
    assert estimate_receptive_field(ConvSR(scale=4, depth=3, n_frames=3), tol=0.0) == 2


def test_receptive_field_sees_past_dead_relus_on_a_zeros_input():
    net = ConvSR(scale=2, depth=5, bias=-0.01)  # zeros input: every ReLU is off
    assert estimate_receptive_field(net, tol=0.0, n_random=0) == 1  # only the skip path
    assert estimate_receptive_field(net, tol=0.0) == analytic_radius(2, 5) == 3


def test_receptive_field_probe_grows_and_restores_the_net():
    net = ConvSR(scale=1, depth=20)  # radius 20 needs a probe wider than 4 × 20
    net.train()
    assert estimate_receptive_field(net, tol=0.0, size=32, max_size=256, n_random=0) == 20
    assert net.training
    assert all(p.grad is None for p in net.parameters())
    # a capped probe (64 pixels) returns what it can see: half its side
    deep = ConvSR(scale=1, depth=40)
    assert estimate_receptive_field(deep, tol=0.0, size=32, max_size=64, n_random=0) == 32


# --- tiled prediction equals whole-image prediction ---------------------------------------------


@pytest.mark.parametrize(
    ("scale", "shape", "tile"),
    [
        (2, (64, 64), 32),  # divisible
        (2, (75, 53), 32),  # not divisible by tile or stride
        (4, (45, 61), 24),
        (3, (40, 70), 32),
        (2, (9, 13), 64),  # smaller than one tile
        (2, (1, 40), 32),  # a single row
    ],
)
def test_tiled_prediction_equals_whole_image_prediction(rng, scale, shape, tile):
    net = ConvSR(scale=scale, depth=3)
    overlap = default_overlap(analytic_radius(scale, 3), scale)
    lr = rng.random(shape, dtype=np.float32)
    out = predict_plane(net, lr, S(tile=tile, overlap=overlap, batch_size=3, device="cpu"))
    assert out.dtype == np.float32 and out.shape == (shape[0] * scale, shape[1] * scale)
    assert len(plan_tiles(shape, tile, overlap, scale=scale)) > 1 or max(shape) < tile
    np.testing.assert_allclose(out, whole_image_prediction(net, lr), rtol=0, atol=1e-4)


def test_tiled_prediction_with_a_wide_field_and_rectangular_tiles(rng):
    net = ConvSR(scale=2, depth=9)  # radius 5
    overlap = default_overlap(5, 2)
    lr = rng.random((70, 90), dtype=np.float32)
    out = predict_plane(net, lr, S(tile=(48, 64), overlap=overlap, batch_size=4, device="cpu"))
    np.testing.assert_allclose(out, whole_image_prediction(net, lr), rtol=0, atol=1e-4)


def test_tiled_prediction_of_a_2_5d_input(rng):
    net = ConvSR(scale=2, depth=3, n_frames=3)
    lr = rng.random((3, 50, 37), dtype=np.float32)
    out = predict_plane(
        net, lr, S(tile=32, overlap=default_overlap(2, 2), batch_size=2, device="cpu")
    )
    assert out.shape == (100, 74)
    np.testing.assert_allclose(out, whole_image_prediction(net, lr), rtol=0, atol=1e-4)


def test_float64_and_lazy_inputs_give_the_same_result(rng):
    import dask.array as da

    net = ConvSR(scale=2, depth=3)
    lr = rng.random((40, 40))
    kwargs = {"tile": 32, "overlap": 14, "batch_size": 2, "device": "cpu"}
    expected = predict_plane(net, lr.astype(np.float32), S(**kwargs))
    np.testing.assert_allclose(predict_plane(net, lr, S(**kwargs)), expected, atol=1e-6)
    lazy = da.from_array(lr.astype(np.float32), chunks=16)
    np.testing.assert_array_equal(predict_plane(net, lazy, S(**kwargs)), expected)


def test_channels_last_and_amp_on_cpu(rng):
    net = ConvSR(scale=2, depth=3)
    lr = rng.random((40, 50), dtype=np.float32)
    kwargs = {"tile": 32, "overlap": 14, "batch_size": 4, "device": "cpu"}
    expected = predict_plane(net, lr, S(**kwargs))
    np.testing.assert_allclose(
        predict_plane(net, lr, S(channels_last=True, **kwargs)), expected, atol=1e-5
    )
    amp = predict_plane(net, lr, S(amp=True, **kwargs))  # bfloat16 autocast on CPU
    assert amp.dtype == np.float32
    assert np.abs(amp - expected).max() < 3e-2
    assert next(net.parameters()).dtype == torch.float32


def test_the_net_is_left_in_its_training_mode(rng):
    net = ConvSR(scale=2, depth=1)
    net.train()
    predict_plane(
        net,
        rng.random((16, 16), dtype=np.float32),
        S(tile=16, overlap=0, batch_size=1, device="cpu"),
    )
    assert net.training


# --- blocks with a halo equal the whole-plane crop ---------------------------------------------


def test_region_from_block_and_halo_equals_the_whole_plane_crop(rng):
    scale, radius = 2, analytic_radius(2, 5)
    net = ConvSR(scale=scale, depth=5)
    overlap = default_overlap(radius, scale)
    lr = rng.random((90, 70), dtype=np.float32)
    settings = {"tile": 32, "overlap": overlap, "batch_size": 4, "device": "cpu"}
    whole = predict_plane(net, lr, S(**settings))
    blocks = output_blocks(lr.shape, scale, (64, 50))
    assert len(blocks) == 9  # corners, edges and an interior block
    for (y0, y1), (x0, x1) in blocks:
        (iy, ix), region = input_region_for_output(
            ((y0, y1), (x0, x1)), scale=scale, halo=overlap, lr_shape=lr.shape
        )
        block = lr[iy[0] : iy[1], ix[0] : ix[1]]
        got = predict_region(net, block, region, S(**settings))
        assert got.shape == (y1 - y0, x1 - x0)
        np.testing.assert_allclose(got, whole[y0:y1, x0:x1], rtol=0, atol=1e-4)


def test_region_with_a_halo_just_covering_the_field_is_exact(rng):
    # halo = radius (not overlap): the block's own tiling still has enough margin.
    scale, radius = 2, analytic_radius(2, 5)
    net = ConvSR(scale=scale, depth=5)
    lr = rng.random((60, 60), dtype=np.float32)
    overlap = default_overlap(radius, scale)
    whole = whole_image_prediction(net, lr)
    (iy, ix), region = input_region_for_output(
        ((40, 80), (40, 80)), scale=scale, halo=radius, lr_shape=lr.shape
    )
    got = predict_region(
        net,
        lr[iy[0] : iy[1], ix[0] : ix[1]],
        region,
        S(tile=32, overlap=overlap, batch_size=2, device="cpu"),
    )
    np.testing.assert_allclose(got, whole[40:80, 40:80], rtol=0, atol=1e-4)


# --- seams are invisible when the overlap is too small --------------------------------------------


def seam_statistics(net, lr, overlap, blend):
    """Mean |tiled − whole| next to tile boundaries and elsewhere in the overlaps."""
    s = net.scale
    out = predict_plane(
        net, lr, S(tile=48, overlap=overlap, batch_size=8, device="cpu", blend=blend)
    )
    diff = np.abs(out - whole_image_prediction(net, lr))
    tiles = plan_tiles(lr.shape, 48, overlap, scale=s, blend=blend)
    columns = sorted({(t.window[1], t.core[1]) for t in tiles})
    width = lr.shape[1]
    boundary = np.zeros(width * s, dtype=bool)  # ±1 LR pixel around window and core edges
    overlaps = np.zeros(width * s, dtype=bool)  # where two windows overlap
    for window, core in columns:
        for edge in (*window, *core):
            if 0 < edge < width:
                boundary[(edge - 1) * s : (edge + 1) * s] = True
    for (left, _), (right, _) in zip(columns[:-1], columns[1:], strict=True):
        overlaps[right[0] * s : left[1] * s] = True
    return (
        diff.max(),
        diff[:, boundary & overlaps].mean(),
        diff[:, overlaps & ~boundary].mean(),
    )


def test_blending_hides_seams_when_the_overlap_is_below_the_receptive_field(rng):
    net = ConvSR(scale=2, depth=9)  # radius 5 LR pixels
    lr = rng.random((32, 160), dtype=np.float32)  # one row of tiles: seams are columns
    # overlap 8 → margin 2 < radius 5: tiles differ a little from the whole image
    worst, at_boundaries, elsewhere = seam_statistics(net, lr, overlap=8, blend=0.5)
    assert 1e-5 < worst < 5e-3
    assert at_boundaries <= elsewhere  # errors are not concentrated along tile boundaries
    # A hard cut at the same overlap puts all of its error on the cut: a visible seam.
    worst_cut, at_cut, elsewhere_cut = seam_statistics(net, lr, overlap=8, blend=0.0)
    assert at_cut > 10 * elsewhere_cut
    # With the default overlap for that field, there is no error at all.
    exact, _, _ = seam_statistics(net, lr, overlap=default_overlap(5, 2), blend=0.5)
    assert exact < 1e-5


# --- out-of-memory fallback -----------------------------------------------------------------------


def test_next_settings_halves_the_batch_then_the_tile():
    steps = [TileSettings(tile=(256, 192), batch_size=6)]
    while (following := next_settings_after_oom(steps[-1], quantum=16, min_tile=64)) is not None:
        steps.append(following)
    assert steps == [
        TileSettings((256, 192), 6),
        TileSettings((256, 192), 3),
        TileSettings((256, 192), 1),
        TileSettings((128, 96), 1),
        TileSettings((64, 64), 1),
    ]
    # a tile already below the minimum (a small image) is never enlarged
    assert next_settings_after_oom(TileSettings((32, 32), 1), quantum=16, min_tile=64) is None


def test_is_out_of_memory():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory."))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: 8 GB"))
    assert not is_out_of_memory(RuntimeError("Expected all tensors to be on the same device"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_run_with_oom_retry_with_a_fake_forward():
    attempts, retries, emptied = [], [], []

    def fake_run(settings):
        attempts.append(settings)
        if settings.batch_size * settings.tile[0] * settings.tile[1] > 64 * 64:
            raise torch.OutOfMemoryError("CUDA out of memory.")
        return "done"

    result = run_with_oom_retry(
        fake_run,
        TileSettings((128, 128), 4),
        quantum=8,
        min_tile=16,
        empty_cache=lambda: emptied.append(True),
        on_retry=lambda failed, following: retries.append((failed, following)),
    )
    assert result == "done"
    assert [(a.tile[0], a.batch_size) for a in attempts] == [(128, 4), (128, 2), (128, 1), (64, 1)]
    assert len(retries) == len(emptied) == 3


def test_run_with_oom_retry_raises_a_clear_error_when_nothing_fits():
    def never_fits(settings):
        raise torch.OutOfMemoryError("CUDA out of memory.")

    with pytest.raises(InputError) as info:
        run_with_oom_retry(
            never_fits, TileSettings((128, 128), 2), quantum=8, min_tile=32, where="cuda:0"
        )
    assert str(info.value) == (
        "out of memory on cuda:0 even with tile 32 and batch_size 1 (started from tile 128, "
        "batch_size 2): use a smaller overlap, amp=True, a float16 dtype or device 'cpu'"
    )
    assert isinstance(info.value.__cause__, torch.OutOfMemoryError)


def test_run_with_oom_retry_lets_other_errors_through():
    def broken(settings):
        raise RuntimeError("Expected all tensors to be on the same device")

    with pytest.raises(RuntimeError, match="same device"):
        run_with_oom_retry(broken, TileSettings((64, 64), 4), quantum=8, min_tile=8)


def test_prediction_survives_oom_by_shrinking_batch_then_tile(rng):
    inner = ConvSR(scale=2, depth=3)
    lr = rng.random((100, 100), dtype=np.float32)
    settings = {"overlap": 14, "device": "cpu"}
    expected = predict_plane(inner, lr, S(tile=32, batch_size=1, **settings))
    net = OOMNet(inner, budget=2 * 32 * 32)  # two 32-pixel tiles at most
    out = predict_plane(net, lr, S(tile=64, batch_size=8, **settings))
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
    failed = [shape for shape, fits in net.calls if not fits]
    # batch_size 8 starts as 4, the number of 64-pixel tiles
    assert failed == [(4, 1, 64, 64), (2, 1, 64, 64), (1, 1, 64, 64)]
    done = [shape for shape, fits in net.calls if fits]
    assert {shape[-2:] for shape in done} == {(32, 32)}
    assert sum(shape[0] for shape in done) == len(plan_tiles(lr.shape, 32, 14, scale=2))


def test_batch_shrinking_resumes_without_redoing_tiles(rng):
    inner = ConvSR(scale=2, depth=3)
    lr = rng.random((100, 100), dtype=np.float32)
    expected = predict_plane(inner, lr, S(tile=32, overlap=14, batch_size=1, device="cpu"))
    net = OOMNet(inner, budget=3 * 32 * 32)
    progress = []
    out = predict_plane(
        net,
        lr,
        S(tile=32, overlap=14, batch_size=4, device="cpu"),
        progress=lambda done, total: progress.append((done, total)),
    )
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
    total = len(plan_tiles(lr.shape, 32, 14, scale=2))
    assert [shape[0] for shape, fits in net.calls] == [4] + [2] * (total // 2)
    assert progress == [(done, total) for done in range(2, total + 1, 2)]


def test_prediction_raises_when_even_the_smallest_tile_does_not_fit(rng):
    net = OOMNet(ConvSR(scale=2, depth=3), budget=100)
    lr = rng.random((100, 100), dtype=np.float32)
    with pytest.raises(InputError) as info:
        predict_plane(net, lr, S(tile=64, overlap=14, batch_size=2, device="cpu"))
    assert str(info.value) == (
        "out of memory on cpu even with tile 32 and batch_size 1 (started from tile 64, "
        "batch_size 2): use a smaller overlap or free memory"
    )


def test_prediction_does_not_retry_other_errors(rng):
    net = OOMNet(ConvSR(scale=2, depth=1), budget=0, error=RuntimeError("cuDNN error: mismatch"))
    with pytest.raises(RuntimeError, match="cuDNN error"):
        predict_plane(
            net,
            rng.random((40, 40), dtype=np.float32),
            S(tile=32, overlap=8, batch_size=2, device="cpu"),
        )
    assert len(net.calls) == 1


# --- input validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_frames", "lr", "message"),
    [
        (
            1,
            np.zeros((2, 3, 16, 16), np.float32),
            "lr: expected a plane of shape (H, W), got shape (2, 3, 16, 16)",
        ),
        (
            3,
            np.zeros((16, 16), np.float32),
            "lr: expected a plane of shape (3, H, W), got shape (16, 16)",
        ),
        (
            3,
            np.zeros((5, 16, 16), np.float32),
            "lr: expected a plane of shape (3, H, W), got shape (5, 16, 16)",
        ),
        (
            1,
            np.zeros((0, 16), np.float32),
            "lr: expected a plane of shape (H, W), got shape (0, 16)",
        ),
        (
            1,
            np.zeros((16, 16), np.uint16),
            "lr: expected normalised float intensities (float32), got dtype uint16 "
            "(normalise the image first)",
        ),
    ],
)
def test_bad_inputs(n_frames, lr, message):
    net = ConvSR(scale=2, depth=1, n_frames=n_frames)
    with pytest.raises(InputError) as info:
        predict_plane(net, lr, S(tile=16, overlap=0, batch_size=1, device="cpu"))
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tile": 20}, "tile × scale must be a multiple of 32 (tile 20 × scale 2 = 40)"),
        ({"overlap": 20}, "overlap must be at most half the tile (tile 32, overlap 20)"),
        ({"batch_size": 0}, "batch must be a positive integer (got 0)"),
        ({"dtype": "int8"}, "dtype must be one of float32, float16, bfloat16 (got 'int8')"),
        (
            {"device": "toaster"},
            "device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps' (got 'toaster')",
        ),
    ],
)
def test_bad_settings(rng, kwargs, message):
    settings = {"tile": 32, "overlap": 8, "batch_size": 2, "device": "cpu", **kwargs}
    dtype = settings.pop("dtype", "float32")
    with pytest.raises(InputError) as info:
        predict_plane(
            ConvSR(scale=2, depth=1),
            rng.random((40, 40), dtype=np.float32),
            S(**settings),
            dtype=dtype,
        )
    assert str(info.value) == message


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_unavailable_cuda_device(rng):
    with pytest.raises(
        InputError, match=r"device 'cuda' is not available \(no CUDA device found\)"
    ):
        predict_plane(
            ConvSR(),
            rng.random((16, 16), dtype=np.float32),
            S(tile=16, overlap=0, batch_size=1, device="cuda"),
        )


def test_net_without_a_scale_and_a_wrong_output_shape(rng):
    lr = rng.random((16, 16), dtype=np.float32)
    with pytest.raises(InputError, match="net: expected an integer attribute scale >= 1, got None"):
        predict_plane(nn.Identity(), lr, S(tile=32, overlap=0, batch_size=1, device="cpu"))
    liar = Upsampler(scale=4, factor=2)  # claims ×4 but upsamples ×2
    with pytest.raises(ModelFileError) as info:
        predict_plane(liar, lr, S(tile=16, overlap=0, batch_size=1, device="cpu"))
    assert str(info.value) == (
        "network output: expected shape (1, 1, 64, 64) for input (1, 1, 16, 16) (scale 4), "
        "got (1, 1, 32, 32)"
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_prediction_matches_cpu(rng):
    net = ConvSR(scale=4, depth=3)
    lr = rng.random((70, 90), dtype=np.float32)
    kwargs = {"tile": 32, "overlap": 8, "batch_size": 4}
    expected = predict_plane(net, lr, S(device="cpu", **kwargs))
    np.testing.assert_allclose(
        predict_plane(net, lr, S(device="cuda", **kwargs)), expected, atol=1e-4
    )
    amp = predict_plane(net, lr, S(device="cuda", amp=True, channels_last=True, **kwargs))
    assert np.abs(amp - expected).max() < 1e-2


def test_the_naf_unet_tiles_as_it_predicts_the_whole_image(rng):
    """Windows off the U-Net's grid (2**levels LR pixels) differed from the whole image by
    up to 8.7 % of the range (43.9 dB): with an overlap on the grid they start on it."""
    from decrappify.config.model import GeneratorConfig
    from decrappify.models import build_generator
    from decrappify.predict.tile_predictor import network_grid

    config = GeneratorConfig(arch="naf", residual=True, scale=2, naf={"width": 8, "blocks": [1, 1]})
    net = build_generator(config).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # every layer active (the zero-initialised ones too)
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    grid = network_grid(net)
    radius = estimate_receptive_field(net, tol=0.0)
    overlap = -(-default_overlap(radius, 2) // grid) * grid
    tile = 3 * overlap
    lr = rng.random((5 * overlap + 3, 4 * overlap + 5), dtype=np.float32)
    plan = plan_tiles(lr.shape, tile, overlap, scale=2, multiple=net.multiple, grid=grid)
    assert grid == 4 and len(plan) > 4
    assert all(t.window[0][0] % grid == 0 and t.window[1][0] % grid == 0 for t in plan)
    off_grid = plan_tiles(lr.shape, tile, overlap, scale=2, multiple=net.multiple)
    assert any(t.window[0][0] % grid or t.window[1][0] % grid for t in off_grid)  # as before
    out = predict_plane(net, lr, S(tile=tile, overlap=overlap, batch_size=4, device="cpu"))
    np.testing.assert_allclose(out, whole_image_prediction(net, lr, pad=2 * overlap), atol=1e-4)
