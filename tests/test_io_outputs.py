"""Planning outputs, locking them, pairing by name and odd files in input folders (issue 20)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from decrappify.errors import InputError, OutputError
from decrappify.io import expand_inputs, read_image
from decrappify.io.atomic import partial_path, write_errno, write_failure
from decrappify.io.locks import LOCK_NAME, lock_outputs
from decrappify.io.outputs import OutputPlan, hidden_sibling, name_limit, path_key
from decrappify.io.pairing import pair_by_name
from decrappify.io.paths import drop_trust_maps


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------- the plan


def test_two_outputs_of_one_name_are_refused_with_both_inputs_and_no_overwrite_hint(tmp_path):
    a, b = _touch(tmp_path / "d1" / "x.tif"), _touch(tmp_path / "d2" / "x.tif")
    plan = OutputPlan()
    plan.add_inputs([a, b])
    plan.add(tmp_path / "out" / "x.zarr", f"the output of {a}")
    plan.add(tmp_path / "out" / "x.zarr", f"the output of {b}")
    with pytest.raises(OutputError) as caught:
        plan.check()
    message = str(caught.value)
    assert f"the output of {a} and the output of {b} would both be written here" in message
    assert "--overwrite" not in message


def test_an_output_that_is_an_input_after_links_and_dots_is_refused(tmp_path):
    source = _touch(tmp_path / "data" / "a.tif")
    (tmp_path / "alias").symlink_to(tmp_path / "data")
    for out in (
        tmp_path / "alias" / "a.tif",
        tmp_path / "data" / "." / "a.tif",
        tmp_path / "other" / ".." / "data" / "a.tif",
    ):
        plan = OutputPlan()
        plan.add_inputs([source])
        plan.add(out, "the --report")
        with pytest.raises(OutputError, match="the --report would overwrite the input"):
            plan.check()
    plan = OutputPlan()
    plan.add_inputs([tmp_path / "data"])
    plan.add(tmp_path / "alias" / "new.json", "the --report")
    with pytest.raises(OutputError, match="lies inside the input"):
        plan.check()


def test_a_case_variant_is_one_file_only_where_the_file_system_ignores_case(tmp_path):
    folder = tmp_path / "CaseProbe"
    folder.mkdir()
    insensitive = (tmp_path / "caseprobe").exists()
    assert (path_key(folder / "A.tif") == path_key(folder / "a.tif")) == insensitive


def test_an_output_name_too_long_for_the_file_system_is_refused_before_any_work(tmp_path):
    limit = name_limit(tmp_path)
    plan = OutputPlan()
    plan.add(tmp_path / ("n" * (limit - 6) + ".consistency.tif"), "the consistency map")
    with pytest.raises(OutputError, match=rf"bytes long, its file system allows {limit}"):
        plan.check()


def test_hidden_temporaries_of_long_names_are_shortened_and_stay_unique(tmp_path):
    limit = name_limit(tmp_path)
    long_a = tmp_path / ("a" * (limit - 5) + ".zarr")
    long_b = tmp_path / ("a" * (limit - 5) + ".tif")
    assert len(long_a.name) <= limit
    part_a, part_b = partial_path(long_a), partial_path(long_b)
    assert part_a != part_b and part_a.parent == tmp_path
    assert all(len(os.fsencode(p.name)) <= limit for p in (part_a, part_b))
    assert part_a.name.startswith(".aaa") and part_a.name.endswith(".partial")
    part_a.mkdir()  # the system accepts the name
    assert partial_path(tmp_path / "x.zarr").name == ".x.zarr.partial"  # short names unchanged
    assert hidden_sibling(long_a, "partial") == part_a  # deterministic: resume finds it


# ------------------------------------------------------------------------- locks

HOLDER = textwrap.dedent(
    """
    import sys, time
    from decrappify.io.locks import lock_outputs
    with lock_outputs([sys.argv[1]]):
        print("locked", flush=True)
        time.sleep(60)
    """
)


def test_a_second_process_fails_at_once_while_the_first_holds_the_output(tmp_path):
    out = tmp_path / "x.zarr"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        with pytest.raises(OutputError, match="another decrappify run is writing this output"):
            with lock_outputs([out]):
                pass
        assert time.monotonic() - start < 5
        with lock_outputs([tmp_path / "y.zarr"]):  # another output of the folder is free
            pass
    finally:
        holder.kill()
        holder.wait()
    with lock_outputs([out]):  # a killed holder never blocks the next run
        pass
    assert not (tmp_path / LOCK_NAME).exists()  # the last user deletes the lock file


def test_locks_are_reentrant_in_a_thread_and_exclusive_between_threads(tmp_path):
    out = tmp_path / "x.tif"
    errors = []
    with lock_outputs([out]):
        with lock_outputs([out]):  # the batch holds it, the writer takes it again
            pass
        worker = threading.Thread(target=lambda: errors.append(_try_lock(out)))
        worker.start()
        worker.join()
    assert "another job of this program is writing this output" in errors[0]
    assert _try_lock(out) == "ok"


def _try_lock(path: Path) -> str:
    try:
        with lock_outputs([path]):
            return "ok"
    except OutputError as err:
        return str(err)


# ------------------------------------------------------------------------- write errors


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (OSError(28, "No space left on device"), "the disk is full"),
        (OSError(27, "File too large"), "ulimit -f"),
        (OSError(36, "File name too long"), "a file name is too long"),
        (RuntimeError("serializing: IoError(Os { code: 28, kind: StorageFull })"), "full"),
        (RuntimeError("[enforce fail at inline_container.cc] File too large"), "ulimit"),
    ],
)  # fmt: skip
def test_write_errors_of_any_library_become_one_line(error, text, tmp_path):
    wrapped = RuntimeError("zarr task failed")
    wrapped.__cause__ = error
    failure = write_failure(tmp_path / "o.zarr", wrapped)
    assert isinstance(failure, OutputError) and text in str(failure)
    assert str(failure).startswith(f"{tmp_path / 'o.zarr'}: cannot write it: ")
    assert write_errno(ValueError("a bug")) is None


# ------------------------------------------------------------------------- pairing


def test_pairs_follow_the_names_not_the_order():
    pred = [Path("sr/a.zarr"), Path("sr/b.zarr")]
    assert pair_by_name(pred, [Path("hr/b.tif"), Path("hr/a.tif")], ("--pred", "--gt"), "p") == [
        Path("hr/a.tif"),
        Path("hr/b.tif"),
    ]
    shared = [Path("pred_b.tif"), Path("pred_a.zarr")]  # a prefix every prediction shares
    assert pair_by_name(shared, [Path("a.tif"), Path("b.tif")], ("--pred", "--gt"), "p") == [
        Path("b.tif"),
        Path("a.tif"),
    ]
    folders = [Path("tune1-lr/img.tif"), Path("tune0-lr/img.tif")]  # one name, own folders
    gts = [Path("tune0-gt/img.tif"), Path("tune1-gt/img.tif")]
    assert pair_by_name(folders, gts, ("--tune-lr", "--tune-gt"), "p") == gts[::-1]
    suffixed = [Path("img10_sr.tif"), Path("img2_sr.tif")]
    gts = [Path("img2_gt.tif"), Path("img10_gt.tif")]
    assert pair_by_name(suffixed, gts, ("--pred", "--gt"), "p") == gts[::-1]


def test_names_that_do_not_match_are_refused_with_them():
    with pytest.raises(InputError) as caught:
        pair_by_name(
            [Path("a.tif"), Path("b.tif")], [Path("a.tif"), Path("c.tif")], ("--pred", "--gt"), "p"
        )
    assert "--pred and --gt name different images (--pred b.tif; --gt c.tif)" in str(caught.value)
    one = pair_by_name([Path("x.zarr")], [Path("whatever.tif")], ("--pred", "--gt"), "p")
    assert one == [Path("whatever.tif")]  # a single pair needs no names


# ------------------------------------------------------------------------- odd input files


def test_folders_and_patterns_skip_loops_fifos_self_links_and_trust_maps(tmp_path, caplog):
    folder = tmp_path / "in"
    tifffile.imwrite(_touch(folder / "a.tif"), np.zeros((8, 8), np.uint8))
    tifffile.imwrite(folder / "a.consistency.tif", np.zeros((4, 4), np.float32))
    (folder / "l1.tif").symlink_to("l2.tif")
    (folder / "l2.tif").symlink_to("l1.tif")
    (folder / "gone.tif").symlink_to("nowhere.tif")
    (folder / "self.zarr").symlink_to(".")
    os.mkfifo(folder / "f.tif")
    assert expand_inputs([folder]) == [folder / "a.tif"]
    pattern = str(folder / "**" / "*.*")
    script = f"from decrappify.io import expand_inputs; print(expand_inputs([{pattern!r}]))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )  # ``**`` does not follow self.zarr -> . (it looped for minutes)
    assert done.stdout.strip() == f"[PosixPath('{folder / 'a.tif'}')]"
    text = caplog.text
    for name, why in [
        ("l1.tif", "a symbolic link loop"),
        ("gone.tif", "a dangling symbolic link"),
        ("self.zarr", "a link to a folder that holds it"),
        ("f.tif", "a FIFO (named pipe), not a file"),
        ("a.consistency.tif", "the consistency map of a.tif"),
    ]:
        assert f"skipped {folder / name}: {why}" in text
    for name, why in [("l1.tif", "symbolic link loop"), ("f.tif", "a FIFO")]:
        with pytest.raises(InputError, match=re.escape(f"{folder / name}: ") + ".*" + why):
            expand_inputs([folder / name])
    with pytest.raises(InputError, match="a FIFO"):  # never opened: it would block
        read_image(folder / "f.tif")


def test_a_shell_pattern_naming_trust_maps_beside_their_images_drops_the_maps(tmp_path):
    a = tmp_path / "a.tif"
    tifffile.imwrite(a, np.zeros((8, 8), np.uint8))
    maps = [tmp_path / "a.consistency.tif", tmp_path / "a.uncertainty.tif"]
    for path in maps:
        tifffile.imwrite(path, np.zeros((8, 8), np.float32))
    assert drop_trust_maps(expand_inputs([a, *maps])) == [a]  # what evaluate --pred does
    assert expand_inputs([a, *maps]) == [a, *maps]  # named: predict refuses the clash
    assert drop_trust_maps([maps[0]]) == [maps[0]]  # alone: the user means it


def test_multi_series_and_multi_position_files_are_refused_with_their_series(tmp_path):
    with tifffile.TiffWriter(tmp_path / "thumb.tif") as tif:
        tif.write(np.zeros((64, 64), np.uint8))
        tif.write(np.zeros((512, 512), np.uint16))
    with tifffile.TiffWriter(tmp_path / "pos.ome.tif", ome=True) as tif:
        for name in ("Pos1", "Pos2", "Pos3"):
            tif.write(np.zeros((128, 128), np.uint16), metadata={"Name": name})
    with pytest.raises(InputError) as caught:
        read_image(tmp_path / "thumb.tif")
    assert "holds 2 images (series 0: 64x64 uint8; series 1: 512x512 uint16)" in str(caught.value)
    with pytest.raises(InputError) as caught:
        read_image(tmp_path / "pos.ome.tif")
    assert "holds 3 images" in str(caught.value) and "'Pos3'" in str(caught.value)
    assert "save each series (position) as its own TIFF" in str(caught.value)


def test_float64_values_beyond_float32_are_named_as_such_without_a_warning(tmp_path):
    data = np.full((32, 32), 1e40)
    data[0, 0] = 3.0
    tifffile.imwrite(tmp_path / "huge.tif", data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warning was printed as well
        with pytest.raises(InputError, match=r"has pixel values up to 1e\+40, beyond the float32"):
            np.asarray(read_image(tmp_path / "huge.tif").data)
    import dask.array as da

    lazy = read_image(da.from_array(data, chunks=16))
    with pytest.raises(InputError, match="beyond the float32 range"):
        lazy.data.compute()
