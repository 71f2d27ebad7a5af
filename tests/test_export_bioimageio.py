"""decrappify export --bioimageio: a BioImage Model Zoo package that bioimageio.core validates,
runs and finds equal to decrappify's own prediction."""

from __future__ import annotations

import ast
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

from _export_model import NAF, NORM, SMALL, saved_model
from decrappify.api import export_bioimageio
from decrappify.cli import app
from decrappify.config.model import GeneratorConfig, ModelInfo
from decrappify.errors import InputError
from decrappify.events import run_to_end
from decrappify.export import parse_people, parse_weight_formats
from decrappify.export.rdf import Geometry, PackageFiles, People, local_names, rdf_content
from decrappify.export.tensors import TEST_SIDE
from decrappify.export.weights import weights_entries
from decrappify.models import build_generator, save_model
from decrappify.normalize import normalize, percentile_range
from decrappify.sample import synthetic_image

pytest.importorskip("bioimageio.core")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

runner = CliRunner()


@pytest.fixture(scope="module", params=["resnet", "naf"])
def model(request, tmp_path_factory) -> Path:
    """A x2 model of each generator family (``"naf"``, the default, and ``"resnet"``)."""
    arch = NAF if request.param == "naf" else {}
    return saved_model(tmp_path_factory.mktemp(f"models_{request.param}"), scale=2, **arch)


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
    from decrappify.export import measure_geometry

    side = measure_geometry(model).min_side
    small = tmp_path / "small.tif"
    noise = np.random.default_rng(0).integers(0, 4000, (side - 1, side + 200), np.uint16)
    tifffile.imwrite(small, noise)
    with pytest.raises(
        InputError, match=rf"small.tif: --test-image must be at least {side}x{side} pixels"
    ):
        export_bioimageio(model, tmp_path / "a.zip", test_image=small, test=False)
    # bioimage.io refuses test tensors without structure: said before anything is run
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.full((side + 4, side + 4), 7, np.uint16))
    with pytest.raises(InputError, match=r"flat.tif: --test-image is constant \(7\) in its"):
        export_bioimageio(model, tmp_path / "a.zip", test_image=flat, test=False)
    model_25d = saved_model(tmp_path, scale=2, n_frames=3)
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
    files = PackageFiles(digests)
    geometry = Geometry.from_radius(scale=3, n_frames=3, step=32, radius=10)
    assert (geometry.halo_lr, geometry.halo, geometry.min_side) == (32, 96, 96)
    content = rdf_content(
        info=info,
        name="decrappify x3 test",
        description="test",
        people=parse_people(["Ada Lovelace"], ["Ada Lovelace"], ["ada-l"]),
        files=files,
        geometry=geometry,
        weights=weights_entries(("pytorch_state_dict", "torchscript"), files, "2.13.0"),
        parameter_count=10,
        test_source="zeros",
        format_version=ModelDescr.implemented_format_version,
    )
    # bioimageio.spec looks GitHub users up online: the structure only, no I/O here
    context = ValidationContext(
        root=tmp_path, file_name="rdf.yaml", log_warnings=False, perform_io_checks=False
    )
    descr = build_description(content, context=context)
    assert isinstance(descr, ModelDescr), descr.validation_summary.format()
    scale_range = descr.inputs[0].preprocessing[1]
    assert scale_range.id == "scale_range"
    assert (scale_range.kwargs.min_percentile, scale_range.kwargs.max_percentile) == (1.0, 99.5)
    assert [str(a) for a in scale_range.kwargs.axes] == ["channel", "y", "x"]  # 2.5D: joint
    assert descr.inputs[0].axes[1].channel_names == ["z-1", "z+0", "z+1"]
    assert descr.inputs[0].pad.mode == "reflect"  # as decrappify extends images
    # the output axes say x3: size = input size * input scale / output scale
    sizes = descr.get_axis_sizes({(descr.inputs[0].id, a): 1 for a in ("y", "x")}, batch_size=1)
    assert sizes.inputs[("input", "y")] == 128
    assert sizes.outputs[("output", "y")] == 384
    assert descr.outputs[0].axes[2].halo == 96
    assert descr.weights.torchscript.parent == "pytorch_state_dict"
    assert [(m.name, m.github_user) for m in descr.maintainers] == [("Ada Lovelace", "ada-l")]


def test_geometry_halo_covers_the_radius_and_keeps_valid_images_valid():
    for scale, step in ((1, 32), (2, 16), (4, 8)):
        for radius in (1, 7, 68, 100):
            g = Geometry.from_radius(scale, 1, step, radius)
            # on the network's grid (as decrappify's windows), the least that covers it
            assert g.halo_lr >= radius and g.halo_lr % step == 0
            assert g.halo_lr - radius < step
            # an image of n steps padded by the halo is a valid network input
            assert (128 + 2 * g.halo_lr - g.min_side) % step == 0
            assert g.min_side > 2 * g.halo_lr and g.halo == g.halo_lr * scale


def test_local_paths_are_reduced_to_names():
    value = {
        "images": ["/home/ada/data/hr/cells_01.tif", "C:\\Users\\ada\\b.tif", "~/c.tif"],
        "nested": {"weights": "/opt/w/resnet18.pth", "url": "https://example.org/a/b"},
        "name": "em_x4",
        "ratio": 0.5,
    }
    assert local_names(value) == {
        "images": ["cells_01.tif", "b.tif", "c.tif"],
        "nested": {"weights": "resnet18.pth", "url": "https://example.org/a/b"},
        "name": "em_x4",
        "ratio": 0.5,
    }


def test_people_and_citations_are_checked():
    people = parse_people(
        ["Ada Lovelace"],
        github_users=["@ada-l", "bob"],
        cite=["Doe J. A paper. 2026 10.1234/abc.", "Our site https://example.org/m"],
        license="MIT",
    )
    assert people.maintainers == [(None, "ada-l"), (None, "bob")]
    assert people.cite == [
        {"text": "Doe J. A paper. 2026", "doi": "10.1234/abc"},
        {"text": "Our site", "url": "https://example.org/m"},
    ]
    assert people == People(["Ada Lovelace"], people.maintainers, people.cite, "MIT")
    with pytest.raises(InputError, match="one --github-user per --maintainer"):
        parse_people(maintainers=["Ada"], github_users=[])
    with pytest.raises(InputError, match="--github-user: 'a b' is not a GitHub user name"):
        parse_people(github_users=["a b"])
    with pytest.raises(InputError, match="--cite: expected the citation's text followed by"):
        parse_people(cite=["just a title"])


def test_a_broken_spec_and_pydantic_pair_is_refused_with_the_fix(monkeypatch):
    from decrappify.export import package

    versions = {"bioimageio.spec": "0.5.12.0", "pydantic": "2.14.4"}
    monkeypatch.setattr(package.metadata, "version", versions.__getitem__)
    with pytest.raises(InputError, match=r"pip install 'pydantic<2.14'"):
        package.check_versions()
    versions["bioimageio.spec"] = "0.5.14.3"
    package.check_versions()
    versions.update({"bioimageio.spec": "0.5.12.0", "pydantic": "2.12.5"})
    package.check_versions()


# --------------------------------------------------------------------------- the package


@pytest.fixture(scope="module")
def package(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("bioimageio") / "em_x2.zip"
    torch_state = torch.random.get_rng_state()
    args = ["export", str(model), "--bioimageio", str(out), "--author", "Ada Lovelace", "-q"]
    args += ["--cite", "Lovelace A. Our microscope. 2026 10.1234/ours", "--license", "MIT"]
    result = runner.invoke(app, args)
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
    from decrappify.export import measure_geometry

    out, _ = package
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        text = z.read("rdf.yaml").decode()
        test_input = np.load(z.open("test_input.npy"))
        test_output = np.load(z.open("test_output.npy"))
        readme = z.read("README.md").decode()
        environment = yaml.safe_load(z.read("environment.yaml"))
    rdf = yaml.safe_load(text)
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
    assert "maintainers" not in rdf  # without --github-user (checked online by the spec)
    assert rdf["license"] == "MIT"
    assert rdf["cite"][0] == {"text": "Lovelace A. Our microscope. 2026", "doi": "10.1234/ours"}
    assert {c.get("doi") for c in rdf["cite"]} >= {"10.1038/s41592-021-01080-z"}
    assert any("fast.ai" in c["text"] for c in rdf["cite"])
    # the halo is the measured receptive field, rounded so valid images stay valid
    g = measure_geometry(model)  # the radius the export measured, cached beside the model
    assert g.halo_lr >= g.radius == rdf["config"]["decrappify"]["receptive_field_radius"]
    # valid sides are those the network takes without padding: both families are U-Nets
    # on the LR grid that halve it `levels` times (resnet: encoder_depth + 1; naf: blocks)
    cfg = GeneratorConfig(**json.loads((model / "model.json").read_text())["generator"])
    assert g.step == 2**cfg.levels == {"resnet": 8, "naf": 4}[cfg.arch.value]
    y_in, y_out = rdf["inputs"][0]["axes"][2], rdf["outputs"][0]["axes"][2]
    assert y_in["size"] == {"min": g.min_side, "step": g.step} and g.min_side > 2 * g.halo_lr
    assert rdf["inputs"][0]["pad"] == {"mode": "reflect"}
    # x2: the output axes are half the input's pixel size and reference its sizes
    assert y_out["scale"] == 0.5 and y_out["size"] == {"tensor_id": "input", "axis_id": "y"}
    assert y_out["halo"] == 2 * g.halo_lr
    # the test input is the largest valid side up to TEST_SIDE (or the smallest valid one)
    side = max(g.min_side, g.min_side + (TEST_SIDE - g.min_side) // g.step * g.step)
    assert side == {"resnet": 152, "naf": 64}[cfg.arch.value]
    assert test_input.shape == (1, 1, side, side) and test_output.shape == (
        1,
        1,
        2 * side,
        2 * side,
    )
    # the preprocessing is the model's own percentile normalisation
    kwargs = rdf["inputs"][0]["preprocessing"][1]["kwargs"]
    assert (kwargs["min_percentile"], kwargs["max_percentile"]) == (NORM.low, NORM.high)
    # the training metadata travels whole, with local paths reduced to file names
    saved = json.loads((model / "model.json").read_text())
    assert rdf["config"]["decrappify"]["generator"] == saved["generator"]
    assert rdf["config"]["decrappify"]["crappify"]["name"] == "em"
    assert rdf["config"]["decrappify"]["training"]["data"]["images"] == ["cells_01.tif"]
    assert "/home/" not in text and str(model.parent) not in text
    # the state dict needs PyTorch only: a generated architecture and an environment
    # with python and pytorch
    architecture = rdf["weights"]["pytorch_state_dict"]["architecture"]
    assert architecture["callable"] == "DecrappifyNet" and architecture["kwargs"] == {}
    assert [d.split(">=")[0] for d in environment["dependencies"]] == ["python", "pytorch"]
    assert "## Validation" in readme and "PSSR" in readme and "receptive-field" in readme


@pytest.mark.slow
def test_the_architecture_needs_only_torch(package, model, tmp_path):
    from decrappify.export import measure_geometry
    from decrappify.models import load_model

    out, _ = package
    with zipfile.ZipFile(out) as z:
        z.extract("architecture.py", tmp_path)
        z.extract("weights.pt", tmp_path)
    source = (tmp_path / "architecture.py").read_text()
    imports = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module)])
    }
    assert imports == {"torch"}
    # built where decrappify cannot be imported, it computes what the network computes on
    # the sizes the package declares (min + n * step, here n = 1 and 2, batch 2), and
    # refuses others with the rule
    g = measure_geometry(model)
    shape = (2, 1, g.min_side + g.step, g.min_side + 2 * g.step)
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    script = (
        "import sys; sys.modules['decrappify'] = None\n"
        "import importlib.util, numpy as np, torch\n"
        "spec = importlib.util.spec_from_file_location('arch', 'architecture.py')\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "net = m.DecrappifyNet()\n"
        "net.load_state_dict(torch.load('weights.pt', weights_only=True), strict=True)\n"
        "y = net(torch.from_numpy(np.load('x.npy')))\n"
        "np.save('y.npy', y.detach().numpy())\n"
        "net(torch.zeros(1, 1, m.MIN_SIDE, m.MIN_SIDE + 1))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    side = g.min_side
    rule = f"input sides must be {side} + n * {g.step} pixels, got {side} x {side + 1}"
    assert done.returncode == 1 and f"ValueError: {rule}" in done.stderr, done.stderr[-2000:]
    with torch.no_grad():
        expected = load_model(model).net(torch.from_numpy(x)).numpy()
    assert expected.shape == (2, 1, 2 * shape[2], 2 * shape[3])
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_bioimageio_predicts_what_decrappify_predicts(package, model):
    from bioimageio.core import Tensor, load_model_description, predict

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
    # on a new 256 x 256 image, bioimageio.core in tiles (the percentiles of the whole
    # image, then each block padded by the halo, by reflection at the image's borders) and
    # decrappify's tiled predictor (context reflected) agree within 1e-3 of the range,
    # borders included (measured: 4.9e-4 for resnet, 2.4e-4 for naf; docs/bioimageio.md).
    # Named axes: from a bare array bioimageio.core 0.11 refuses an image smaller than
    # the network's minimum, which counts the halo.
    lr = np.asarray(synthetic_image("em", (512, 512), seed=4).data)[::2, ::2]
    lr = lr.astype(np.float32)
    image = Tensor.from_numpy(lr[None, None], dims=("batch", "channel", "y", "x"))
    sample = predict(
        model=load_model_description(out), inputs={"input": image}, blocksize_parameter=4
    )
    theirs = next(iter(sample.members.values())).data.to_numpy()[0, 0]
    result = run_to_end(iter_predict_image(model, lr, None, {"dtype": "float32", "device": "cpu"}))
    lo, hi = percentile_range(lr, NORM.low, NORM.high)
    ours = (np.asarray(result.image.data, dtype=np.float64) - lo) / (hi - lo)
    assert ours.shape == theirs.shape == (512, 512)
    difference = np.abs(ours - theirs)
    assert difference.max() <= 1e-3 * (ours.max() - ours.min()), difference.max()


@pytest.mark.slow
def test_the_test_tensors_come_from_a_given_image(model, tmp_path):
    stack = np.asarray(synthetic_image("em", (3, 300, 290), seed=2).data)
    path = tmp_path / "lr.tif"
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "ZYX"})
    result = export_bioimageio(
        model, tmp_path / "m.zip", test_image=path, weights="torchscript", test=False
    )
    size = result.rdf["inputs"][0]["axes"][2]["size"]
    assert result.status is None
    with zipfile.ZipFile(result.path) as z:
        test_input = np.load(z.open("test_input.npy"))
        assert "weights.pt" not in z.namelist()
    # the middle plane, centrally cropped to the largest valid size up to TEST_SIDE (or
    # the smallest valid one, when that is larger)
    side = max(size["min"], size["min"] + (TEST_SIDE - size["min"]) // size["step"] * size["step"])
    assert result.test_source == f"the central {side}x{side} crop of lr.tif"
    y0, x0 = (300 - side) // 2, (290 - side) // 2
    expected = stack[1, y0 : y0 + side, x0 : x0 + side].astype(np.float32)
    np.testing.assert_array_equal(test_input[0, 0], expected)
