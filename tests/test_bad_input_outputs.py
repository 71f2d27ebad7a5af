"""Outputs that would replace an input or each other are refused before any work (issue 20).

Each test is one case of the issue's sweep (its item number in the name's docstring): the
command must refuse with one line naming the files, exit 1, leave the inputs untouched,
and never suggest ``--overwrite`` where that would make one input replace another.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from _tiny import FAST, em_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A ×2 model folder whose metadata records the em crappifier at ×2."""
    return em_model(tmp_path_factory.mktemp("models"))


def _snapshot(bad, *names):
    return {name: bad.path(name).read_bytes() for name in names}


def test_same_stem_in_two_folders_is_refused_without_suggesting_overwrite(bad, model):
    """Item 3: d1/x.tif and d2/x.tif both went to out/x.zarr, both "ok"."""
    bad.path("d1").mkdir()
    bad.path("d2").mkdir()
    bad.tif("d1/x.tif", seed=1)
    bad.tif("d2/x.tif", seed=2)
    for command in (
        ["predict", model, "d1/x.tif", "d2/x.tif", "-o", "out", "--overwrite", *FAST],
        ["predict", model, "d1/x.tif", "d2/x.tif", "-o", "out", "--resume", *FAST],
        ["crappify", "d1/x.tif", "d2/x.tif", "-o", "out", "--overwrite", "-q"],
    ):
        result = bad.run(*command)
        text = bad.assert_clean_failure(
            result,
            "out/x",
            "the output of d1/x.tif and the output of d2/x.tif would both be written here",
        )
        assert "--overwrite" not in text.split("error:")[1]
        assert not bad.path("out").exists()


def test_names_that_differ_only_by_their_ending_are_one_output(bad, model):
    """Item 3: x.tif, x.ome.tif and x.zarr in one folder."""
    bad.tif("x.tif")
    bad.tif("x.ome.tif", seed=1)
    bad.zarr("x.zarr", seed=2)
    result = bad.run("predict", model, "x.tif", "x.ome.tif", "x.zarr", "-o", "out", *FAST)
    bad.assert_clean_failure(result, "the output of x.tif and the output of x.ome.tif")
    assert not bad.path("out").exists()


def test_an_input_named_like_another_inputs_trust_map_is_refused(bad, model):
    """Item 3: x.consistency.tif's prediction replaced x.tif's consistency map."""
    bad.tif("x.tif")
    bad.tif("x.consistency.tif", seed=1)
    before = _snapshot(bad, "x.tif", "x.consistency.tif")
    result = bad.run(
        "predict", model, "x.tif", "x.consistency.tif", "-o", "out", "-f", "tif", "--overwrite",
        *FAST,
    )  # fmt: skip
    bad.assert_clean_failure(
        result,
        "out/x.consistency.tif: the consistency map of x.tif and the output of x.consistency.tif "
        "would both be written here",
    )
    assert _snapshot(bad, "x.tif", "x.consistency.tif") == before


@pytest.mark.parametrize(
    ("where", "shown"),
    [("a.tif", "a.tif"), ("./a.tif", "a.tif"), ("link/a.tif", "link/a.tif"),
     ("x2/model.json", "x2/model.json")],
)  # fmt: skip
def test_a_report_over_an_input_is_refused_before_any_work(bad, model, where, shown):
    """Item 2: predict --report s3/a.tif replaced the input with the JSON report."""
    bad.tif("a.tif")
    bad.path("link").symlink_to(bad.folder)
    (bad.path("x2")).symlink_to(model)
    before = _snapshot(bad, "a.tif")
    result = bad.run("predict", bad.path("x2"), "a.tif", "-o", "out", "--report", where, *FAST)
    bad.assert_clean_failure(result, f"{shown}: the --report")
    assert "--overwrite" not in bad.text_of(result)
    assert _snapshot(bad, "a.tif") == before and not bad.path("out").exists()
    assert json.loads((model / "model.json").read_text())["generator"]["scale"] == 2


def test_a_report_that_is_a_folder_or_someone_elses_file_is_refused_up_front(bad, model):
    """Items 2 and 10: --report <folder> was found out after all predictions had run."""
    bad.tif("a.tif")
    bad.path("reports").mkdir()
    result = bad.run("predict", model, "a.tif", "-o", "out", "--report", "reports", *FAST)
    bad.assert_clean_failure(result, "--report reports: is a folder; give the report's file name")
    bad.path("notes.json").write_text('{"mine": 1}\n')
    result = bad.run("predict", model, "a.tif", "-o", "out", "--report", "notes.json", *FAST)
    bad.assert_clean_failure(result, "--report notes.json: already exists")
    assert bad.path("notes.json").read_text() == '{"mine": 1}\n' and not bad.path("out").exists()
    # a rerun with --resume may replace the report of its first run
    assert (
        bad.run("predict", model, "a.tif", "-o", "out", "--report", "r.json", *FAST).exit_code == 0
    )
    result = bad.run(
        "predict", model, "a.tif", "-o", "out", "--report", "r.json", "--resume", *FAST
    )
    assert result.exit_code == 0, result.output
    assert json.loads(bad.path("r.json").read_text())["results"][0]["info"]["skipped"]


def test_crappify_fit_never_replaces_an_input_or_an_existing_config(bad):
    """Item 2: crappify --fit s2/a.tif --out s2/a.tif replaced the image with the YAML."""
    rng = np.random.default_rng(0)
    noisy = (rng.normal(100, 8, (96, 96))).clip(0, 255).astype(np.uint8)
    bad.tif("a.tif", data=noisy)
    before = _snapshot(bad, "a.tif")
    result = bad.run("crappify", "--fit", "a.tif", "--out", "./a.tif")
    bad.assert_clean_failure(result, "a.tif: the fitted config would overwrite the input a.tif")
    assert _snapshot(bad, "a.tif") == before
    bad.path("fit.yaml").write_text("mine\n")
    result = bad.run("crappify", "--fit", "a.tif", "--out", "fit.yaml")
    bad.assert_clean_failure(result, "fit.yaml: already exists; pass --overwrite to replace it")
    assert bad.path("fit.yaml").read_text() == "mine\n"
    result = bad.run("crappify", "--fit", "a.tif", "--out", "fit.yaml", "--overwrite")
    assert result.exit_code == 0, result.output
    assert "name: fitted" in bad.path("fit.yaml").read_text()


def _pair(bad, name, seed):
    """A ground truth and a perfect prediction of it (SSIM 1 only against each other)."""
    truth = bad.tif(f"gt/{name}.tif", seed=seed)
    tifffile.imwrite(bad.path(f"sr/{name}.tif"), tifffile.imread(truth))


def test_evaluate_pairs_by_name_whatever_the_order(bad):
    """Item 4: --pred a --pred b --gt b --gt a scored a against b, exit 0."""
    bad.path("gt").mkdir()
    bad.path("sr").mkdir()
    _pair(bad, "a", 1)
    _pair(bad, "b", 2)
    result = bad.run(
        "evaluate", "--pred", "sr/a.tif", "--pred", "sr/b.tif", "--gt", "gt/b.tif", "--gt",
        "gt/a.tif", "--json", "m.json", "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(bad.path("m.json").read_text())
    assert doc["a"]["ssim"] == pytest.approx(1.0) and doc["b"]["ssim"] == pytest.approx(1.0)


def test_evaluate_takes_shell_expanded_patterns_and_skips_trust_maps(bad):
    """Items 4 and 14: --pred sr/*.zarr --gt hr/*.tif with several files exited 2."""
    bad.path("gt").mkdir()
    bad.path("sr").mkdir()
    _pair(bad, "a", 1)
    _pair(bad, "b", 2)
    tifffile.imwrite(bad.path("sr/a.consistency.tif"), np.ones((32, 32), np.float32))
    # what a shell makes of: --pred sr/*.tif --gt gt/*.tif
    result = bad.run(
        "evaluate", "--pred", "sr/a.consistency.tif", "sr/a.tif", "sr/b.tif", "--gt", "gt/a.tif",
        "gt/b.tif", "--json", "m.json", "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert list(json.loads(bad.path("m.json").read_text())) == ["a", "b", "mean"]
    result = bad.run("evaluate", "--pred", "sr", "--gt", "gt", "--json", "m.json", "-q")
    assert result.exit_code == 0, result.output  # a rerun replaces its own report
    assert "skipped sr/a.consistency.tif: the consistency map of a.tif" in bad.text_of(result)


def test_evaluate_refuses_names_that_do_not_match_and_reports_over_inputs(bad):
    bad.path("gt").mkdir()
    bad.path("sr").mkdir()
    _pair(bad, "a", 1)
    _pair(bad, "b", 2)
    bad.path("sr/b.tif").rename(bad.path("sr/c.tif"))
    result = bad.run("evaluate", "--pred", "sr", "--gt", "gt", "-q")
    bad.assert_clean_failure(
        result, "--pred and --gt name different images (--pred c.tif; --gt b.tif)"
    )
    before = _snapshot(bad, "gt/a.tif")
    result = bad.run("evaluate", "--pred", "sr/a.tif", "--gt", "gt/a.tif", "--csv", "gt/a.tif")
    bad.assert_clean_failure(result, "gt/a.tif: the --csv report would overwrite the input")
    assert _snapshot(bad, "gt/a.tif") == before
    bad.path("notes.csv").write_text("my,notes\n")
    result = bad.run("evaluate", "--pred", "sr/a.tif", "--gt", "gt/a.tif", "--csv", "notes.csv")
    bad.assert_clean_failure(result, "notes.csv: already exists and is not a report of decrappify")
    assert bad.path("notes.csv").read_text() == "my,notes\n"
