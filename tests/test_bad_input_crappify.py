"""``decrappify crappify`` on bad input: a clear one-line error, no traceback, no leftovers."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from decrappify.io import write_image
from decrappify.sample import synthetic_image


@pytest.mark.parametrize("how", ["truncate", "random"])
def test_damaged_chunk_fails_alone_and_names_the_chunk(bad, how):
    store, key = bad.damaged_zarr(how=how)
    good = bad.tif("good.tif")
    result = bad.run("crappify", store, good, "-o", "out", "-s", "2", "-q")
    text = bad.assert_clean_failure(result, f"{store}: chunk {key} is damaged or truncated")
    assert "1 of 2 inputs failed" in text
    assert (bad.path("out") / "good.tif").is_file()  # the rest of the batch ran
    bad.assert_nothing_left([bad.path("out") / "damaged.tif"])


def test_truncated_blosc_chunk_of_a_large_store_is_an_error_not_a_crash(bad):
    """The SIGSEGV of the issue: a 2048² store whose chunks are cut short.

    c-blosc trusts the compressed size in a chunk's header and reads past the end of a
    truncated one; without the header check, these cuts crash the process (exit 139; 3
    runs of 3 with this store), or fail with ``error during blosc decompression``. The
    pixels are noise, made at once (a synthetic micrograph took 8 s to write): its chunks
    do not compress, 1 MB each, as large as the micrograph's.
    """
    noise = np.random.default_rng(0).integers(0, 256, (2048, 2048), dtype=np.uint8)
    store = write_image(noise, bad.path("big.zarr"), chunks=(1024, 1024), levels=1)
    for key, percent in zip(("0/0", "0/1", "1/0", "1/1"), (30, 54, 80, 65), strict=True):
        chunk = store / "0" / "c" / key
        data = chunk.read_bytes()
        chunk.write_bytes(data[: len(data) * percent // 100])
    done = subprocess.run(
        [sys.executable, "-m", "decrappify", "crappify", str(store), "-o", "out", "-s", "4", "-q"],
        cwd=bad.folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    text = " ".join(done.stderr.split())
    assert re.search(
        rf"error: {re.escape(str(store))}: chunk 0/c/[01]/[01] is damaged or truncated \(the "
        r"Blosc header declares \d+ compressed bytes, the chunk has \d+\)",
        text,
    ), text
    assert "Traceback" not in done.stderr
    assert not bad.path("out").exists()  # every input failed: no empty output folder


def test_every_input_failing_leaves_no_output_folder(bad):
    bad.path("junk.tif").write_bytes(b"not a tiff at all")
    result = bad.run("crappify", "junk.tif", "-o", "out/deeper", "-q")
    bad.assert_clean_failure(result, "junk.tif: not a readable TIFF file", "1 of 1 inputs failed")
    assert not bad.path("out").exists()


def test_existing_output_asks_for_overwrite(bad):
    bad.tif("em.tif")
    assert bad.run("crappify", "em.tif", "-o", "out", "-s", "2", "-q").exit_code == 0
    before = (bad.path("out") / "em.tif").read_bytes()
    result = bad.run("crappify", "em.tif", "-o", "out", "-s", "2", "-q")
    bad.assert_clean_failure(result, "out/em.tif: already exists; pass --overwrite to replace it")
    assert (bad.path("out") / "em.tif").read_bytes() == before
    assert not bad.leftovers(bad.path("out"))


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("", "the config file is empty"),
        ("- 1\n- 2\n", "expected a mapping of settings"),
        (
            "scale: 2\nsteps:\n  - kind: downsample\n  - kind: gaussian_noise\n    sigma: 50\n",
            "steps.1.gaussian_noise: the noise would be 50 times the bright signal level "
            "(at most 2), so no signal would be left to learn from; lower its sigma",
        ),
        (
            "scale: 2\nsteps:\n  - kind: downsample\n  - kind: poisson\n    photons: 100\n"
            "  - kind: read_noise\n    sigma: 1.0e9\n",
            "steps.2.read_noise: the noise would be 1e+07 times the bright signal level",
        ),
        (
            "scale: 2\nsteps:\n  - kind: downsample\n  - kind: poisson\n    photons: 1.0e-6\n",
            "steps.1.poisson: the noise would be 1e+03 times the bright signal level "
            "(at most 2), so no signal would be left to learn from; raise its photons",
        ),
        (
            "scale: 2\nsteps:\n  - kind: blur\n    sigma: 500\n  - kind: downsample\n",
            "steps.0.blur: sigma must be at most 50 pixels",
        ),
        (
            "scale: 2\nsteps:\n  - kind: salt_pepper\n    amount: 0.9\n  - kind: downsample\n",
            "steps.0.salt_pepper: amount must be in [0, 0.5] (got 0.9)",
        ),
        (
            "scale: 2\nsteps:\n  - kind: gaussian_noise\n    sigma: [3, 1]\n  - kind: downsample\n",
            "steps.0.gaussian_noise: sigma range must be [min, max] with min <= max (got [3, 1])",
        ),
    ],
)
def test_bad_config_files(bad, yaml, message):
    bad.tif("em.tif")
    bad.path("c.yaml").write_text(yaml)
    result = bad.run("crappify", "em.tif", "-o", "out", "--config", "c.yaml", "-q")
    text = bad.assert_clean_failure(result, f"error: c.yaml: {message}")
    assert text.count("error:") == 1
    assert not bad.path("out").exists()


def test_fit_takes_every_image_given_after_fit(bad):
    """``--fit a.tif b.tif`` (or a shell glob) leaves b.tif among INPUTS: both are fitted."""
    rng = np.random.default_rng(0)
    for name in ("a.tif", "b.tif"):
        clean = np.asarray(synthetic_image("em", (128, 128), seed=len(name)).data)
        bad.tif(name, data=(clean + rng.normal(0, 6, clean.shape)).clip(0, 255).astype(np.uint8))
    result = bad.run("crappify", "--fit", "a.tif", "--fit", "b.tif", "--hr", "a.tif")
    bad.assert_clean_failure(
        result, "--hr: cannot pair 1 image(s) with 2 --fit image(s) by name", "no --hr image is "
        "named like b.tif", "or repeat --fit and --hr before each file, in the same order"
    )  # fmt: skip
    result = bad.run("crappify", "--fit", "a.tif", "b.tif", "-o", "fit.yaml")
    assert result.exit_code == 0, result.output
    assert "name: fitted" in bad.path("fit.yaml").read_text()


def test_fit_and_hr_each_take_every_file_that_follows(bad):
    """``--fit a.tif b.tif --hr c.tif d.tif`` made d.tif a low-res image: now each option
    takes the files after it (as a shell glob gives them), paired in order."""
    rng = np.random.default_rng(0)
    for i, (lr, hr) in enumerate((("a.tif", "c.tif"), ("b.tif", "d.tif"))):
        clean = np.asarray(synthetic_image("em", (128, 128), seed=i).data)
        bad.tif(hr, data=clean)
        bad.tif(lr, data=(clean + rng.normal(0, 6, clean.shape)).clip(0, 255).astype(np.uint8))
    result = bad.run(
        "crappify", "--fit", "a.tif", "b.tif", "--hr", "c.tif", "d.tif", "-o", "f.yaml"
    )
    assert result.exit_code == 0, result.output
    assert "name: fitted" in bad.path("f.yaml").read_text()


def test_fit_pairs_of_mismatched_sizes_are_named(bad):
    bad.tif("lr.tif", size=64)
    bad.tif("hr.tif", data=np.zeros((100, 128), np.uint8))
    result = bad.run("crappify", "--fit", "lr.tif", "--hr", "hr.tif")
    bad.assert_clean_failure(
        result,
        "--fit lr.tif (64, 64) and --hr hr.tif (100, 128): the high-res image must show the "
        "same field as the low-res one",
    )


def test_fit_on_too_small_images_says_what_to_give(bad):
    bad.tif("tiny.tif", size=32)
    result = bad.run("crappify", "--fit", "tiny.tif")
    bad.assert_clean_failure(result, "low-res images: too few flat 8x8 patches", "give larger")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda store, meta: __import__("shutil").rmtree(store / "0"),
            "multiscales[0].datasets names the array '0', which is not in the store "
            "(arrays found: none)",
        ),
        (
            lambda store, meta: meta["attributes"]["ome"]["multiscales"][0]["datasets"][0].update(
                path="7"
            ),
            "multiscales[0].datasets names the array '7', which is not in the store "
            "(arrays found: 0)",
        ),
        (
            lambda store, meta: meta["attributes"]["ome"].update(multiscales="abc"),
            'multiscales must be a list of objects (got "abc")',
        ),
        (
            lambda store, meta: meta["attributes"]["ome"]["multiscales"][0]["datasets"][0].update(
                coordinateTransformations="scale"
            ),
            "multiscales[0].datasets[0].coordinateTransformations must be a list of objects",
        ),
    ],
)
def test_bad_ome_zarr_metadata(bad, edit, message):
    store = bad.zarr("meta.zarr")
    meta = json.loads((store / "zarr.json").read_text())
    edit(store, meta)
    (store / "zarr.json").write_text(json.dumps(meta))
    result = bad.run("crappify", store, "-o", "out", "-q")
    bad.assert_clean_failure(result, f"{store}: invalid OME-Zarr metadata: {message}")


@pytest.mark.parametrize(
    "target", ["missing/folder/log.txt", "afile/log.txt"], ids=["missing", "not-a-folder"]
)
def test_log_file_that_cannot_be_written(bad, target):
    bad.path("afile").write_text("a file, not a folder")
    bad.tif("em.tif")
    result = bad.run("--log-file", target, "crappify", "em.tif", "-o", "out", "-q")
    bad.assert_clean_failure(result, f"--log-file {target}: cannot write")
    assert not bad.path("out").exists()


def test_missing_input_and_option_messages(bad):
    bad.assert_clean_failure(bad.run("crappify", "nothing.tif", "-o", "out"), "nothing.tif")
    bad.assert_clean_failure(bad.run("crappify", "-o", "out"), "give at least one INPUT", code=2)
    bad.tif("em.tif")
    bad.assert_clean_failure(bad.run("crappify", "em.tif"), "--out DIR is required", code=2)
    assert not bad.path("out").exists()
