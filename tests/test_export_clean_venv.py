"""A bioimage.io package runs where decrappify is not installed, and predicts what it predicts.

A fresh virtual environment gets only PyTorch and bioimageio.core from the package index
(``pip install torch==2.13.0 bioimageio.core 'pydantic<2.14'``: torch named so pip takes
the CPU build, pydantic capped because bioimageio.core 0.11 pins a bioimageio.spec that
rejects every model with pydantic 2.14). There ``bioimageio test --weight-format all``
must pass on an exported package, and ``bioimageio.core``'s prediction of a 128 x 128
image must equal ``decrappify predict``'s within 1e-3 of its range, borders included.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import venv
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

#: A citation of the model's own (bioimageio.spec would look a GitHub user up online).
CITE = "Lovelace A. Our microscope. 2026 10.1234/ours"
#: What the consumer installs: PyTorch (CPU file) and bioimageio.core, nothing of ours.
CONSUMER = ["torch==2.13.0", "bioimageio.core", "pydantic<2.14"]


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.setdefault("OMP_NUM_THREADS", "2")
    return subprocess.run(args, capture_output=True, text=True, env=env, **kwargs)


@pytest.fixture(scope="module")
def consumer(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("consumer") / "venv"
    venv.create(root, with_pip=True)
    python = root / "bin" / "python"
    done = _run([str(python), "-m", "pip", "install", "--quiet", *CONSUMER], timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # nothing of decrappify is importable there
    probe = _run([str(python), "-c", "import decrappify"], cwd=root)
    assert probe.returncode != 0 and "No module named 'decrappify'" in probe.stderr
    return python


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    from _export_model import saved_model
    from decrappify.api import export_bioimageio

    folder = tmp_path_factory.mktemp("clean_export")
    model = saved_model(folder, scale=2)
    result = export_bioimageio(
        model, folder / "em_x2.zip", authors=["Ada Lovelace"], cite=[CITE], test=False
    )
    return result.path


def test_bioimageio_test_passes_without_decrappify(consumer, package):
    bioimageio = consumer.with_name("bioimageio")
    done = _run(
        [str(bioimageio), "test", str(package), "--weight-format", "all"],
        cwd=package.parent,
        timeout=1800,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    for fmt in ("pytorch_state_dict", "torchscript"):
        assert f"Reproduce test outputs from test inputs ({fmt})" in output
    assert "No module named" not in output


def test_bioimageio_core_predicts_what_decrappify_predicts(consumer, package, tmp_path):
    from _export_model import NORM
    from decrappify.api import iter_predict_image
    from decrappify.events import run_to_end
    from decrappify.normalize import percentile_range
    from decrappify.sample import synthetic_image

    lr = np.asarray(synthetic_image("em", (256, 256), seed=5).data)[::2, ::2]
    np.save(tmp_path / "lr.npy", lr.astype(np.float32))
    # bioimageio.core blockwise (the percentiles of the whole image, then blocks padded by
    # the halo): one block covering the image, and small tiles; and the whole image at once
    script = textwrap.dedent(
        f"""
        import numpy as np
        from bioimageio.core import load_model_description, predict
        lr = np.load("lr.npy")[None, None]
        model = load_model_description({str(package)!r})
        step = model.inputs[0].axes[2].size.step
        for name, n in (("one_block", 128 // step - 1), ("tiles", 1), ("whole", None)):
            sample = predict(model=model, inputs=lr, blocksize_parameter=n)
            out = next(iter(sample.members.values())).data.to_numpy()
            np.save(name + ".npy", out[0, 0])
        """
    )
    done = _run([str(consumer), "-c", script], cwd=tmp_path, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    model = package.parent / "em_x2_1f"
    result = run_to_end(iter_predict_image(model, lr, None, {"dtype": "float32", "device": "cpu"}))
    lo, hi = percentile_range(lr, NORM.low, NORM.high)
    ours = (np.asarray(result.image.data, dtype=np.float64) - lo) / (hi - lo)
    tolerance = 1e-3 * float(ours.max() - ours.min())
    for name in ("one_block", "tiles"):
        theirs = np.load(tmp_path / f"{name}.npy")
        assert ours.shape == theirs.shape == (256, 256)
        difference = np.abs(ours - theirs)
        # everywhere, the outermost rows and columns included
        assert difference.max() <= tolerance, (name, difference.max(), tolerance)
    # the whole image at once: bioimageio.core takes the percentiles of the image padded
    # by the halo, so it is off by the shift of the percentiles, no more
    whole = np.load(tmp_path / "whole.npy")
    assert np.abs(ours - whole).max() <= 0.05 * float(ours.max() - ours.min())
