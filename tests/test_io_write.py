"""Writing: OME-TIFF output, atomic writes, cancel, overwrite, resume, dask.distributed."""

from __future__ import annotations

import re
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr

from decrappify.errors import InputError, OutputError
from decrappify.io import (
    BlockArray,
    Image,
    iter_write_image,
    partial_path,
    read_image,
    write_image,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def _counting(base: np.ndarray, chunks, calls: list, *, fail_at=None):
    """A dask image whose blocks record their computation (and may raise)."""

    def compute(block, block_info=None):
        location = block_info[0]["chunk-location"]
        if fail_at is not None and location == fail_at:
            raise RuntimeError(f"failed on block {location}")
        calls.append(location)
        return block + 1

    data = da.from_array(base, chunks=chunks).map_blocks(
        compute, dtype=base.dtype, meta=np.empty((0,) * base.ndim, base.dtype)
    )
    return Image(data, axes="ZYX" if base.ndim == 3 else "YX")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- TIFF


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("shape", [(300, 520), (3, 300, 520)], ids=["2d", "3d"])
def test_tiff_round_trip(tmp_path, rng, dtype, shape):
    array = (rng.random(shape) * 250).astype(dtype)
    axes = "YX" if len(shape) == 2 else "ZYX"
    pixel_size = (0.3, 0.01, 0.01)[-len(shape) :]
    image = Image(array, axes=axes, pixel_size=pixel_size, units=("micrometer",) * len(shape))
    out = write_image(image, tmp_path / "out.tif")
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        assert tif.is_ome and page.is_tiled and (page.tilelength, page.tilewidth) == (256, 256)
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE and not tif.is_bigtiff
    back = read_image(out)
    assert (back.axes, back.dtype, back.shape) == (axes, np.dtype(dtype), shape)
    assert back.pixel_size == pytest.approx(pixel_size) and back.units == image.units
    np.testing.assert_array_equal(np.asarray(back.data), array)


def test_tiff_time_series_and_nanometers(tmp_path, rng):
    image = Image(
        rng.integers(0, 60000, (4, 40, 50), dtype=np.uint16),
        axes="TYX",
        pixel_size=(0.5, 8.0, 8.0),
        units=("second", "nanometer", "nanometer"),
    )
    back = read_image(write_image(image, tmp_path / "t.ome.tiff"))
    assert back.axes == "TYX" and back.pixel_size == pytest.approx((0.5, 8.0, 8.0))
    assert back.units == ("second", "nanometer", "nanometer")


def test_tiff_from_dask_tile_rows_and_custom_tiles(tmp_path, rng):
    base = rng.integers(0, 255, (2, 200, 300), dtype=np.uint8)
    calls: list = []
    image = _counting(base, (1, 64, 300), calls)
    events = list(iter_write_image(image, tmp_path / "d.tif", chunks=(64, 128)))
    # bands of one 64-row input chunk: each input chunk computed exactly once
    assert len(calls) == 2 * 4 and len(set(calls)) == 8
    assert [e.step for e in events] == list(range(1, 9)) and events[-1].total == 8
    assert events[0].message == "d.tif: tile row 1 of 8"
    with tifffile.TiffFile(tmp_path / "d.tif") as tif:
        assert (tif.pages[0].tilelength, tif.pages[0].tilewidth) == (64, 128)
    np.testing.assert_array_equal(read_image(tmp_path / "d.tif").data, base + 1)


def test_bigtiff_threshold(tmp_path, monkeypatch):
    monkeypatch.setattr("decrappify.io.write.BIGTIFF_MIN_BYTES", 1000)
    out = write_image(np.zeros((40, 40), np.uint8), tmp_path / "big.tif")
    with tifffile.TiffFile(out) as tif:
        assert tif.is_bigtiff
    np.testing.assert_array_equal(read_image(out).data, np.zeros((40, 40), np.uint8))


def test_tiff_tile_errors(tmp_path):
    with pytest.raises(
        InputError, match=re.escape("chunks for TIFF tiles must be multiples of 16, got (100, 100)")
    ):
        write_image(np.zeros((16, 16), np.uint8), tmp_path / "x.tif", chunks=(100, 100))


def test_unknown_format_and_existing_output(tmp_path):
    image = np.zeros((16, 16), np.uint8)
    with pytest.raises(
        OutputError,
        match=re.escape(
            f"{tmp_path / 'x.png'}: unknown output format; use a .tif/.tiff or .zarr/.ome.zarr "
            "name, or pass format"
        ),
    ):
        write_image(image, tmp_path / "x.png")
    out = write_image(image, tmp_path / "x.png", format="tiff")
    assert tifffile.imread(out).shape == (16, 16)
    with pytest.raises(
        OutputError, match=re.escape(f"{out}: already exists; pass --overwrite to replace it")
    ):
        write_image(image, out, format="tiff")


# --------------------------------------------------------------------------- atomic writes


@pytest.mark.parametrize("name", ["out.zarr", "out.tif"])
def test_exception_mid_write_leaves_nothing(tmp_path, rng, name):
    calls: list = []
    image = _counting(
        rng.integers(0, 255, (2, 256, 256), dtype=np.uint8), (1, 128, 256), calls, fail_at=(1, 0, 0)
    )
    with pytest.raises(RuntimeError, match=re.escape("failed on block (1, 0, 0)")):
        write_image(image, tmp_path / name, chunks=(1, 128, 128))
    assert calls  # some blocks were written before the failure
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["out.zarr", "out.tif"])
def test_closing_generator_mid_write_leaves_nothing(tmp_path, rng, name):
    image = Image(rng.integers(0, 255, (2, 256, 256), dtype=np.uint8), axes="ZYX")
    events = iter_write_image(
        image, tmp_path / name, chunks=(1, 16, 16) if "zarr" in name else None
    )
    next(events)
    next(events)
    assert partial_path(tmp_path / name).exists()
    events.close()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["out.zarr", "out.tif"])
def test_overwrite_replaces_only_when_complete(tmp_path, rng, name):
    first = rng.integers(0, 255, (64, 64), dtype=np.uint8)
    second = rng.integers(0, 255, (64, 64), dtype=np.uint8)
    out = write_image(first, tmp_path / name, chunks=(16, 16))
    events = iter_write_image(second, out, chunks=(16, 16), overwrite=True)
    next(events)
    events.close()  # cancelled: the old output is untouched
    np.testing.assert_array_equal(np.asarray(read_image(out).data), first)
    write_image(second, out, chunks=(16, 16), overwrite=True)
    np.testing.assert_array_equal(np.asarray(read_image(out).data), second)
    assert _leftovers(tmp_path) == [name]


def test_output_inside_or_over_input_refused(tmp_path, rng):
    source = write_image(rng.integers(0, 255, (32, 32), dtype=np.uint8), tmp_path / "in.zarr")
    image = read_image(source)
    with pytest.raises(
        OutputError,
        match=re.escape(
            f"{source / 'out.zarr'}: output lies inside the input {source}; choose an output "
            "outside it"
        ),
    ):
        write_image(image, source / "out.zarr")
    with pytest.raises(
        OutputError, match=re.escape(f"{source}: output would overwrite the input {source}")
    ):
        write_image(image, source, overwrite=True)


def test_empty_image_and_bad_dtype_refused(tmp_path):
    with pytest.raises(InputError, match=re.escape("image: image is empty (shape (0, 4))")):
        write_image(Image(np.zeros((0, 4), np.uint8)), tmp_path / "e.zarr")
    with pytest.raises(InputError, match=re.escape("image: cannot write pixel type complex64")):
        write_image(Image(np.zeros((4, 4), np.complex64)), tmp_path / "c.zarr")
    out = write_image(Image(np.ones((4, 4), bool)), tmp_path / "b.tif")
    assert tifffile.imread(out).dtype == np.uint8


# --------------------------------------------------------------------------- resume


def _store_bytes(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def test_resume_after_cancel_is_identical_and_skips_finished_blocks(tmp_path, rng):
    base = rng.integers(0, 60000, (2, 300, 400), dtype=np.uint16)
    chunks = (1, 128, 128)  # 2 x 3 x 4 = 24 level-0 blocks
    (tmp_path / "ref").mkdir()
    reference = write_image(
        _counting(base, chunks, []), tmp_path / "ref" / "out.zarr", chunks=chunks
    )

    out = tmp_path / "out.zarr"
    calls: list = []
    events = iter_write_image(
        _counting(base, chunks, calls), out, chunks=chunks, resume_key="predict-v1"
    )
    for _ in range(5):
        next(events)
    events.close()
    assert len(calls) == 5 and not out.exists()
    partial = partial_path(out)
    assert (partial / ".decrappify-resume" / "state.json").is_file()
    assert len((partial / ".decrappify-resume" / "done.txt").read_text().splitlines()) == 5

    calls.clear()
    events = list(
        iter_write_image(
            _counting(base, chunks, calls), out, chunks=chunks, resume_key="predict-v1"
        )
    )
    assert len(calls) == 19 and len(set(calls)) == 19  # only the missing blocks
    assert events[0].message == "out.zarr: resuming, 5 of 24 blocks already written"
    assert events[-1].step == events[-1].total
    assert not partial.exists()
    assert _store_bytes(out) == _store_bytes(reference)


def test_resume_with_another_key_discards_partial(tmp_path, rng):
    base = rng.integers(0, 255, (1, 256, 256), dtype=np.uint8)
    chunks = (1, 128, 128)
    out = tmp_path / "o.zarr"
    events = iter_write_image(_counting(base, chunks, []), out, chunks=chunks, resume_key="a")
    next(events)
    next(events)
    events.close()
    calls: list = []
    write_image(_counting(base, chunks, calls), out, chunks=chunks, resume_key="b")
    assert len(calls) == 4
    np.testing.assert_array_equal(zarr.open_array(out / "0", mode="r")[:], base + 1)


def test_failure_with_resume_key_keeps_partial(tmp_path, rng):
    base = rng.integers(0, 255, (2, 128, 128), dtype=np.uint8)
    chunks = (1, 64, 64)
    out = tmp_path / "f.zarr"
    with pytest.raises(RuntimeError):
        write_image(
            _counting(base, chunks, [], fail_at=(1, 1, 0)), out, chunks=chunks, resume_key="k"
        )
    assert not out.exists() and partial_path(out).is_dir()
    calls: list = []
    write_image(_counting(base, chunks, calls), out, chunks=chunks, resume_key="k")
    assert len(calls) == 2  # blocks (1, 1, 0) and (1, 1, 1)
    np.testing.assert_array_equal(zarr.open_array(out / "0", mode="r")[:], base + 1)


# --------------------------------------------------------------------------- distributed


def test_distributed_write_identical(tmp_path, rng):
    distributed = pytest.importorskip("distributed")
    base = rng.integers(0, 60000, (2, 300, 400), dtype=np.uint16)
    source = write_image(base, tmp_path / "src.zarr", chunks=(1, 128, 128))
    lazy = read_image(source)
    image = lazy.with_data(lazy.data.rechunk((1, 128, 128)) // 2 + 7)  # picklable graph
    local_zarr = write_image(image, tmp_path / "local.zarr", chunks=(1, 128, 128))
    local_tif = write_image(image, tmp_path / "local.tif")
    # forked workers start with decrappify, dask and zarr already imported (spawned ones
    # spend seconds importing them); they are still separate processes
    with (
        dask.config.set({"distributed.worker.multiprocessing-method": "fork"}),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        assert len(client.nthreads()) == 2
        dist_zarr = write_image(image, tmp_path / "dist.zarr", chunks=(1, 128, 128), client=client)
        dist_tif = write_image(image, tmp_path / "dist.tif", client=client)
    assert _store_bytes(dist_zarr) == _store_bytes(local_zarr)
    np.testing.assert_array_equal(tifffile.imread(dist_tif), tifffile.imread(local_tif))
    np.testing.assert_array_equal(tifffile.imread(dist_tif), base // 2 + 7)


@pytest.mark.parametrize("fmt", ["tif", "zarr"])
def test_a_block_array_is_written_as_its_blocks_computed_once_each(tmp_path, rng, fmt):
    base = rng.integers(0, 60000, (3, 70, 90)).astype(np.uint16)
    chunks = ((1, 1, 1), (32, 32, 6), (64, 26))
    calls: list = []

    def block(index):
        calls.append(index)
        where = tuple(
            slice(sum(c[:i]), sum(c[: i + 1])) for c, i in zip(chunks, index, strict=True)
        )
        return base[where]

    data = BlockArray(block, chunks, np.uint16)
    assert (data.shape, data.ndim) == (base.shape, 3)
    np.testing.assert_array_equal(data.region((1, slice(20, 70), slice(50, 90))), base[1, 20:, 50:])
    calls.clear()
    out = write_image(Image(data, axes="ZYX"), tmp_path / f"out.{fmt}", chunks=(1, 32, 64))
    np.testing.assert_array_equal(np.asarray(read_image(out).data), base)
    assert sorted(calls) == sorted(set(calls)) and len(calls) == 3 * 3 * 2
