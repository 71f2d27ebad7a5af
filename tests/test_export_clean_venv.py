"""A bioimage.io package runs where decrappify is not installed, and predicts what it predicts.

A fresh virtual environment gets only PyTorch and bioimageio.core from the package index
(``pip install torch==2.13.0 bioimageio.core 'pydantic<2.14'``: torch named so pip takes
the CPU build, pydantic capped because bioimageio.core 0.11 pins a bioimageio.spec that
rejects every model with pydantic 2.14). There ``bioimageio test --weight-format all``
must pass on an exported package, and ``bioimageio.core``'s prediction must equal
``decrappify predict``'s within 1e-3 of its range, borders included: blockwise, and on a
128² image in blocks where they fit in it (``naf``) or whole (``resnet``, whose smallest
block is larger). Its whole-image mode takes the percentiles of the halo-padded image,
which moves the ``naf`` model's output (bounded, not equal).
"""

from __future__ import annotations

import json
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


@pytest.fixture(scope="module", params=["resnet", "naf"])
def package(request, tmp_path_factory) -> Path:
    """A package of a x2 model of each generator family (``"naf"`` is the default)."""
    from _export_model import NAF, saved_model
    from decrappify.api import export_bioimageio

    folder = tmp_path_factory.mktemp(f"clean_export_{request.param}")
    model = saved_model(folder, scale=2, **(NAF if request.param == "naf" else {}))
    result = export_bioimageio(
        model, folder / "em_x2.zip", authors=["Ada Lovelace"], cite=[CITE], test=False
    )
    return result.path


def test_bioimageio_test_passes_without_decrappify(consumer, package, tmp_path):
    bioimageio = consumer.with_name("bioimageio")
    summary = tmp_path / "summary.json"
    args = [str(bioimageio), "test", str(package), "--weight-format", "all"]
    done = _run(
        [*args, "--summary", "display", "--summary", str(summary)],
        cwd=package.parent,
        timeout=1800,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "No module named" not in output
    # each weight format reproduced the test output and ran on other sizes and batches.
    # Read from the summary file: the displayed table wraps its cells at the terminal's
    # width (80 columns when piped), splitting the check names over two lines.
    report = json.loads(summary.read_text())
    checks = {(d["name"], tuple(d["loc"])): d["status"] for d in report["details"]}
    assert report["status"] == "passed" and set(checks.values()) == {"passed"}, checks
    for fmt in ("pytorch_state_dict", "torchscript"):
        reproduce = f"Reproduce test outputs from test inputs ({fmt})"
        assert checks[(reproduce, ("weights", fmt))] == "passed"
        runs = [name for name, loc in checks if loc == ("weights", fmt)]
        assert sum(name.startswith(f"Run {fmt} inference") for name in runs) >= 4, runs


def test_bioimageio_core_predicts_what_decrappify_predicts(consumer, package, tmp_path):
    from _export_model import NORM
    from decrappify.api import iter_predict_image
    from decrappify.events import run_to_end
    from decrappify.normalize import percentile_range
    from decrappify.sample import synthetic_image

    images = {
        side: np.asarray(synthetic_image("em", (2 * side, 2 * side), seed=5).data)[::2, ::2]
        for side in (128, 256)
    }
    for side, lr in images.items():
        np.save(tmp_path / f"lr{side}.npy", lr.astype(np.float32))
    # bioimageio.core blockwise: the percentiles of the whole image, then blocks padded by
    # the halo (blocks must fit in the image: the 256 x 256 one, and the 128 x 128 one for
    # the small halo of naf); and the whole 128 x 128 image at once. Named axes: from a
    # bare array bioimageio.core 0.11 refuses an image smaller than the network's minimum,
    # which includes the halo it pads.
    script = textwrap.dedent(
        f"""
        import numpy as np
        from bioimageio.core import Tensor, load_model_description, predict
        model = load_model_description({str(package)!r})
        size = model.inputs[0].axes[2].size
        dims = ("batch", "channel", "y", "x")
        runs = [
            ("tiles", 256, 4), ("blocks", 256, (256 - size.min) // size.step), ("whole", 128, None)
        ]
        if size.min + size.step <= 128:  # the smallest block but one fits in the small image
            runs.append(("blocks128", 128, 1))
        for name, side, n in runs:
            image = Tensor.from_numpy(np.load(f"lr{{side}}.npy")[None, None], dims=dims)
            sample = predict(model=model, inputs={{"input": image}}, blocksize_parameter=n)
            out = next(iter(sample.members.values())).data.to_numpy()
            np.save(name + ".npy", out[0, 0])
        """
    )
    done = _run([str(consumer), "-c", script], cwd=tmp_path, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    model = package.parent / "em_x2_1f"  # the model the package was exported from
    arch = json.loads((model / "model.json").read_text())["generator"]["arch"]
    # measured: tiles, blocks 2.6e-4, 7.4e-5 (naf) and 5.4e-4, 5.9e-4 (resnet); 128²: naf in
    # blocks 2.4e-4, resnet whole 3.1e-4; naf whole 7.4e-3 (the percentiles of the padded
    # image bioimageio.core takes)
    bounds = {"tiles": 1e-3, "blocks": 1e-3, "blocks128": 1e-3}
    bounds["whole"] = 1e-3 if arch == "resnet" else 1e-2
    if arch == "naf":
        assert (tmp_path / "blocks128.npy").exists()
    for name, bound in bounds.items():
        if not (tmp_path / f"{name}.npy").exists():
            continue
        side = 128 if name in ("whole", "blocks128") else 256
        lr = images[side]
        settings = {"dtype": "float32", "device": "cpu"}
        result = run_to_end(iter_predict_image(model, lr, None, settings))
        lo, hi = percentile_range(lr, NORM.low, NORM.high)
        ours = (np.asarray(result.image.data, dtype=np.float64) - lo) / (hi - lo)
        theirs = np.load(tmp_path / f"{name}.npy")
        assert ours.shape == theirs.shape == (2 * side, 2 * side)
        # everywhere, the outermost rows and columns included
        difference = np.abs(ours - theirs).max()
        assert difference <= bound * float(ours.max() - ours.min()), (name, difference)
