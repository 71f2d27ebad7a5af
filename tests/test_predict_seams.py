"""Seams: tiled prediction with a real decrappify generator against whole-image prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from decrappify.config.model import GeneratorConfig
from decrappify.config.predict import PredictConfig
from decrappify.events import run_to_end
from decrappify.models import build_generator
from decrappify.normalize import normalize, percentile_range
from decrappify.predict.engine import iter_predict_image
from decrappify.predict.tile_geometry import plan_tiles, tile_quantum
from decrappify.predict.tile_predictor import network_grid
from decrappify.sample import synthetic_image


@pytest.fixture(scope="module")
def generator():
    """A real (small, random-init) ResNet-18 U-Net ×2, upsample-first ("hr")."""
    cfg = GeneratorConfig(
        encoder="resnet18",
        grid="hr",
        scale=2,
        self_attention=False,
        nf_factor=0.25,
        blocks_per_stage=1,
        blur=False,
    )
    return build_generator(cfg, seed=0).eval()


@pytest.fixture(scope="module")
def em():
    hr = np.asarray(synthetic_image("em", (192, 192), seed=3).data)
    return hr[::2, ::2]  # a 96² LR EM image


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def whole_prediction(net, x, pad=32):
    quantum = tile_quantum(net.scale, net.multiple)
    h, w = x.shape
    extra_h, extra_w = (-(h + 2 * pad)) % quantum, (-(w + 2 * pad)) % quantum
    padded = np.pad(x, ((pad, pad + extra_h), (pad, pad + extra_w)), mode="reflect")
    with torch.inference_mode():
        out = net(torch.from_numpy(padded[None, None].astype(np.float32)))[0, 0].numpy()
    s = net.scale
    return out[pad * s : (pad + h) * s, pad * s : (pad + w) * s]


def core_edge_jump(diff, plan, scale):
    """Mean |step| of the difference map across interior core edges, relative to elsewhere.

    A seam is a discontinuity where one tile's contribution stops and the next one's
    starts (a core edge). The reference is the steps between the same sub-pixel phase
    elsewhere (steps between HR pixels of different LR pixels), since an upsampling
    network's output has a ``scale``-periodic texture.
    """
    across, other = [], []
    for axis in (0, 1):
        steps = np.moveaxis(np.abs(np.diff(diff, axis=axis)), axis, 0)  # steps along rows
        n = steps.shape[0]
        phase = np.arange(n) % scale == scale - 1
        edges = np.zeros(n, dtype=bool)
        for t in plan:
            for edge in t.core[axis]:
                if 0 < edge * scale < diff.shape[axis]:
                    edges[edge * scale - 1] = True
        across.append(steps[edges].ravel())
        other.append(steps[phase & ~edges].ravel())
    return np.concatenate(across).mean() / np.concatenate(other).mean()


def near_edges(shape, plan, scale, width=2):
    """HR pixels within ``width`` of a window or core edge."""
    near = np.zeros((shape[0] * scale, shape[1] * scale), dtype=bool)
    for t in plan:
        for axis in (0, 1):
            for edge in (*t.window[axis], *t.core[axis]):
                if 0 < edge < shape[axis]:
                    index = [slice(None), slice(None)]
                    index[axis] = slice(max(0, edge * scale - width), edge * scale + width)
                    near[tuple(index)] = True
    return near


def seam_figures(net, lr, *, tile, overlap="auto", blend=0.5):
    lo, hi = percentile_range(lr)
    whole = whole_prediction(net, normalize(lr, lo, hi))
    result = run_to_end(
        iter_predict_image(
            net,
            lr,
            None,
            PredictConfig(
                tile=tile, overlap=overlap, blend=blend, device="cpu", threads=1, dtype="float32"
            ),
        )
    )
    diff = (result.image.data - lo) / (hi - lo) - whole
    psnr = 10 * np.log10(1.0 / np.mean(diff**2))
    # the plan the prediction used: on the network's grid, the border context included
    plan = plan_tiles(
        lr.shape, tile, result.stats["overlap"], scale=net.scale, multiple=net.multiple,
        blend=blend, grid=network_grid(net), context=result.stats["context"],
    )  # fmt: skip
    jump = core_edge_jump(diff, plan, net.scale)
    near = near_edges(lr.shape, plan, net.scale)
    level = np.abs(diff)[near].mean() / np.abs(diff)[~near].mean()
    return psnr, jump, level, len(plan), result.stats["overlap"]


def test_small_tiles_match_whole_image_prediction_without_seams(generator, em):
    psnr, jump, level, n_tiles, overlap = seam_figures(generator, em, tile=64)
    assert overlap == 32  # a U-Net: its field exceeds the tile, the overlap is capped
    assert n_tiles == 16  # 9 without the border context
    assert psnr >= 50.0
    assert jump < 1.0  # the difference does not jump where tiles meet ...
    assert level < 1.0  # ... and is no larger next to tile edges than elsewhere


def test_low_resolution_layout_tiles_match_whole_image_prediction():
    """The "lr" layout's field spans more input pixels: tiles of 128 input pixels match."""
    cfg = GeneratorConfig(
        encoder="resnet18", scale=2, self_attention=False, nf_factor=0.25, encoder_depth=3
    )
    net = build_generator(cfg, seed=0).eval()
    lr = np.asarray(synthetic_image("em", (384, 384), seed=3).data)[::2, ::2]
    psnr, jump, level, n_tiles, overlap = seam_figures(net, lr, tile=128)
    assert (n_tiles, overlap) == (9, 64)
    assert psnr >= 50.0
    assert jump < 1.2 and level < 1.2  # a hard cut gives several times more


@pytest.mark.slow
def test_a_hard_cut_at_the_same_overlap_shows_seams(generator, em):
    # the seam detector works: cutting tiles hard (no cross-fade) makes the difference
    # jump across the cuts
    _, jump, _, _, _ = seam_figures(generator, em, tile=64, overlap=32, blend=0.0)
    _, blended, _, _, _ = seam_figures(generator, em, tile=64, overlap=32, blend=0.5)
    assert jump > 2.5 * blended and jump > 2.0
