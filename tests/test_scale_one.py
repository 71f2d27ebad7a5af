"""Scale 1 end to end: crappify on the same grid, NoGAN training, tiled prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from decrappify.cli import app
from decrappify.config.crappify import get_preset
from decrappify.config.train import TrainConfig
from decrappify.crappify import crappify_image
from decrappify.events import run_to_end
from decrappify.io import Image, read_image, write_image
from decrappify.models import load_model
from decrappify.normalize import denormalize, normalize, percentile_range
from decrappify.sample import synthetic_image
from decrappify.train import iter_train

#: A whole NoGAN run in seconds (as tests/test_train_nogan.py), on the same grid.
TINY = {
    "crappify": get_preset("fluorescence", scale=1).model_dump(mode="json"),
    "data": {"patch_size": 64, "samples_per_epoch": 32, "validation": {"count": 1, "patches": 4}},
    "batch_size": 2,
    "generator": {"encoder": "resnet18", "nf_factor": 0.25, "self_attention": False, "scale": 1},
    "critic": {"nf": 8, "n_blocks": 2, "self_attention": False},
    "pretrain_generator": {"steps": 3, "checkpoint_every": 3},
    "save_outputs": {"patches": 4},
    "pretrain_critic": {"max_steps": 2, "smoothing": 1},
    "gan": {"max_steps": 2, "checkpoint_every": 2, "max_critic_steps": 1},
    "preview_every": 0,
    "device": "cpu",
    "num_threads": 1,
}


def test_crappify_image_at_scale_one_keeps_grid_and_metadata():
    hr = synthetic_image("fluorescence", (2, 70, 90), seed=1)
    lr = crappify_image(hr, get_preset("em", scale=1), seed=3)
    assert lr.shape == hr.shape and lr.dtype == hr.dtype
    assert lr.pixel_size == pytest.approx(hr.pixel_size)
    assert (lr.translate or (0.0,) * 3) == pytest.approx(hr.translate or (0.0,) * 3)
    assert not np.array_equal(np.asarray(lr.data), np.asarray(hr.data))


def test_train_then_predict_on_the_same_grid(tmp_path):
    images = [np.asarray(synthetic_image("fluorescence", (96, 96), seed=i).data) for i in range(3)]
    config = TrainConfig.validate_dict(TINY)
    result = run_to_end(iter_train(config, images, tmp_path / "run"))
    assert result.steps["gan"] >= 1 and {"psnr", "ssim"} <= set(result.baseline)
    # the baseline is the input itself: so say the log, the result and the curves' legend
    assert result.baseline_name == "input"
    notes = [h["note"] for h in result.history if "note" in h]
    assert any(n.startswith("input baseline on ") for n in notes)
    assert any("(input " in n for n in notes if n.startswith("pretrained generator"))
    assert not any("bicubic" in n for n in notes)
    model = load_model(result.model_path)
    assert model.info.generator.scale == 1 and model.net.scale == 1
    with torch.inference_mode():  # any size in, the same size out: no upsampling stage
        assert model.net(torch.rand(1, 1, 37, 50)).shape == (1, 1, 37, 50)

    noisy = crappify_image(
        Image(images[0], axes="YX", pixel_size=(0.1, 0.1), units=("micrometer",) * 2),
        config.resolved_crappify(),
        seed=5,
    )
    write_image(noisy, tmp_path / "noisy.tif")
    out = CliRunner().invoke(
        app,
        ["predict", str(result.model_path), str(tmp_path / "noisy.tif"), "--out",
         str(tmp_path / "restored"), "--tile", "32", "--overlap", "8", "--device", "cpu",
         "--threads", "1", "--scale", "1", "-q"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    restored = read_image(tmp_path / "restored" / "noisy.zarr")
    assert restored.shape == (96, 96) and restored.dtype == noisy.dtype
    assert restored.pixel_size == pytest.approx((0.1, 0.1))
    # tiled (32 px tiles, 8 px overlap) equals the network on the whole image, up to blending
    lo, hi = percentile_range(np.asarray(noisy.data))
    with torch.inference_mode():
        x = normalize(np.asarray(noisy.data), lo, hi).astype(np.float32)
        whole = model.net(torch.from_numpy(x)[None, None])[0, 0].numpy()
    whole = denormalize(whole, lo, hi, noisy.dtype).astype(np.float64)
    tiled = np.asarray(restored.data, np.float64)
    assert np.corrcoef(whole.ravel(), tiled.ravel())[0, 1] > 0.98
