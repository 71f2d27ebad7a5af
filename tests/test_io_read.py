"""Reading TIFF files, folder stacks and arrays: axes, dtypes, metadata, laziness, errors."""

from __future__ import annotations

import re
import tracemalloc

import dask.array as da
import numpy as np
import pytest
import tifffile

from decrappify.errors import InputError
from decrappify.io import Image, check_finite, read_image
from decrappify.io.tiff import EAGER_MAX_BYTES, TiffSource


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _error(source, match: str, **kwargs) -> None:
    with pytest.raises(InputError, match=f"^{re.escape(match)}$"):
        read_image(source, **kwargs)


# --------------------------------------------------------------------------- arrays


def test_numpy_2d_and_3d_axes(rng):
    image2 = read_image(rng.random((40, 50), dtype=np.float32))
    image3 = read_image(rng.integers(0, 255, (3, 40, 50), dtype=np.uint8))
    assert (image2.axes, image2.shape, image2.dtype) == ("YX", (40, 50), np.float32)
    assert (image3.axes, image3.shape, image3.dtype) == ("ZYX", (3, 40, 50), np.uint8)
    assert image2.pixel_size is None and image2.units is None
    assert read_image(np.zeros((1, 40, 50), np.uint8)).axes == "ZYX"  # arrays keep Z=1
    assert read_image(np.zeros((4, 40, 50), np.uint8), axes="TYX").axes == "TYX"


def test_dask_array_stays_lazy(rng):
    data = da.from_array(rng.integers(0, 60000, (2, 64, 64), dtype=np.uint16), chunks=(1, 32, 32))
    image = read_image(data)
    assert image.is_lazy and image.data is data and image.axes == "ZYX"


def test_image_returned_as_is_or_relabelled():
    image = Image(
        np.zeros((3, 8, 8), np.uint8),
        axes="ZYX",
        pixel_size=(2.0, 0.5, 0.5),
        units=("micrometer",) * 3,
    )
    assert read_image(image) is image
    relabelled = read_image(image, axes="TYX")
    assert relabelled.axes == "TYX"
    # the Z spacing means nothing as a time interval: 1.0 and no units
    assert relabelled.pixel_size == (1.0, 0.5, 0.5) and relabelled.units is None


@pytest.mark.parametrize(
    ("dtype", "values", "expected"),
    [
        (np.bool_, [0, 1], np.uint8),
        (np.int8, [0, 100], np.uint8),
        (np.int16, [0, 255], np.uint8),
        (np.int16, [0, 300], np.uint16),
        (np.int32, [0, 65535], np.uint16),
        (np.uint32, [0, 70000], np.float32),
        (np.int16, [-5, 10], np.float32),
        (np.int64, [0, 1000], np.uint16),
        (np.float64, [0.25, 1e6], np.float32),
        (np.float16, [0.5, 2.0], np.float32),
    ],
)
def test_dtype_rule_is_lossless(dtype, values, expected):
    array = np.array(values * 8, dtype=dtype).reshape(4, 4)
    image = read_image(array)
    assert image.dtype == np.dtype(expected)
    np.testing.assert_array_equal(image.data.astype(np.float64), array.astype(np.float64))


def test_dtype_rule_on_dask_uses_value_range():
    data = da.from_array(np.arange(0, 4096, dtype=np.int32).reshape(64, 64), chunks=16)
    image = read_image(data)
    assert image.is_lazy and image.dtype == np.uint16
    np.testing.assert_array_equal(image.data.compute(), np.arange(4096).reshape(64, 64))


def test_supported_dtypes_untouched(rng):
    for dtype in (np.uint8, np.uint16, np.float32):
        array = (rng.random((8, 8)) * 200).astype(dtype)
        assert read_image(array).data is array


def test_array_errors():
    _error(
        np.zeros((64, 80, 3), np.uint8),
        "array: has 3 channels on axis 2 (shape (64, 80, 3)); decrappify needs a "
        "single-channel image — split the channels first",
    )
    _error(
        np.zeros((2, 3, 64, 80), np.uint8),
        "array: expected a 2D or 3D single-channel image, got shape (2, 3, 64, 80)",
    )
    _error(np.zeros((0, 80), np.uint8), "array: image is empty (shape (0, 80))")
    _error(
        np.zeros(80, np.uint8), "array: expected a 2D or 3D single-channel image, got shape (80,)"
    )
    _error(
        np.zeros((8, 8), np.complex64),
        "array: unsupported pixel type complex64; expected integer or real floating-point pixels",
    )
    _error(
        np.zeros((8, 8), np.uint8), "axes must be one of 'YX', 'ZYX' or 'TYX', got 'XY'", axes="XY"
    )
    _error(
        np.zeros((3, 8, 8), np.uint8),
        "array: axes 'YX' given, but the image has shape (3, 8, 8)",
        axes="YX",
    )
    with pytest.raises(
        InputError, match="^expected a path, a numpy/dask array or an Image, got int$"
    ):
        read_image(3)


def test_4d_array_with_leading_singletons_squeezed():
    image = read_image(np.zeros((1, 1, 5, 16, 16), np.uint16))
    assert image.axes == "ZYX" and image.shape == (5, 16, 16)


# --------------------------------------------------------------------------- TIFF


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_small_tiff_read_eagerly_keeps_dtype(tmp_path, rng, dtype):
    array = (rng.random((3, 40, 50)) * 250).astype(dtype)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, array, photometric="minisblack")
    image = read_image(path)
    assert isinstance(image.data, np.ndarray)
    assert (image.axes, image.dtype, image.source) == ("ZYX", np.dtype(dtype), str(path))
    np.testing.assert_array_equal(image.data, array)


def test_ome_tiff_metadata(tmp_path):
    path = tmp_path / "ome.ome.tif"
    meta = {
        "axes": "ZYX",
        "PhysicalSizeX": 0.05,
        "PhysicalSizeY": 0.05,
        "PhysicalSizeZ": 0.2,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeYUnit": "µm",
        "PhysicalSizeZUnit": "µm",
    }
    tifffile.imwrite(path, np.zeros((4, 32, 48), np.uint16), ome=True, metadata=meta)
    image = read_image(path)
    assert image.axes == "ZYX"
    assert image.pixel_size == pytest.approx((0.2, 0.05, 0.05))
    assert image.units == ("micrometer",) * 3


def test_ome_tiff_time_series_and_nanometers(tmp_path):
    path = tmp_path / "t.ome.tif"
    meta = {
        "axes": "TYX",
        "PhysicalSizeX": 4.0,
        "PhysicalSizeY": 4.0,
        "PhysicalSizeXUnit": "nm",
        "PhysicalSizeYUnit": "nm",
        "TimeIncrement": 0.5,
        "TimeIncrementUnit": "ms",
    }
    tifffile.imwrite(path, np.zeros((6, 32, 48), np.uint8), ome=True, metadata=meta)
    image = read_image(path)
    assert image.axes == "TYX"
    assert image.pixel_size == pytest.approx((0.5, 4.0, 4.0))
    assert image.units == ("millisecond", "nanometer", "nanometer")


def test_imagej_metadata(tmp_path):
    zyx = tmp_path / "ij.tif"
    tifffile.imwrite(
        zyx,
        np.zeros((5, 32, 40), np.uint16),
        imagej=True,
        resolution=(4.0, 4.0),
        metadata={"axes": "ZYX", "spacing": 1.5, "unit": "um"},
    )
    image = read_image(zyx)
    assert (image.axes, image.pixel_size, image.units) == (
        "ZYX",
        pytest.approx((1.5, 0.25, 0.25)),
        ("micrometer",) * 3,
    )
    tyx = tmp_path / "ijt.tif"
    tifffile.imwrite(
        tyx,
        np.zeros((5, 32, 40), np.float32),
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"axes": "TYX", "finterval": 2.0, "unit": "um"},
    )
    image = read_image(tyx)
    assert (image.axes, image.pixel_size, image.units) == (
        "TYX",
        pytest.approx((2.0, 0.5, 0.5)),
        ("second", "micrometer", "micrometer"),
    )


def test_resolution_tags(tmp_path):
    path = tmp_path / "res.tif"
    tifffile.imwrite(
        path,
        np.zeros((32, 40), np.uint8),
        resolution=(1e4 / 0.5, 1e4 / 0.5),
        resolutionunit="CENTIMETER",
    )
    image = read_image(path)
    assert image.pixel_size == pytest.approx((0.5, 0.5))
    assert image.units == ("micrometer", "micrometer")
    dpi = tmp_path / "dpi.tif"
    tifffile.imwrite(dpi, np.zeros((32, 40), np.uint8), resolution=(72, 72), resolutionunit="INCH")
    assert read_image(dpi).pixel_size is None  # a screen default says nothing
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((32, 40), np.uint8))
    assert read_image(plain).pixel_size is None


def test_known_yx_unknown_z_spacing(tmp_path):
    path = tmp_path / "noz.ome.tif"
    meta = {"axes": "ZYX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1}
    tifffile.imwrite(path, np.zeros((3, 16, 16), np.uint8), ome=True, metadata=meta)
    image = read_image(path)
    assert image.pixel_size == pytest.approx((1.0, 0.1, 0.1))  # ImageJ's convention
    assert image.units == ("micrometer",) * 3


def test_axes_override(tmp_path):
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, np.zeros((3, 16, 16), np.uint8), photometric="minisblack")
    assert read_image(path).axes == "ZYX"
    assert read_image(path, axes="TYX").axes == "TYX"


def test_singleton_tiff_axes_squeezed(tmp_path):
    path = tmp_path / "one.tif"
    tifffile.imwrite(
        path, np.zeros((1, 1, 16, 24), np.uint16), imagej=True, metadata={"axes": "TZYX"}
    )
    image = read_image(path)
    assert (image.axes, image.shape) == ("YX", (16, 24))


# each series kind with length-1 axes, read eagerly, through a memory map and through the
# Zarr store (tifffile 2026.5 dropped series.get_shape(squeeze) and squeezes when listing)
_SERIES_KINDS = {
    "shaped": ((1, 3, 1, 40, 48), {"photometric": "minisblack"}, "ZYX"),
    "shaped-2d": ((1, 1, 40, 48), {"photometric": "minisblack"}, "YX"),
    "imagej": ((1, 3, 1, 40, 48), {"imagej": True, "metadata": {"axes": "TZCYX"}}, "ZYX"),
    "ome": ((1, 1, 3, 40, 48), {"ome": True, "metadata": {"axes": "TCZYX"}}, "ZYX"),
    "generic": ((3, 40, 48), {"photometric": "minisblack", "metadata": None}, "ZYX"),
}


@pytest.mark.parametrize("kind", sorted(_SERIES_KINDS))
@pytest.mark.parametrize("storage", ["eager", "memmap", "tiled"])
def test_singleton_axes_squeezed_for_every_series_kind(tmp_path, rng, monkeypatch, kind, storage):
    from decrappify.io.tiff import _first_series, _squeezed_shape_axes

    shape, options, axes = _SERIES_KINDS[kind]
    array = rng.integers(0, 60000, shape, dtype=np.uint16)
    expected = array.reshape([n for n in shape if n > 1] if axes == "ZYX" else shape[-2:])
    if storage == "tiled":
        options = {**options, "tile": (16, 16), "compression": "zlib"}
    path = tmp_path / f"{kind}.tif"
    tifffile.imwrite(path, array, **options)
    with tifffile.TiffFile(path) as tif:
        stored_shape, labels = _squeezed_shape_axes(_first_series(tif, path))
    assert stored_shape == expected.shape and labels.endswith("YX") and len(labels) == len(axes)
    if storage != "eager":
        monkeypatch.setattr("decrappify.io.tiff.EAGER_MAX_BYTES", 1000)
    image = read_image(path)
    assert (image.axes, image.shape, image.is_lazy) == (axes, expected.shape, storage != "eager")
    if storage != "eager":
        sources = [v for v in dict(image.data.dask).values() if isinstance(v, TiffSource)]
        assert (sources[0].memmap is not None) == (storage == "memmap")
        region = (..., slice(5, 30), slice(7, 40))
        np.testing.assert_array_equal(image.data[region].compute(), expected[region])
    np.testing.assert_array_equal(np.asarray(image.data), expected)


def _write_big_tiled(path, size, tile=256):
    def tiles():
        for ty in range(size // tile):
            for tx in range(size // tile):
                yield np.full((tile, tile), (ty * 7 + tx) % 251, np.uint8)

    tifffile.imwrite(
        path, tiles(), shape=(size, size), dtype=np.uint8, tile=(tile, tile), compression="zlib"
    )


def test_large_tiled_tiff_is_lazy_and_reads_only_one_block(tmp_path):
    path = tmp_path / "big.tif"
    _write_big_tiled(path, 8192)
    assert 8192 * 8192 > EAGER_MAX_BYTES
    image = read_image(path)
    assert image.is_lazy and image.shape == (8192, 8192) and image.dtype == np.uint8
    assert image.data.chunks[0][0] == 1024 and image.data.numblocks == (8, 8)
    image.data.blocks[0, 0].compute()  # warm up imports and the file handle
    tracemalloc.start()
    try:
        block = image.data.blocks[3, 5].compute()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20  # one 1 MiB block plus tile buffers, never the 64 MiB image
    # block (3, 5) covers tiles rows 12..15, columns 20..23
    expected = np.kron(
        (np.arange(12, 16)[:, None] * 7 + np.arange(20, 24)[None, :]) % 251,
        np.ones((256, 256), np.int64),
    )
    np.testing.assert_array_equal(block, expected)


def test_lazy_uncompressed_tiff_uses_memmap_and_pickles(tmp_path, rng, monkeypatch):
    import pickle

    monkeypatch.setattr("decrappify.io.tiff.EAGER_MAX_BYTES", 1000)
    array = rng.integers(0, 60000, (3, 300, 200), dtype=np.uint16)
    path = tmp_path / "contig.tif"
    tifffile.imwrite(path, array, photometric="minisblack")
    image = read_image(path)
    assert image.is_lazy
    sources = [v for v in dict(image.data.dask).values() if isinstance(v, TiffSource)]
    assert len(sources) == 1 and sources[0].memmap is not None
    restored = pickle.loads(pickle.dumps(image.data))
    np.testing.assert_array_equal(restored[1, 50:250, 20:180].compute(), array[1, 50:250, 20:180])
    tiled = tmp_path / "tiled.tif"
    tifffile.imwrite(tiled, array, tile=(64, 64), compression="zlib", photometric="minisblack")
    lazy = pickle.loads(pickle.dumps(read_image(tiled).data))
    np.testing.assert_array_equal(lazy.compute(), array)


def test_tiff_errors(tmp_path):
    _error(tmp_path / "missing.tif", f"{tmp_path / 'missing.tif'}: file not found")
    text = tmp_path / "text.tif"
    text.write_text("hello, not an image")
    _error(text, f"{text}: not a readable TIFF file (not a TIFF file: header=b'hell')")
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    _error(
        other,
        f"{other}: not a TIFF file or Zarr store; decrappify reads .tif/.tiff files, "
        ".zarr/.ome.zarr stores and folders of .tif files",
    )
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((64, 80, 3), np.uint8), photometric="rgb")
    _error(
        rgb,
        f"{rgb}: has 3 channels on axis 2 (shape (64, 80, 3)); decrappify needs a "
        "single-channel image — split the channels first",
    )
    channels = tmp_path / "zc.tif"
    tifffile.imwrite(
        channels, np.zeros((5, 2, 32, 40), np.uint16), imagej=True, metadata={"axes": "ZCYX"}
    )
    _error(
        channels,
        f"{channels}: has 2 channels on axis 1 (shape (5, 2, 32, 40)); decrappify "
        "needs a single-channel image — split the channels first",
    )
    four = tmp_path / "tz.tif"
    tifffile.imwrite(
        four, np.zeros((2, 5, 32, 40), np.uint16), imagej=True, metadata={"axes": "TZYX"}
    )
    _error(
        four,
        f"{four}: expected a 2D or 3D single-channel image, got shape (2, 5, 32, 40) (axes TZYX)",
    )


def test_truncated_tiff(tmp_path, rng):
    path = tmp_path / "full.tif"
    tifffile.imwrite(path, rng.integers(0, 255, (300, 400), dtype=np.uint8))
    data = path.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])
    _error(
        cut,
        f"{cut}: truncated or corrupt TIFF (image data ends at byte {len(data)}, "
        f"the file has {len(data) // 2} bytes)",
    )
    header_only = tmp_path / "header.tif"
    header_only.write_bytes(data[:100])
    with pytest.raises(InputError, match=f"^{re.escape(str(header_only))}: not a readable TIFF"):
        read_image(header_only)


def test_corrupt_tile_raises_input_error_when_computed(tmp_path, rng, monkeypatch):
    monkeypatch.setattr("decrappify.io.tiff.EAGER_MAX_BYTES", 1000)
    monkeypatch.setattr("decrappify.io.tiff.BLOCK_TARGET", 128)  # one dask block per tile
    path = tmp_path / "tiles.tif"
    tifffile.imwrite(
        path, rng.integers(0, 255, (256, 256), dtype=np.uint8), tile=(128, 128), compression="zlib"
    )
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[0].dataoffsets[3]
    raw = bytearray(path.read_bytes())
    raw[offset : offset + 16] = b"\xff" * 16
    path.write_bytes(bytes(raw))
    image = read_image(path)
    np.asarray(image.data[:128, :128])  # an intact tile reads
    with pytest.raises(InputError, match=f"^{re.escape(str(path))}: cannot read TIFF data"):
        image.data[128:, 128:].compute()


# --------------------------------------------------------------------------- folder stacks


def test_folder_stack_natural_order_and_lazy(tmp_path, rng):
    folder = tmp_path / "slices"
    folder.mkdir()
    planes = {}
    for index in (1, 2, 10, 3):
        plane = rng.integers(0, 60000, (30, 40), dtype=np.uint16)
        tifffile.imwrite(
            folder / f"img{index}.tif",
            plane,
            resolution=(1e4 / 0.2, 1e4 / 0.2),
            resolutionunit="CENTIMETER",
            compression="zlib" if index % 2 else None,  # memory-mapped and decoded slices
        )
        planes[index] = plane
    (folder / ".hidden.tif").write_bytes(b"junk")
    (folder / "notes.txt").write_text("ignored")
    image = read_image(folder)
    assert image.is_lazy and image.axes == "ZYX" and image.shape == (4, 30, 40)
    assert image.data.chunks == ((1, 1, 1, 1), (30,), (40,))
    np.testing.assert_array_equal(
        image.data.compute(), np.stack([planes[i] for i in (1, 2, 3, 10)])
    )
    assert image.pixel_size == pytest.approx((1.0, 0.2, 0.2))
    assert read_image(folder, axes="TYX").axes == "TYX"


def test_folder_stack_of_large_slices_is_tiled(tmp_path, rng, monkeypatch):
    monkeypatch.setattr("decrappify.io.tiff.EAGER_MAX_BYTES", 1000)
    monkeypatch.setattr("decrappify.io.tiff.BLOCK_TARGET", 64)
    folder = tmp_path / "big"
    folder.mkdir()
    planes = [rng.integers(0, 255, (200, 150), dtype=np.uint8) for _ in range(3)]
    for index, plane in enumerate(planes):
        tifffile.imwrite(folder / f"s{index}.tif", plane, tile=(64, 64), compression="zlib")
    image = read_image(folder)
    assert image.data.chunks == ((1, 1, 1), (64, 64, 64, 8), (64, 64, 22))
    np.testing.assert_array_equal(
        image.data[1, 60:130, 10:140].compute(), planes[1][60:130, 10:140]
    )
    np.testing.assert_array_equal(image.data.compute(), np.stack(planes))


def test_folder_stack_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    _error(empty, f"{empty}: folder contains no .tif or .tiff files")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    tifffile.imwrite(mixed / "a1.tif", np.zeros((30, 40), np.uint8))
    tifffile.imwrite(mixed / "a2.tif", np.zeros((30, 41), np.uint8))
    _error(
        mixed,
        f"{mixed}: all TIFF files of a folder stack must have the same shape and "
        "dtype; a1.tif is (30, 40) uint8, a2.tif is (30, 41) uint8",
    )
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    tifffile.imwrite(stacks / "s.tif", np.zeros((2, 30, 40), np.uint8), photometric="minisblack")
    _error(stacks, f"{stacks}: a folder stack needs 2D TIFF files, but s.tif has shape (2, 30, 40)")


# --------------------------------------------------------------------------- check_finite


def test_check_finite():
    check_finite(np.zeros((4, 4), np.uint16), "ints")  # ints skip the scan
    good = np.ones((8, 8), np.float32)
    check_finite(good, "good")
    bad = good.copy()
    bad[0, :3] = np.nan
    bad[5, 5] = np.inf
    with pytest.raises(
        InputError,
        match=re.escape(
            "bad.tif: has 3 NaN and 1 infinite pixel values; replace them with finite values first"
        ),
    ):
        check_finite(bad, "bad.tif")
    lazy = da.from_array(bad, chunks=4)
    with pytest.raises(InputError, match="^lazy: has 3 NaN and 1 infinite"):
        check_finite(lazy, "lazy")
    check_finite(da.from_array(good, chunks=4), "ok")


def test_check_finite_large_numpy_in_slabs(monkeypatch):
    from decrappify.io import validate

    data = np.ones((64, 32, 32), np.float32)
    data[40, 1, 1] = -np.inf
    assert validate._count_nonfinite_numpy(data, slab_bytes=4096) == (0, 1)
