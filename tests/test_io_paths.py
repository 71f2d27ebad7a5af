"""Batch paths: expanding CLI inputs, naming outputs, refusing outputs that clobber inputs."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from decrappify.errors import InputError, OutputError
from decrappify.io import check_output_path, expand_inputs, natural_key, output_path_for
from decrappify.io.atomic import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    commit,
    partial_path,
)
from decrappify.io.paths import image_stem, output_format


@pytest.fixture
def batch(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("img10.tif", "img2.tif", "IMG1.TIFF", "notes.txt", ".hidden.tif"):
        (folder / name).write_bytes(b"x")
    zarr.create_array(folder / "vol.ome.zarr", shape=(4, 4), dtype=np.uint8)
    (folder / "sub").mkdir()
    return folder


def test_natural_key_orders_numbers_by_value():
    names = ["img10.tif", "img2.tif", "img1.tif", "Img3.tif"]
    assert sorted(names, key=natural_key) == ["img1.tif", "img2.tif", "Img3.tif", "img10.tif"]


def test_expand_folder(batch):
    expanded = expand_inputs(batch)
    assert [p.name for p in expanded] == ["IMG1.TIFF", "img2.tif", "img10.tif", "vol.ome.zarr"]


def test_expand_files_globs_zarr_and_order(batch):
    zarr_store = batch / "vol.ome.zarr"
    result = expand_inputs([str(zarr_store), str(batch / "img*.tif"), batch / "img2.tif"])
    # arguments keep their order, a Zarr folder is one image, globs sort naturally,
    # duplicates are dropped
    assert result == [zarr_store, batch / "img2.tif", batch / "img10.tif"]
    assert expand_inputs(batch / "notes.txt") == [batch / "notes.txt"]  # files as given


def test_expand_errors(batch, tmp_path):
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / 'nope.tif'}: file not found")):
        expand_inputs([tmp_path / "nope.tif"])
    pattern = str(batch / "*.png")
    with pytest.raises(InputError, match=re.escape(f"{pattern}: no files match this pattern")):
        expand_inputs(pattern)
    with pytest.raises(
        InputError,
        match=re.escape(f"{batch / 'sub'}: folder contains no .tif, .tiff or .zarr images"),
    ):
        expand_inputs(batch / "sub")


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("cells.ome.zarr", "cells"),
        ("cells.zarr", "cells"),
        ("a.b.tif", "a.b"),
        ("x.OME.TIFF", "x"),
        ("stack", "stack"),
        ("photo.png", "photo"),
    ],
)
def test_image_stem(name, stem):
    assert image_stem(name) == stem


def test_output_path_for(tmp_path):
    assert output_path_for("in/cells.ome.zarr", tmp_path, "tiff") == tmp_path / "cells.tif"
    assert output_path_for("in/cells.tif", tmp_path, "zarr") == tmp_path / "cells.zarr"
    assert output_path_for("in/c.tiff", tmp_path, "ome-zarr") == tmp_path / "c.zarr"
    with pytest.raises(
        OutputError, match=re.escape("format must be one of 'tiff' or 'zarr', got 'png'")
    ):
        output_path_for("in/c.tif", tmp_path, "png")
    assert output_format("x.OME.TIF") == "tiff" and output_format("x.ome.zarr") == "zarr"


def test_check_output_path_refuses_clobbering(tmp_path):
    source = tmp_path / "in.zarr"
    zarr.create_array(source, shape=(4, 4), dtype=np.uint8)
    tif = tmp_path / "a.tif"
    tifffile.imwrite(tif, np.zeros((4, 4), np.uint8))
    with pytest.raises(
        OutputError, match=re.escape(f"{tif}: output would overwrite the input {tif}")
    ):
        check_output_path(tif, [tif, source])
    inside = source / "pred.zarr"
    with pytest.raises(
        OutputError,
        match=re.escape(
            f"{inside}: output lies inside the input {source}; choose an output outside it"
        ),
    ):
        check_output_path(inside, [source])
    holder = tmp_path / "holder.zarr"
    holder.mkdir()
    held = holder / "a.tif"
    held.write_bytes(b"x")
    with pytest.raises(
        OutputError, match=re.escape(f"{holder}: output would overwrite the input {held} inside it")
    ):
        check_output_path(holder, [held])
    # an output folder may hold inputs beside the outputs, but not be or lie inside one
    assert check_output_path(tmp_path, [tif]) == tmp_path
    with pytest.raises(
        OutputError, match=re.escape(f"{source / 'preds'}: output lies inside the input {source}")
    ):
        check_output_path(source / "preds", [source])
    link = tmp_path / "link.tif"
    link.symlink_to(tif)
    with pytest.raises(OutputError, match="output would overwrite the input"):
        check_output_path(link, [tif])
    # names that are not paths (layer names) and missing inputs are ignored
    assert check_output_path(tmp_path / "ok.tif", ["layer 1", None]) == tmp_path / "ok.tif"


def test_check_output_path_creates_folder(tmp_path):
    out = tmp_path / "new" / "deeper" / "x.zarr"
    assert check_output_path(out, []) == out
    assert out.parent.is_dir() and not out.exists()
    out_dir = tmp_path / "batch" / "out"  # a folder (no image suffix) is created itself
    assert check_output_path(out_dir, []) == out_dir and out_dir.is_dir()
    odd = tmp_path / "single" / "x.png"
    check_output_path(odd, [], is_folder=False)
    assert odd.parent.is_dir() and not odd.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_check_output_path_unwritable(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(
            OutputError, match=re.escape(f"{locked}: output folder is not writable")
        ):
            check_output_path(locked / "x.tif")
        with pytest.raises(
            OutputError,
            match=re.escape(
                f"{locked / 'sub'}: cannot create the output folder (Permission denied)"
            ),
        ):
            check_output_path(locked / "sub" / "x.tif")
    finally:
        locked.chmod(0o700)


def test_check_output_path_folder_is_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(
        OutputError, match=re.escape(f"{blocker}: cannot create the output folder (File exists)")
    ):
        check_output_path(blocker / "x.tif")


def test_check_output_path_reports_unwritable_folder(tmp_path, monkeypatch):
    monkeypatch.setattr("decrappify.io.paths.os.access", lambda path, mode: False)
    with pytest.raises(OutputError, match=re.escape(f"{tmp_path}: output folder is not writable")):
        check_output_path(tmp_path / "x.tif")
    with pytest.raises(OutputError, match=re.escape(f"{tmp_path}: output folder is not writable")):
        check_output_path(tmp_path)


# --------------------------------------------------------------------------- atomic writes


def test_atomic_write_text_and_bytes(tmp_path):
    target = tmp_path / "cfg.yaml"
    assert atomic_write_text(target, "a: 1\n") == target
    assert target.read_text() == "a: 1\n"
    atomic_write_text(target, "a: 2\n")  # small files are replaced by default
    assert target.read_text() == "a: 2\n"
    with pytest.raises(
        OutputError, match=re.escape(f"{target}: already exists; pass --overwrite to replace it")
    ):
        atomic_write_text(target, "a: 3\n", overwrite=False)
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "cfg.yaml"]


def test_atomic_write_failure_leaves_old_file_and_no_partial(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    assert partial_path(target) == tmp_path / ".report.json.partial"


def test_commit_replaces_folder_and_restores_on_failure(tmp_path, monkeypatch):
    final = tmp_path / "out.zarr"
    final.mkdir()
    (final / "old").write_text("old")
    tmp = tmp_path / ".out.zarr.partial"
    tmp.mkdir()
    (tmp / "new").write_text("new")
    real_replace = os.replace

    def flaky(src, dst):
        if Path(src) == tmp:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr("decrappify.io.atomic.os.replace", flaky)
    with pytest.raises(
        OutputError,
        match=re.escape(
            f"{final}: cannot move the finished output in place (No space left on device)"
        ),
    ):
        commit(tmp, final, overwrite=True)
    assert (final / "old").read_text() == "old"  # moved aside, then restored
    monkeypatch.setattr("decrappify.io.atomic.os.replace", real_replace)
    commit(tmp, final, overwrite=True)
    assert sorted(p.name for p in final.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]
