"""decrappify export --bioimageio: a BioImage Model Zoo package that bioimageio.core validates,
runs and finds equal to decrappify's own prediction."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml
from typer.testing import CliRunner

from decrappify.api._bioimageio_rdf import Geometry, PackageFiles, rdf_content
from decrappify.api.export import export_bioimageio, parse_weight_formats
from decrappify.cli import app
from decrappify.config.model import GeneratorConfig, ModelInfo
from decrappify.config.normalization import NormalizationConfig
from decrappify.crappify import get_preset
from decrappify.errors import InputError
from decrappify.events import run_to_end
from decrappify.models import build_generator, save_model
from decrappify.normalize import normalize, percentile_range
from decrappify.sample import synthetic_image

pytest.importorskip("bioimageio.core")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

runner = CliRunner()
SMALL = {"encoder": "resnet18", "nf_factor": 0.25, "blocks_per_stage": 1}
NORM = NormalizationConfig(low=1.0, high=99.5)


def _saved_model(folder: Path, **generator) -> Path:
    cfg = GeneratorConfig(**{**SMALL, **generator})
    net = build_generator(cfg, seed=0)
    net.train()  # move the BatchNorm statistics away from their initial values
    with torch.no_grad():
        for _ in range(2):
            net(torch.rand(2, cfg.n_frames, 16, 16))
    info = ModelInfo(
        generator=cfg,
        normalization=NORM,
        crappify=get_preset("em").with_scale(cfg.scale).model_dump(mode="json"),
        training={"recipe": "NoGAN", "steps": {"pretrain": 2}, "seconds": 3.5},
        metrics={"psnr_norm": 27.5},
        description="unit test model",
    )
    return save_model(folder / f"em_x{cfg.scale}_{cfg.n_frames}f", net.eval(), info)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return _saved_model(tmp_path_factory.mktemp("models"), scale=2)


# --------------------------------------------------------------------------- fast checks


def test_weight_formats_are_parsed_and_checked():
    assert parse_weight_formats("torchscript") == ("torchscript",)
    assert parse_weight_formats("torchscript, pytorch_state_dict") == (
        "pytorch_state_dict",
        "torchscript",
    )
    with pytest.raises(InputError, match="--weights: expected one or more of"):
        parse_weight_formats("onnx")


def test_export_refuses_to_replace_a_package_or_write_a_non_zip(model, tmp_path):
    existing = tmp_path / "old.zip"
    existing.write_bytes(b"keep me")
    result = runner.invoke(app, ["export", str(model), "--bioimageio", str(existing)])
    assert result.exit_code == 1
    assert "already exists; pass --overwrite" in result.output
    assert existing.read_bytes() == b"keep me"
    result = runner.invoke(app, ["export", str(model), "--bioimageio", str(tmp_path / "m.tar")])
    assert result.exit_code == 1
    assert "expected a .zip file name" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.zip"]


def test_test_images_that_do_not_fit_the_model_are_refused(model, tmp_path):
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, np.zeros((30, 200), np.uint16))
    with pytest.raises(InputError, match=r"small.tif: --test-image must be at least 64x64"):
        export_bioimageio(model, tmp_path / "a.zip", test_image=small, test=False)
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.zeros((64, 64), np.uint16))
    model_25d = _saved_model(tmp_path, scale=2, n_frames=3)
    with pytest.raises(InputError, match=r"flat.tif: the model takes 3 neighbouring planes"):
        export_bioimageio(model_25d, tmp_path / "b.zip", test_image=flat, test=False)
    assert not list(tmp_path.glob("*.zip")) and not list(tmp_path.glob(".*"))


def test_a_model_without_crappifier_needs_a_test_image(tmp_path):
    cfg = GeneratorConfig(**SMALL, scale=2)
    path = save_model(
        tmp_path / "paired", build_generator(cfg, seed=0).eval(), ModelInfo(generator=cfg)
    )
    with pytest.raises(InputError, match="records no crappifier.*pass a low-resolution image"):
        export_bioimageio(path, tmp_path / "p.zip", test=False)


def test_the_description_is_valid_bioimageio_model_spec(tmp_path):
    # the rdf alone, over placeholder files: the spec validator checks axes, sizes,
    # preprocessing, references and digests without loading any weights
    from bioimageio.spec import ValidationContext, build_description
    from bioimageio.spec.model.v0_5 import ModelDescr

    names = ["README.md", "cover.png", "test_input.npy", "test_output.npy", "weights.pt"]
    names += ["architecture.py", "environment.yaml", "weights_torchscript.pt"]
    names += ["sample_input.tif", "sample_output.tif"]
    for name in names:
        (tmp_path / name).write_bytes(b"placeholder")
    rng = np.random.default_rng(0)
    test_input = rng.random((1, 3, 64, 96), dtype=np.float32)
    test_output = rng.random((1, 1, 192, 288), dtype=np.float32)
    np.save(tmp_path / "test_input.npy", test_input)
    np.save(tmp_path / "test_output.npy", test_output)
    tifffile.imwrite(tmp_path / "sample_input.tif", test_input[0], photometric="minisblack")
    tifffile.imwrite(tmp_path / "sample_output.tif", test_output[0, 0])
    (tmp_path / "README.md").write_text("# m\n\n## Validation\n\nnone\n")
    (tmp_path / "architecture.py").write_text("def decrappify_generator(**kw):\n    pass\n")
    info = ModelInfo(generator=GeneratorConfig(scale=3, n_frames=3), normalization=NORM)
    digests = {n: hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in names}
    content = rdf_content(
        info=info,
        name="decrappify x3 test",
        description="test",
        authors=["Ada Lovelace"],
        license="CC-BY-4.0",
        files=PackageFiles(digests),
        geometry=Geometry(scale=3, n_frames=3, min_side=64, step=32, halo=48),
        weight_formats=("pytorch_state_dict", "torchscript"),
        torch_version="2.13.0",
        parameter_count=10,
        test_source="zeros",
        format_version=ModelDescr.implemented_format_version,
    )
    context = ValidationContext(root=tmp_path, file_name="rdf.yaml", log_warnings=False)
    descr = build_description(content, context=context)
    assert isinstance(descr, ModelDescr), descr.validation_summary.format()
    scale_range = descr.inputs[0].preprocessing[1]
    assert scale_range.id == "scale_range"
    assert (scale_range.kwargs.min_percentile, scale_range.kwargs.max_percentile) == (1.0, 99.5)
    assert [str(a) for a in scale_range.kwargs.axes] == ["channel", "y", "x"]  # 2.5D: joint
    assert descr.inputs[0].axes[1].channel_names == ["z-1", "z+0", "z+1"]
    # the output axes say x3: size = input size * input scale / output scale
    sizes = descr.get_axis_sizes({(descr.inputs[0].id, a): 1 for a in ("y", "x")}, batch_size=1)
    assert sizes.inputs[("input", "y")] == 96
    assert sizes.outputs[("output", "y")] == 288
    assert descr.weights.torchscript.parent == "pytorch_state_dict"


# --------------------------------------------------------------------------- the package


@pytest.fixture(scope="module")
def package(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("bioimageio") / "em_x2.zip"
    torch_state = torch.random.get_rng_state()
    result = runner.invoke(
        app,
        ["export", str(model), "--bioimageio", str(out), "--author", "Ada Lovelace", "-q"],
    )
    assert result.exit_code == 0, result.output
    # bioimageio.core seeds torch's global generator for its test: the caller's is kept
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    return out, result.output


@pytest.mark.slow
def test_the_package_passes_bioimageio_tests(package):
    out, output = package
    # bioimageio.core reproduced the test output with both weight formats and ran them on
    # other sizes and batch sizes; the CLI prints each check
    for fmt in ("pytorch_state_dict", "torchscript"):
        assert f"Reproduce test outputs from test inputs ({fmt})" in output
    assert "failed" not in output
    assert f"wrote {out} (bioimageio test passed" in " ".join(output.split())


@pytest.mark.slow
def test_the_package_holds_what_bioimageio_needs(package, model):
    out, _ = package
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        rdf = yaml.safe_load(z.read("rdf.yaml"))
        test_input = np.load(z.open("test_input.npy"))
        test_output = np.load(z.open("test_output.npy"))
        readme = z.read("README.md").decode()
    assert names == {
        "rdf.yaml",
        "README.md",
        "cover.png",
        "test_input.npy",
        "test_output.npy",
        "weights.pt",
        "weights_torchscript.pt",
        "architecture.py",
        "environment.yaml",
        "sample_input.tif",
        "sample_output.tif",
    }
    assert rdf["type"] == "model" and rdf["format_version"].startswith("0.5.")
    assert rdf["authors"] == [{"name": "Ada Lovelace"}]
    assert {c.get("doi") for c in rdf["cite"]} >= {"10.1038/s41592-021-01080-z"}
    assert any("fast.ai" in c["text"] for c in rdf["cite"])
    # x2: the output axes are half the input's pixel size and reference its sizes
    y_out = rdf["outputs"][0]["axes"][2]
    assert y_out["scale"] == 0.5 and y_out["size"] == {"tensor_id": "input", "axis_id": "y"}
    assert rdf["inputs"][0]["axes"][2]["size"] == {"min": 64, "step": 32}
    assert test_input.shape == (1, 1, 64, 64) and test_output.shape == (1, 1, 128, 128)
    # the preprocessing is the model's own percentile normalisation
    kwargs = rdf["inputs"][0]["preprocessing"][1]["kwargs"]
    assert (kwargs["min_percentile"], kwargs["max_percentile"]) == (NORM.low, NORM.high)
    # the training metadata travels whole
    saved = json.loads((model / "model.json").read_text())
    assert rdf["config"]["decrappify"]["generator"] == saved["generator"]
    assert rdf["config"]["decrappify"]["crappify"]["name"] == "em"
    assert rdf["weights"]["pytorch_state_dict"]["architecture"]["kwargs"] == saved["generator"]
    assert "## Validation" in readme and "PSSR" in readme


@pytest.mark.slow
def test_bioimageio_predicts_what_decrappify_predicts(package, model):
    from bioimageio.core import load_model_description, predict

    from decrappify.api import iter_predict_image
    from decrappify.models import load_model

    out, _ = package
    net = load_model(model).net
    # the expected test output (what `bioimageio test` reproduced) is the network's output
    # on the test input normalised as decrappify normalises it
    with zipfile.ZipFile(out) as z:
        test_input = np.load(z.open("test_input.npy"))
        test_output = np.load(z.open("test_output.npy"))
    lo, hi = percentile_range(test_input, NORM.low, NORM.high)
    with torch.no_grad():
        direct = net(torch.from_numpy(normalize(test_input, lo, hi))).numpy()
    np.testing.assert_allclose(test_output, direct, rtol=0, atol=1e-6)
    # on a new image, bioimageio.core (context padded by the halo, symmetric) and
    # decrappify's tiled predictor (context reflected) agree
    lr = np.asarray(synthetic_image("em", (192, 128), seed=4).data)[::2, ::2]  # 96 x 64 LR
    sample = predict(model=load_model_description(out), inputs=lr[None, None].astype(np.float32))
    theirs = next(iter(sample.members.values())).data.to_numpy()[0, 0]
    result = run_to_end(iter_predict_image(model, lr, None, {"dtype": "float32", "device": "cpu"}))
    lo, hi = percentile_range(lr, NORM.low, NORM.high)
    ours = (np.asarray(result.image.data) - lo) / (hi - lo)
    assert ours.shape == theirs.shape == (192, 128)
    assert 10 * np.log10(1.0 / np.mean((ours - theirs) ** 2)) > 40.0


@pytest.mark.slow
def test_the_bioimageio_command_line_passes_the_package(package):
    out, _ = package
    bioimageio = Path(sys.executable).with_name("bioimageio")
    done = subprocess.run(
        [str(bioimageio), "test", str(out), "--weight-format", "torchscript"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.mark.slow
def test_the_test_tensors_come_from_a_given_image(model, tmp_path):
    stack = np.asarray(synthetic_image("em", (3, 100, 90), seed=2).data)
    path = tmp_path / "lr.tif"
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "ZYX"})
    result = export_bioimageio(
        model, tmp_path / "m.zip", test_image=path, weights="torchscript", test=False
    )
    assert result.status is None and result.test_source == "the central 64x64 crop of lr.tif"
    with zipfile.ZipFile(result.path) as z:
        test_input = np.load(z.open("test_input.npy"))
        assert "weights.pt" not in z.namelist()
    # the middle plane, centrally cropped to a valid size (48 + n * 16) of at most 64
    np.testing.assert_array_equal(test_input[0, 0], stack[1, 18:82, 13:77].astype(np.float32))
