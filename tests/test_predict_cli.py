"""``decrappify predict`` and the batch API: outputs, reports, errors, and resume after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr
from typer.testing import CliRunner

from _tiny import FAST, SLOW_DRIVER, em_model, tiny_generator
from decrappify import api
from decrappify.cli import app
from decrappify.config.model import ModelInfo
from decrappify.errors import ModelFileError
from decrappify.io import read_image, write_image
from decrappify.models import build_generator, save_model

runner = CliRunner()

#: The smallest decrappify generator: fast enough for tests, a real U-Net all the same.


def invoke(*args):
    return runner.invoke(app, ["predict", *(str(a) for a in args)])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A 2D and a 2.5D ×2 model file, and a corrupted one."""
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for name, frames in (("x2", 1), ("x2_3frames", 3)):
        cfg = tiny_generator(n_frames=frames)
        net = build_generator(cfg, seed=0).eval()
        paths[name] = save_model(folder / f"{name}.safetensors", net, ModelInfo(generator=cfg))
    broken = folder / "broken.safetensors"
    broken.write_bytes(paths["x2"].read_bytes()[:5000])
    paths["broken"] = broken
    return paths


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def em(tmp_path):
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:96, 0:80]
    img = 120 + 60 * np.sin(x / 5.0) * np.cos(y / 7.0) + rng.normal(0, 8, y.shape)
    path = tmp_path / "em.tif"
    tifffile.imwrite(path, img.clip(0, 255).astype(np.uint8))
    return path


# --------------------------------------------------------------------------- success


def test_predict_writes_ome_zarr_a_summary_and_a_report(models, em, tmp_path):
    out, report = tmp_path / "out", tmp_path / "report.json"
    result = invoke(models["x2"], em, "--out", out, "--report", report, *FAST)
    assert result.exit_code == 0, result.output
    sr = read_image(out / "em.zarr")
    assert sr.shape == (192, 160) and sr.dtype == np.uint8
    assert sr.pixel_size == pytest.approx((0.5, 0.5))
    assert "em.tif" in result.output and "ok" in result.output and "MPix/s" in result.output
    document = json.loads(report.read_text())
    assert document["ok"] is True and document["settings"]["tile"] == 32
    (entry,) = document["results"]
    assert entry["output"] == str(out / "em.zarr")
    assert entry["info"]["input_shape"] == [96, 80]
    assert entry["info"]["output_shape"] == [192, 160]
    assert entry["info"]["overlap"] == 16  # a U-Net: half the tile
    assert entry["info"]["mpix_per_s"] > 0


def test_tif_output_and_dtype(models, em, tmp_path):
    result = invoke(
        models["x2"], em, "--out", tmp_path / "o", "-f", "tif", "--dtype", "uint16", *FAST
    )
    assert result.exit_code == 0, result.output
    sr = tifffile.imread(tmp_path / "o" / "em.tif")
    assert sr.shape == (192, 160) and sr.dtype == np.uint16


def test_a_local_run_with_its_consistency_map_imports_no_dask(em, tmp_path):
    model = em_model(tmp_path)  # records its crappifier: the consistency map is made too
    code = (
        "import sys; from decrappify.cli import main; sys.argv = ['decrappify', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as end:\n    assert not end.code, end.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    )
    args = [str(model), str(em), "--out", str(tmp_path / "o"), "-f", "tif", "-q"]
    done = subprocess.run([sys.executable, "-c", code, "predict", *args], capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().strip().splitlines()[-1] == "[]"
    assert (tmp_path / "o" / "em.consistency.tif").is_file()


def test_one_bad_input_fails_alone(models, em, tmp_path):
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((40, 40, 3), np.uint8), photometric="rgb")
    result = invoke(models["x2"], rgb, em, "--out", tmp_path / "out", *FAST)
    assert result.exit_code == 1
    assert "FAILED" in result.output and "error:" in result.output
    assert "has 3 channels" in " ".join(result.output.split())
    assert "1 of 2 inputs failed" in result.output
    assert (tmp_path / "out" / "em.zarr").is_dir()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["em.zarr"]  # no partial


def test_config_file_gives_the_output_of_the_same_flags_and_flags_override_it(models, em, tmp_path):
    flags = ["--tile", "64", "--overlap", "8", "--batch", "2", "--dtype", "uint16"]
    common = ["--device", "cpu", "--threads", "1", "--quiet"]
    assert invoke(models["x2"], em, "--out", tmp_path / "flags", *flags, *common).exit_code == 0
    config = tmp_path / "p.yaml"
    config.write_text("tile: 64\noverlap: 8\nbatch: 2\ndtype: uint16\nformat: tif\n")
    report = tmp_path / "report.json"
    # --format zarr on the command line wins over format: tif in the file
    result = invoke(
        models["x2"], em, "--out", tmp_path / "file", "--config", config, "-f", "zarr",
        "--report", report, *common,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    got, want = (
        read_image(tmp_path / "file" / "em.zarr"),
        read_image(tmp_path / "flags" / "em.zarr"),
    )
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(np.asarray(got.data), np.asarray(want.data))
    settings = json.loads(report.read_text())["settings"]
    assert (settings["tile"], settings["overlap"], settings["format"]) == (64, 8, "zarr")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tile: 0\n", "p.yaml: tile must be a positive integer (got 0)"),
        ("tiles: 64\n", "p.yaml: tiles: unknown parameter"),
        ("device: tpu\n", "p.yaml: device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"),
    ],
)
def test_bad_config_file_is_named(models, em, tmp_path, text, message):
    config = tmp_path / "p.yaml"
    config.write_text(text)
    result = invoke(models["x2"], em, "--out", tmp_path / "o", "--config", config, *FAST)
    assert result.exit_code == 1
    assert one_line_error(result).startswith(f"error: {config.parent}/{message}")
    assert not (tmp_path / "o").exists()


def test_resume_keeps_finished_outputs(models, em, tmp_path):
    out = tmp_path / "out"
    assert invoke(models["x2"], em, "--out", out, *FAST).exit_code == 0
    stamp = (out / "em.zarr" / "zarr.json").stat().st_mtime_ns
    result = invoke(models["x2"], em, "--out", out, "--resume", *FAST)
    assert result.exit_code == 0 and "skipped" in result.output
    assert (out / "em.zarr" / "zarr.json").stat().st_mtime_ns == stamp
    again = invoke(models["x2"], em, "--out", out, *FAST)
    assert again.exit_code == 1 and "already exists" in again.output


# --------------------------------------------------------------------------- errors


def one_line_error(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert lines, result.output
    return " ".join(" ".join(lines).split())


def test_bad_tile(models, em, tmp_path):
    result = invoke(models["x2"], em, "--out", tmp_path / "o", "--tile", "100")
    assert result.exit_code == 1
    assert one_line_error(result) == (
        "error: tile 100: tile × scale must be a multiple of 64 (100 × 2 = 200); "
        "use a multiple of 32 such as 96 or 128"
    )
    assert not (tmp_path / "o").exists()


def test_missing_and_corrupted_model(models, em, tmp_path):
    missing = invoke(tmp_path / "nope.safetensors", em, "--out", tmp_path / "o")
    assert missing.exit_code == 1
    assert one_line_error(missing) == (
        f"error: {tmp_path / 'nope.safetensors'}: model not found (expected a folder with "
        "model.json and model.safetensors, or a .safetensors file)"
    )
    broken = invoke(models["broken"], em, "--out", tmp_path / "o")
    assert broken.exit_code == 1
    assert one_line_error(broken).startswith(
        f"error: {models['broken']}: not a readable safetensors file, it may be truncated or "
        "corrupted"
    )
    assert not (tmp_path / "o").exists()


def test_2_5d_model_on_a_2d_image(models, em, tmp_path):
    result = invoke(models["x2_3frames"], em, "--out", tmp_path / "o", *FAST)
    assert result.exit_code == 1
    assert (
        "em: the model x2_3frames.safetensors takes 3 neighbouring planes (2.5D) but the image "
        "is 2D (shape (96, 80)); use a ZYX or TYX stack or a 2D model"
    ) in one_line_error(result)
    assert not (tmp_path / "o").exists()  # every input failed: no empty output folder


def test_scale_mismatch(models, em, tmp_path):
    result = invoke(models["x2"], em, "--out", tmp_path / "o", "--scale", "4", *FAST)
    assert result.exit_code == 1
    assert "x2.safetensors: this model upsamples ×2, but scale 4 was asked" in one_line_error(
        result
    )


def test_output_inside_the_input(models, tmp_path):
    source = write_image(np.zeros((40, 40), np.uint8), tmp_path / "in.zarr")
    result = invoke(models["x2"], source, "--out", source / "sr", *FAST)
    assert result.exit_code == 1
    assert "in.zarr: the output of" in one_line_error(result)  # planned: refused up front
    assert "lies inside the input" in one_line_error(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--overlap", "lots"], "error: --overlap must be 'auto' or an integer >= 0 (got 'lots')"),
        (["--overlap", "20"], "error: overlap must be at most half the tile (tile 32, overlap 20)"),
        (["--workers", "2"], "error: predict: --workers applies to --cluster local"),
        (
            ["--cluster", "local", "--scheduler", "tcp://x:1"],
            "error: predict: give either --scheduler ADDRESS or --cluster local, not both",
        ),
    ],
)
def test_bad_options(models, em, tmp_path, args, message):
    """Options wrong on the command line alone are usage errors: one line, exit status 2."""
    result = invoke(models["x2"], em, "--out", tmp_path / "o", "--tile", "32", *args)
    assert result.exit_code == 2
    assert one_line_error(result) == message


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_gpu(models, em, tmp_path):
    result = invoke(models["x2"], em, "--out", tmp_path / "o", "--device", "cuda")
    assert result.exit_code == 1
    assert one_line_error(result) == "error: device 'cuda' is not available (no CUDA device found)"


def test_api_batch_reports_progress_per_file(models, em, tmp_path):
    second = tmp_path / "em2.tif"
    second.write_bytes(em.read_bytes())
    settings = {"tile": 32, "device": "cpu", "threads": 1, "chunk": 64, "block": 64}
    events, gen = [], api.iter_predict(models["x2"], [em, second], tmp_path / "o", settings)
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            results = stop.value
            break
    assert [r.ok for r in results] == [True, True]
    blocks = [e for e in events if e.info.get("level") == 0]
    assert {e.phase for e in blocks} == {"em.tif", "em2.tif"}
    assert {e.info["file_index"] for e in blocks} == {0, 1}
    assert all(e.info["rate"].endswith("MPix/s") and e.info["pixels_per_s"] > 0 for e in blocks)
    assert [e.step for e in blocks if e.phase == "em.tif"] == list(range(1, 10))  # 3 × 3 blocks
    info = results[1].info
    assert (info["blocks"], info["blocks_computed"], info["blocks_resumed"]) == (9, 9, 0)
    assert info["dtype"] == "uint8" and info["device"] == "cpu"


def test_api_refuses_a_corrupted_model_before_any_input(models, em, tmp_path):
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        api.predict(models["broken"], [em], tmp_path / "o")
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- kill -9, resume


def store_arrays(path: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(path, mode="r")
    return {name: array[...] for name, array in group.arrays()}


@pytest.mark.slow
def test_resume_after_kill_minus_9_gives_the_same_output(models, em, tmp_path):
    args = ["--chunk", "32", "--block", "32", "--tile", "32", "--device", "cpu", "--threads", "1"]
    # the uninterrupted run (in this process: same arguments, same output)
    reference = api.predict(
        models["x2"],
        [em],
        tmp_path / "ref",
        {"tile": 32, "device": "cpu", "threads": 1, "chunk": 32, "block": 32},
    )
    assert reference[0].ok and reference[0].info["blocks"] == 30  # 6 × 5 blocks
    driver = tmp_path / "driver.py"
    driver.write_text(SLOW_DRIVER)
    out = tmp_path / "out"
    command = [
        sys.executable,
        str(driver),
        "predict",
        str(models["x2"]),
        str(em),
        "--out",
        str(out),
    ]
    command += [*args, "--resume", "--quiet"]
    done = out / ".em.zarr.partial" / ".decrappify-resume" / "done.txt"
    child = subprocess.Popen(
        command, env={**os.environ, "SLOW_FORWARD": "0.3"}, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while not (done.is_file() and len(done.read_text().splitlines()) >= 3):
            assert child.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no block was written"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    assert not (out / "em.zarr").exists()  # nothing under the final name
    written = len(done.read_text().splitlines())
    assert 3 <= written < 30  # the partial store survived the kill
    report = tmp_path / "report.json"
    rerun = subprocess.run(
        [*command, "--report", str(report)], capture_output=True, text=True, check=False
    )
    assert rerun.returncode == 0, rerun.stderr
    info = json.loads(report.read_text())["results"][0]["info"]
    assert info["blocks_resumed"] == written
    assert info["blocks_computed"] == 30 - written  # only the missing blocks
    got, expected = store_arrays(out / "em.zarr"), store_arrays(tmp_path / "ref" / "em.zarr")
    assert got.keys() == expected.keys() == {"0"}
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])
    meta = json.loads((out / "em.zarr" / "zarr.json").read_text())
    assert meta == json.loads((tmp_path / "ref" / "em.zarr" / "zarr.json").read_text())
    assert not list(out.glob(".*"))  # the partial store was renamed, resume state removed
