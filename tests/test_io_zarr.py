"""Zarr and OME-Zarr: reading NGFF 0.4/0.5 and plain arrays, writing NGFF 0.5 pyramids."""

from __future__ import annotations

import json
import re

import dask.array as da
import numpy as np
import pytest
import zarr
from ome_zarr.format import FormatV04, FormatV05
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from ome_zarr.writer import write_image as ome_write_image

from decrappify.errors import InputError
from decrappify.io import Image, iter_write_image, read_image, read_ome_zarr_metadata, write_image
from decrappify.io.omezarr import downsample_yx
from decrappify.io.omezarr_write import default_levels, level_shapes


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(99)


def _error(source, match: str, **kwargs) -> None:
    with pytest.raises(InputError, match=f"^{re.escape(match)}$"):
        read_image(source, **kwargs)


def _ome_zarr(path, array, fmt, *, axes, scale, units, scale_factors=(2,)):
    store = parse_url(str(path), mode="w", fmt=fmt).store
    root = zarr.group(store=store, zarr_format=fmt.zarr_format)
    ome_write_image(
        array,
        group=root,
        axes=axes,
        fmt=fmt,
        scale=scale,
        axes_units=units,
        scale_factors=list(scale_factors),
    )
    return path


# --------------------------------------------------------------------------- reading


@pytest.mark.parametrize("fmt", [FormatV04(), FormatV05()], ids=["ngff0.4", "ngff0.5"])
def test_read_ome_zarr_written_by_ome_zarr_py(tmp_path, rng, fmt):
    array = rng.integers(0, 60000, (1, 1, 3, 64, 80), dtype=np.uint16)
    path = _ome_zarr(
        tmp_path / "img.ome.zarr",
        array,
        fmt,
        axes=list("tczyx"),
        scale={"t": 1.0, "c": 1.0, "z": 2.0, "y": 0.5, "x": 0.25},
        units={"t": "second", "z": "micrometer", "y": "micrometer", "x": "micrometer"},
    )
    meta = read_ome_zarr_metadata(path)
    assert meta.version == fmt.version and meta.axes == tuple("tczyx")
    assert meta.scales[1][-2:] == pytest.approx((1.0, 0.5))
    image = read_image(path)
    assert image.is_lazy and (image.axes, image.shape, image.dtype) == (
        "ZYX",
        (3, 64, 80),
        np.uint16,
    )
    assert image.pixel_size == pytest.approx((2.0, 0.5, 0.25))
    assert image.units == ("micrometer",) * 3
    np.testing.assert_array_equal(image.data.compute(), array[0, 0])


def test_read_ome_zarr_time_axis_and_level_path(tmp_path, rng):
    array = rng.random((4, 64, 64), dtype=np.float32)
    path = _ome_zarr(
        tmp_path / "t.zarr",
        array,
        FormatV05(),
        axes=[
            {"name": "t", "type": "time"},
            {"name": "y", "type": "space"},
            {"name": "x", "type": "space"},
        ],
        scale={"t": 30.0, "y": 0.1, "x": 0.1},
        units={"t": "second", "y": "micrometer", "x": "micrometer"},
    )
    image = read_image(path)
    assert image.axes == "TYX" and image.dtype == np.float32
    assert image.pixel_size == pytest.approx((30.0, 0.1, 0.1))
    assert image.units == ("second", "micrometer", "micrometer")
    meta = read_ome_zarr_metadata(path)
    level1 = read_image(path / meta.paths[1])  # an array inside the image: its own scale
    assert level1.shape == (4, 32, 32) and level1.pixel_size == pytest.approx((30.0, 0.2, 0.2))


def test_read_plain_zarr_v3_and_v2_arrays(tmp_path, rng):
    array = rng.integers(0, 255, (5, 40, 60), dtype=np.uint8)
    v3 = zarr.create_array(
        tmp_path / "v3.zarr",
        shape=array.shape,
        chunks=(1, 16, 16),
        dtype=array.dtype,
        dimension_names=("t", "y", "x"),
    )
    v3[:] = array
    image = read_image(tmp_path / "v3.zarr")
    assert image.is_lazy and image.axes == "TYX" and image.pixel_size is None
    assert image.data.chunks[1] == (40,) and image.data.chunks[2] == (60,)  # whole tiles, ~1024 px
    np.testing.assert_array_equal(image.data.compute(), array)
    v2 = zarr.create_array(
        tmp_path / "v2.zarr", shape=array.shape, chunks=(1, 16, 16), dtype=np.int16, zarr_format=2
    )
    v2[:] = array.astype(np.int16)
    image = read_image(tmp_path / "v2.zarr")
    assert image.axes == "ZYX" and image.dtype == np.uint8  # int16 holding 0..255
    np.testing.assert_array_equal(image.data.compute(), array)


def test_read_bioformats2raw_layout(tmp_path, rng):
    array = rng.integers(0, 255, (1, 1, 1, 32, 32), dtype=np.uint8)
    root = zarr.open_group(tmp_path / "b2r.zarr", mode="w", zarr_format=2)
    root.attrs["bioformats2raw.layout"] = 3
    _ome_zarr(
        tmp_path / "b2r.zarr" / "0",
        array,
        FormatV04(),
        axes=list("tczyx"),
        scale={"t": 1.0, "c": 1.0, "z": 1.0, "y": 0.3, "x": 0.3},
        units={"y": "micrometer", "x": "micrometer", "z": "micrometer"},
    )
    image = read_image(tmp_path / "b2r.zarr")
    assert image.axes == "YX" and image.pixel_size == pytest.approx((0.3, 0.3))


def test_zarr_errors(tmp_path):
    array = np.zeros((1, 3, 1, 32, 32), np.uint16)
    multi = _ome_zarr(
        tmp_path / "multi.zarr",
        array,
        FormatV05(),
        axes=list("tczyx"),
        scale={"t": 1.0, "c": 1.0, "z": 1.0, "y": 1.0, "x": 1.0},
        units={},
    )
    _error(
        multi,
        f"{multi}: has 3 channels on axis 1 (shape (1, 3, 1, 32, 32)); decrappify "
        "needs a single-channel image — split the channels first",
    )
    four = _ome_zarr(
        tmp_path / "four.zarr",
        np.zeros((2, 1, 3, 32, 32), np.uint16),
        FormatV05(),
        axes=list("tczyx"),
        scale={"t": 1.0, "c": 1.0, "z": 1.0, "y": 1.0, "x": 1.0},
        units={},
    )
    _error(
        four,
        f"{four}: expected a 2D or 3D single-channel image, got shape "
        "(2, 1, 3, 32, 32) (axes TCZYX)",
    )
    group = zarr.open_group(tmp_path / "group.zarr", mode="w")
    group.create_array("raw", shape=(8, 8), dtype=np.uint8)
    _error(
        tmp_path / "group.zarr",
        f"{tmp_path / 'group.zarr'}: Zarr group without OME-NGFF "
        "multiscales metadata; open one of its arrays (raw)",
    )
    fake = tmp_path / "fake.zarr"
    fake.mkdir()
    _error(fake, f"{fake}: not a Zarr store (no zarr.json, .zarray or .zgroup)")
    empty = zarr.create_array(tmp_path / "empty.zarr", shape=(0, 8), dtype=np.uint8)
    assert empty.shape == (0, 8)
    _error(tmp_path / "empty.zarr", f"{tmp_path / 'empty.zarr'}: image is empty (shape (0, 8))")


# --------------------------------------------------------------------------- writing


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("shape", [(300, 520), (3, 300, 520)], ids=["2d", "3d"])
def test_ome_zarr_round_trip(tmp_path, rng, dtype, shape):
    array = (rng.random(shape) * 250).astype(dtype)
    axes = "YX" if len(shape) == 2 else "ZYX"
    pixel_size = (0.04, 0.004, 0.004)[-len(shape) :]
    image = Image(array, axes=axes, pixel_size=pixel_size, units=("micrometer",) * len(shape))
    out = write_image(image, tmp_path / "out.ome.zarr", chunks=(128, 128))
    back = read_image(out)
    assert (back.axes, back.dtype, back.shape) == (axes, np.dtype(dtype), shape)
    assert back.pixel_size == pytest.approx(pixel_size) and back.units == image.units
    np.testing.assert_array_equal(back.data.compute(), array)
    group = zarr.open_group(out, mode="r")
    assert group["0"].chunks == (*(1,) * (len(shape) - 2), 128, 128)
    assert group["0"].metadata.dimension_names == tuple(axes.lower())
    assert group["1"].dtype == np.dtype(dtype) and group["1"].shape[-2:] == (150, 260)
    assert sorted(p.name for p in out.iterdir()) == ["0", "1", "2", "zarr.json"]


def test_ome_zarr_metadata_read_by_ome_zarr_py(tmp_path, rng):
    image = Image(
        rng.integers(0, 60000, (2, 600, 700), dtype=np.uint16),
        axes="ZYX",
        pixel_size=(0.5, 0.1, 0.1),
        units=("micrometer",) * 3,
    )
    out = write_image(image, tmp_path / "img.zarr")
    attrs = json.loads((out / "zarr.json").read_text())["attributes"]
    assert attrs["ome"]["version"] == "0.5" and "version" not in attrs["ome"]["multiscales"][0]
    nodes = list(Reader(parse_url(str(out)))())
    node = nodes[0]
    assert node.metadata["axes"] == [
        {"name": "z", "type": "space", "unit": "micrometer"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"},
    ]
    assert [d.shape for d in node.data] == [(2, 600, 700), (2, 300, 350), (2, 150, 175)]
    transforms = node.metadata["coordinateTransformations"]
    FormatV05().validate_coordinate_transformations(3, 3, transforms)
    assert transforms[2] == [
        {"type": "scale", "scale": [0.5, 0.4, 0.4]},
        {"type": "translation", "translation": [0.0, 0.15000000000000002, 0.15000000000000002]},
    ]
    np.testing.assert_array_equal(np.asarray(node.data[0]), image.data)


def test_pyramid_values_and_default_levels(tmp_path):
    array = np.arange(5 * 7, dtype=np.uint8).reshape(5, 7) * 7
    out = write_image(array, tmp_path / "p.zarr", levels=3)
    group = zarr.open_group(out, mode="r")
    padded = np.pad(array.astype(np.float64), [(0, 1), (0, 1)], mode="edge")
    expected = np.rint(padded.reshape(3, 2, 4, 2).mean(axis=(1, 3))).astype(np.uint8)
    np.testing.assert_array_equal(group["1"][:], expected)
    assert group["2"].shape == (2, 2)
    assert default_levels((256, 256)) == 1 and default_levels((257, 100)) == 2
    assert default_levels((4, 1000, 300)) == 3
    assert level_shapes((2, 5, 7), 3) == [(2, 5, 7), (2, 3, 4), (2, 2, 2)]


def test_downsample_rounds_half_to_even_and_keeps_float_mean():
    block = np.array([[1, 2], [2, 1]], np.uint16)  # mean 1.5 -> 2
    assert downsample_yx(block, np.dtype(np.uint16)).tolist() == [[2]]
    block = np.array([[1, 1], [2, 1]], np.uint16)  # mean 1.25 -> 1
    assert downsample_yx(block, np.dtype(np.uint16)).tolist() == [[1]]
    block = np.array([[2, 3], [2, 3]], np.int16)  # mean 2.5 -> 2 (even)
    assert downsample_yx(block, np.dtype(np.int16)).tolist() == [[2]]
    floats = np.array([[0.1, 0.2], [0.3, 0.7]], np.float32)
    assert downsample_yx(floats, np.dtype(np.float32))[0, 0] == pytest.approx(0.325)


def test_write_without_pixel_size_reads_back_none(tmp_path, rng):
    out = write_image(rng.random((40, 30), dtype=np.float32), tmp_path / "plain.zarr")
    assert read_image(out).pixel_size is None
    attrs = json.loads((out / "zarr.json").read_text())["attributes"]["ome"]["multiscales"][0]
    assert attrs["axes"] == [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    assert attrs["name"] == "plain"


def test_time_series_axes_types(tmp_path):
    image = Image(
        np.zeros((3, 20, 20), np.uint8),
        axes="TYX",
        pixel_size=(2.0, 0.3, 0.3),
        units=("second", "micrometer", "micrometer"),
    )
    out = write_image(image, tmp_path / "t.zarr")
    axes = json.loads((out / "zarr.json").read_text())["attributes"]["ome"]["multiscales"][0][
        "axes"
    ]
    assert [a["type"] for a in axes] == ["time", "space", "space"]
    back = read_image(out)
    assert back.axes == "TYX" and back.units == ("second", "micrometer", "micrometer")


def test_each_input_chunk_computed_once(tmp_path, rng):
    calls = []

    def add_one(block, block_info=None):
        calls.append(block_info[0]["chunk-location"])
        return block + 1

    base = rng.integers(0, 1000, (2, 512, 512), dtype=np.uint16)
    data = da.from_array(base, chunks=(1, 256, 256)).map_blocks(
        add_one, dtype=np.uint16, meta=np.empty((0, 0, 0), np.uint16)
    )
    out = write_image(Image(data, axes="ZYX"), tmp_path / "c.zarr", chunks=(1, 128, 128))
    assert len(calls) == 8 and len(set(calls)) == 8  # 2 x 2 x 2 input chunks, once each
    np.testing.assert_array_equal(read_image(out).data.compute(), base + 1)
    # misaligned input chunks are still written correctly
    odd = da.from_array(base, chunks=(1, 100, 100))
    out2 = write_image(Image(odd, axes="ZYX"), tmp_path / "odd.zarr", chunks=(1, 128, 128))
    np.testing.assert_array_equal(read_image(out2).data.compute(), base)


def test_progress_events(tmp_path, rng):
    image = Image(rng.integers(0, 255, (2, 300, 300), dtype=np.uint8), axes="ZYX")
    events = list(iter_write_image(image, tmp_path / "e.zarr", chunks=(1, 128, 128)))
    # level 0: 2 x 3 x 3 blocks; level 1 (150 x 150): 2 x 2 x 2 blocks
    # the bar counts what the message says: level-0 blocks, then the pyramid's blocks
    assert [(e.step, e.total) for e in events] == [(i, 18) for i in range(1, 19)] + [
        (i, 8) for i in range(1, 9)
    ]
    assert {e.phase for e in events} == {"write"}
    assert events[0].message == "e.zarr: level 0, block 1 of 18"
    assert events[-1].message == "e.zarr: pyramid level 1 of 1, block 8 of 8"


def test_write_parameter_errors(tmp_path):
    image = np.zeros((16, 16), np.uint8)
    with pytest.raises(
        InputError, match=re.escape("levels must be an integer of at least 1, got 0")
    ):
        write_image(image, tmp_path / "a.zarr", levels=0)
    with pytest.raises(
        InputError,
        match=re.escape("chunks needs 2 entries (or 2 for Y/X) for shape (16, 16), got (1, 2, 3)"),
    ):
        write_image(image, tmp_path / "a.zarr", chunks=(1, 2, 3))
    with pytest.raises(InputError, match=re.escape("chunks must be positive integers, got (0, 8)")):
        write_image(image, tmp_path / "a.zarr", chunks=(0, 8))
    assert not (tmp_path / "a.zarr").exists()
