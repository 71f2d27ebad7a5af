"""The crappify and sample commands, through typer's runner and as a subprocess."""

import subprocess
import sys

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from decrappify.cli import app
from decrappify.io import read_image

runner = CliRunner()


@pytest.fixture
def hr_tif(tmp_path):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:256, 0:256]
    img = (2000 + 1500 * np.sin(x / 9.0) * np.cos(y / 13.0) + rng.normal(0, 20, (256, 256))).clip(
        0, 65535
    )
    path = tmp_path / "cells.tif"
    tifffile.imwrite(
        path,
        img.astype(np.uint16),
        resolution=(1 / 0.1, 1 / 0.1),
        metadata={"unit": "um", "axes": "YX"},
        imagej=True,
    )
    return path


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_help_imports_neither_torch_nor_napari():
    code = (
        "import sys; from typer.testing import CliRunner; from decrappify.cli import app;"
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output;"
        "assert 'crappify' in r.output;"
        "bad = [m for m in ('torch', 'napari', 'qtpy', 'magicgui') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_crappify_writes_scaled_output_with_pixel_size(hr_tif, tmp_path):
    out = tmp_path / "out"
    result = invoke("crappify", hr_tif, "--out", out, "--preset", "fluorescence", "--seed", "3")
    assert result.exit_code == 0, result.output
    lr = read_image(out / "cells.tif")
    assert lr.shape == (64, 64)
    assert lr.dtype == np.uint16
    assert lr.pixel_size == pytest.approx((0.4, 0.4))
    # deterministic: the same seed gives the same bytes, another seed does not
    again = invoke(
        "crappify", hr_tif, "--out", tmp_path / "again", "--preset", "fluorescence", "--seed", "3"
    )
    assert again.exit_code == 0
    other = invoke("crappify", hr_tif, "--out", tmp_path / "other", "--preset", "fluorescence")
    assert other.exit_code == 0
    a = np.asarray(lr.data)
    np.testing.assert_array_equal(a, np.asarray(read_image(tmp_path / "again/cells.tif").data))
    assert not np.array_equal(a, np.asarray(read_image(tmp_path / "other/cells.tif").data))


def test_crappify_zarr_scale_and_config_file(hr_tif, tmp_path):
    cfg = tmp_path / "c.yaml"
    from decrappify.crappify import get_preset

    cfg.write_text(get_preset("em").with_scale(2).to_yaml())
    result = invoke("crappify", hr_tif, "--out", tmp_path / "o", "--config", cfg, "-f", "zarr")
    assert result.exit_code == 0, result.output
    lr = read_image(tmp_path / "o" / "cells.zarr")
    assert lr.shape == (128, 128)
    assert lr.pixel_size == pytest.approx((0.2, 0.2))
    scaled = invoke("crappify", hr_tif, "--out", tmp_path / "s", "--scale", "8")
    assert scaled.exit_code == 0, scaled.output
    assert read_image(tmp_path / "s" / "cells.tif").shape == (32, 32)


@pytest.mark.parametrize("preset", ["em", "fluorescence"])
def test_crappify_scale_one_keeps_the_grid(hr_tif, tmp_path, preset):
    out = tmp_path / "same"
    result = invoke("crappify", hr_tif, "--out", out, "--preset", preset, "--scale", "1")
    assert result.exit_code == 0, result.output
    lr = read_image(out / "cells.tif")
    assert lr.shape == (256, 256) and lr.pixel_size == pytest.approx((0.1, 0.1))
    clean = np.asarray(read_image(hr_tif).data, dtype=np.float64)
    noisy = np.asarray(lr.data, dtype=np.float64)
    assert 0.5 < np.corrcoef(clean.ravel(), noisy.ravel())[0, 1] < 0.999  # degraded, in place


def test_batch_reports_each_file_and_fails_if_one_fails(hr_tif, tmp_path):
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00" + b"\x00" * 20)
    out = tmp_path / "out"
    result = invoke("crappify", hr_tif, broken, "--out", out)
    assert result.exit_code == 1
    assert "1 of 2 inputs failed" in result.output
    assert (out / "cells.tif").is_file()
    assert not (out / "broken.tif").exists()
    assert [p.name for p in out.iterdir()] == ["cells.tif"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.tif", "missing.tif"),
        (lambda d: _write(d / "rgb.tif", np.zeros((64, 64, 3), np.uint8), photometric="rgb"), "3"),
        (lambda d: _write(d / "four.tif", np.zeros((2, 2, 64, 64), np.uint16)), "2D or 3D"),
        (lambda d: _write(d / "tiny.tif", np.ones((3, 3), np.uint16)), "tiny.tif"),
        (lambda d: _write(d / "nan.tif", _nan_image()), "NaN"),
    ],
    ids=["missing", "rgb", "4d", "too-small", "nan"],
)
def test_bad_inputs_give_one_line_errors_and_no_output(tmp_path, make, message):
    src = make(tmp_path)
    out = tmp_path / "out"
    result = invoke("crappify", src, "--out", out)
    assert result.exit_code != 0
    assert message in result.output
    assert not any(out.glob("*")) if out.exists() else True


def _write(path, data, **kw):
    tifffile.imwrite(path, data, **kw)
    return path


def _nan_image():
    img = np.ones((64, 64), np.float32)
    img[10, 10] = np.nan
    return img


def test_parameter_errors(hr_tif, tmp_path):
    unknown = invoke("crappify", hr_tif, "--out", tmp_path / "o", "--preset", "confocal")
    assert unknown.exit_code == 2
    assert "confocal" in unknown.output
    scale = invoke("crappify", hr_tif, "--out", tmp_path / "o", "--scale", "0")
    assert scale.exit_code == 1
    assert "scale" in scale.output
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text("scale: 4\nsteps:\n  - kind: poisson\n    photons: -5\n")
    cfg = invoke("crappify", hr_tif, "--out", tmp_path / "o", "--config", bad_cfg)
    assert cfg.exit_code == 1
    assert "photons" in cfg.output and "bad.yaml" in cfg.output


def test_output_would_overwrite_input(hr_tif):
    result = invoke("crappify", hr_tif, "--out", hr_tif.parent)
    assert result.exit_code == 1
    assert "cells.tif" in result.output
    assert read_image(hr_tif).shape == (256, 256)


def test_unwritable_output_folder(hr_tif, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = invoke("crappify", hr_tif, "--out", blocker / "sub")
    assert result.exit_code == 1
    assert "sub" in result.output


def test_sample_and_crappify_as_subprocess(tmp_path):
    exe = [sys.executable, "-m", "decrappify"]
    sample = tmp_path / "em.tif"
    subprocess.run([*exe, "sample", "--kind", "em", "--size", "256", "--out", sample], check=True)
    img = read_image(sample)
    assert img.shape == (256, 256) and img.dtype == np.uint8
    proc = subprocess.run(
        [*exe, "crappify", sample, "--out", tmp_path / "lr", "--preset", "em"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stderr
    assert read_image(tmp_path / "lr" / "em.tif").shape == (64, 64)


def test_fit_prints_a_config_that_crappify_accepts(tmp_path):
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:256, 0:256]
    signal = 200 + 150 * (np.sin(x / 40) > 0) + 100 * (y > 128)  # flat regions, ADU
    gain, read = 2.0, 4.0
    noisy = gain * rng.poisson(signal / gain) + rng.normal(0, read, signal.shape) + 100
    lr = _write(tmp_path / "lr.tif", noisy.clip(0, 65535).astype(np.uint16))
    cfg = tmp_path / "fitted.yaml"
    result = invoke("crappify", "--fit", lr, "--out", cfg)
    assert result.exit_code == 0, result.output
    assert "gain" in result.output.lower()
    run = invoke("crappify", lr, "--out", tmp_path / "o", "--config", cfg)
    assert run.exit_code == 0, run.output


def test_fit_takes_a_folder_of_same_grid_frames(tmp_path):
    rng = np.random.default_rng(2)
    y, x = np.mgrid[0:192, 0:192]
    folder = tmp_path / "real"
    folder.mkdir()
    for i in range(2):
        signal = 300 + 200 * (np.sin(x / 30 + i) > 0) + 80 * (y > 96)
        noisy = 2.0 * rng.poisson(signal / 2.0) + rng.normal(0, 3.0, signal.shape) + 50
        _write(folder / f"f{i}.tif", noisy.clip(0, 65535).astype(np.uint16))
    whole = invoke("crappify", "--fit", folder, "--out", tmp_path / "fitted.yaml")
    assert whole.exit_code == 0, whole.output
    assert "scale: 1" in (tmp_path / "fitted.yaml").read_text()


def test_fit_pairs_folders_of_low_and_high_res_images_by_name(tmp_path):
    """``crappify --fit FOLDER --hr FOLDER``: each LR image with the HR image of its name."""
    from decrappify.io.pairing import pair_inputs
    from decrappify.sample import synthetic_image

    rng = np.random.default_rng(3)
    (tmp_path / "hr").mkdir()
    (tmp_path / "lr").mkdir()
    for i, name in enumerate(("cell2", "cell10")):
        hr = np.asarray(synthetic_image("em", (192, 192), seed=i).data, dtype=np.float64)
        lr = hr.reshape(96, 2, 96, 2).mean(axis=(1, 3)) + rng.normal(0, 5, (96, 96))
        _write(tmp_path / "hr" / f"{name}.tif", hr.astype(np.uint8))
        _write(tmp_path / "lr" / f"{name}.tif", lr.clip(0, 255).astype(np.uint8))
    _write(tmp_path / "hr" / "other.tif", np.zeros((192, 192), np.uint8))
    result = invoke("crappify", "--fit", tmp_path / "lr", "--hr", tmp_path / "hr")
    assert result.exit_code == 1
    assert "--hr: cannot pair 3 image(s) with 2 --fit image(s) by name;" in result.output
    (tmp_path / "hr" / "other.tif").unlink()  # one HR image per LR image: paired by name
    fitted = tmp_path / "fitted.yaml"
    result = invoke("crappify", "--fit", tmp_path / "lr", "--hr", tmp_path / "hr", "-o", fitted)
    assert result.exit_code == 0, result.output
    assert "scale: 2" in fitted.read_text()
    # by name before order: files given in another order still pair with their namesakes
    lr = [tmp_path / "lr" / "cell2.tif", tmp_path / "lr" / "cell10.tif"]
    hr = [tmp_path / "hr" / "cell10.tif", tmp_path / "hr" / "cell2.tif"]
    assert pair_inputs(lr, hr) == list(zip(lr, hr[::-1], strict=True))
    # other names: in the order given for files, refused for folders
    (tmp_path / "hr" / "cell2.tif").rename(tmp_path / "hr" / "a.tif")
    named = [tmp_path / "hr" / "a.tif", tmp_path / "hr" / "cell10.tif"]
    assert pair_inputs(lr[::-1], named[::-1]) == list(zip(lr[::-1], named[::-1], strict=True))
    with pytest.raises(Exception, match="no --hr image is named like cell2.tif"):
        pair_inputs([tmp_path / "lr"], [tmp_path / "hr"])
