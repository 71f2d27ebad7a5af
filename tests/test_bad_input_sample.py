"""``decrappify sample`` on bad input: refused up front, one line, nothing written."""

from __future__ import annotations

import time

import pytest


def test_size_beyond_the_disk_is_refused_up_front(bad):
    start = time.perf_counter()
    result = bad.run("sample", "--size", "3000000", "-o", "huge.tif", "-q")
    bad.assert_clean_failure(
        result, "huge.tif: a 3000000x3000000 uint8 image needs 9.0 TB, but its disk has only"
    )
    assert time.perf_counter() - start < 10
    bad.assert_nothing_left([bad.path("huge.tif")])


def test_deep_stack_beyond_the_disk_is_refused(bad):
    result = bad.run(
        "sample", "--kind", "fluorescence", "--size", "4096", "--depth", "10000000", "-o", "s.zarr"
    )
    bad.assert_clean_failure(result, "s.zarr: a 10000000x4096x4096 uint16 image needs")
    bad.assert_nothing_left([bad.path("s.zarr")])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "8", "-o", "s.tif"], "sample: --size must be at least 16 pixels (got (8, 8))"),
        (["--size", "64", "-o", "s.png"], "s.png"),
        (["--size", "64", "-o", "afile/s.tif"], "afile: cannot create the output folder"),
    ],
)
def test_bad_sizes_and_outputs(bad, args, message):
    bad.path("afile").write_text("a file, not a folder")
    result = bad.run("sample", *args, "-q")
    bad.assert_clean_failure(result, message)
    assert sorted(p.name for p in bad.folder.iterdir()) == ["afile"]


def test_existing_output_asks_for_overwrite(bad):
    assert bad.run("sample", "--size", "64", "-o", "s.tif", "-q").exit_code == 0
    result = bad.run("sample", "--size", "64", "-o", "s.tif", "-q")
    bad.assert_clean_failure(result, "s.tif: already exists; pass --overwrite to replace it")
    assert bad.run("sample", "--size", "64", "-o", "s.tif", "--overwrite", "-q").exit_code == 0
    assert not bad.leftovers(bad.folder)
