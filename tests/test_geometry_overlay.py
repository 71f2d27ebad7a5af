"""Coordinates that line up: crappify → predict → evaluate, in world coordinates.

A crappified image's pixel sits over the centre of the block it came from (a 1.5-pixel
shift at scale 4); the files must record it so that the prediction made from them lands
back on the ground truth.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from skimage.registration import phase_cross_correlation
from typer.testing import CliRunner

from _tiny import FAST, tiny_generator
from decrappify import api
from decrappify.cli import app
from decrappify.config.model import ModelInfo
from decrappify.events import run_to_end
from decrappify.io import Image, read_image, write_image
from decrappify.models import build_generator, save_model

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def bilinear_x4(tmp_path_factory):
    """An untrained residual ×4 model: its prediction is the bilinear image, placed exactly."""
    cfg = tiny_generator(scale=4, residual=True)
    net = build_generator(cfg, seed=0).eval()
    path = tmp_path_factory.mktemp("model") / "x4.safetensors"
    return save_model(path, net, ModelInfo(generator=cfg))


def world_shift(moving: Image, reference: Image) -> np.ndarray:
    """Where ``moving``'s content lies relative to ``reference``'s, in reference pixels.

    The cross-correlation peak of the pixels (sub-pixel) plus the offset between their
    first pixels in the world, as a viewer overlays them. Both are on one pixel size.
    """
    assert moving.scale == pytest.approx(reference.scale)
    a = np.asarray(reference.data, dtype=np.float64)[8:-8, 8:-8]
    b = np.asarray(moving.data, dtype=np.float64)[8:-8, 8:-8]
    shift, _, _ = phase_cross_correlation(a, b, upsample_factor=20, normalization=None)
    origins = [np.asarray(im.translate or (0.0, 0.0)) for im in (moving, reference)]
    return -shift + (origins[0] - origins[1]) / np.asarray(reference.scale)


def test_crappified_tiff_records_the_half_block_shift(tmp_path):
    gt = api.sample_image("em", (128, 128), seed=1)  # 4 nm pixels, at the origin
    hr = write_image(gt, tmp_path / "hr" / "em.tif")
    invoke("crappify", hr, "--out", tmp_path / "lr", "--quiet")
    lr = read_image(tmp_path / "lr" / "em.tif")
    assert lr.pixel_size == pytest.approx((16.0, 16.0)) and lr.units == ("nanometer",) * 2
    assert lr.translate == pytest.approx((6.0, 6.0))  # 1.5 HR pixels: the 4x4 block's centre
    # the same in OME-Zarr, and in OME's "pixel" unit for an image without a physical size
    invoke("crappify", hr, "--out", tmp_path / "lrz", "--format", "zarr", "--quiet")
    assert read_image(tmp_path / "lrz" / "em.zarr").translate == pytest.approx((6.0, 6.0))
    tifffile.imwrite(tmp_path / "plain.tif", np.asarray(gt.data))
    invoke("crappify", tmp_path / "plain.tif", "--out", tmp_path / "lrp", "--quiet")
    plain = read_image(tmp_path / "lrp" / "plain.tif")
    assert plain.pixel_size == (4.0, 4.0) and plain.units is None
    assert plain.translate == pytest.approx((1.5, 1.5))


def test_prediction_of_a_crappified_tiff_overlays_its_ground_truth(tmp_path, bilinear_x4):
    """The default pipeline crappify-TIFF → predict-zarr → evaluate is accepted and lines up."""
    gt_image = api.sample_image("em", (256, 256), seed=2)
    hr = write_image(gt_image, tmp_path / "hr" / "em.tif")
    invoke("crappify", hr, "--out", tmp_path / "lr", "--quiet")
    invoke("predict", bilinear_x4, tmp_path / "lr" / "em.tif", "--out", tmp_path / "sr", *FAST)
    gt, lr = read_image(hr), read_image(tmp_path / "lr" / "em.tif")
    sr = read_image(tmp_path / "sr" / "em.zarr")
    assert sr.pixel_size == pytest.approx(gt.pixel_size)
    # the cross-correlation peak between GT and prediction sits at zero shift in the world
    assert world_shift(sr, gt) == pytest.approx([0.0, 0.0], abs=0.1)

    report = api.evaluate([tmp_path / "sr" / "em.zarr"], [hr], lr=[tmp_path / "lr" / "em.tif"])
    assert report.failed == [] and report.notes == []  # one grid: nothing resampled
    # bicubic, made on the GT grid by the same comparison the Compare widget runs
    comparison = run_to_end(api.iter_compare(sr, gt, lr, overlays=True))
    assert comparison.plan.mode == "exact" and comparison.plan.scale == 4
    assert world_shift(comparison.baseline, gt) == pytest.approx([0.0, 0.0], abs=0.1)
    assert comparison.error.translate == gt.translate and comparison.error.shape == gt.shape


def test_shifted_prediction_is_refused_with_both_extents(tmp_path):
    """Without the shift (what crappify wrote before) the layers are 1.5 pixels apart."""
    gt = api.sample_image("em", (64, 64))
    pred = gt.with_data(np.asarray(gt.data), translate=(-6.0, -6.0))
    with pytest.raises(Exception, match="does not overlay ground truth"):
        run_to_end(api.iter_compare(pred, gt))


def test_ome_tiff_plane_positions_are_read_in_the_pixel_size_unit(tmp_path):
    """Positions written by another tool, in another unit, are converted; stacks step in Z."""
    meta = {
        "axes": "ZYX",
        "PhysicalSizeX": 65.0,
        "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": 65.0,
        "PhysicalSizeYUnit": "nm",
        "PhysicalSizeZ": 200.0,
        "PhysicalSizeZUnit": "nm",
        "Plane": {
            "PositionX": [1.5, 1.5],
            "PositionXUnit": ["µm", "µm"],
            "PositionY": [0.25, 0.25],
            "PositionYUnit": ["µm", "µm"],
            "PositionZ": [2.0, 2.2],
            "PositionZUnit": ["µm", "µm"],
        },
    }
    tifffile.imwrite(tmp_path / "s.ome.tif", np.zeros((2, 32, 32), np.uint16), metadata=meta)
    image = read_image(tmp_path / "s.ome.tif")
    assert image.translate == pytest.approx((2000.0, 250.0, 1500.0))
    write_image(image, tmp_path / "copy.tif")
    assert read_image(tmp_path / "copy.tif").translate == pytest.approx(image.translate)
