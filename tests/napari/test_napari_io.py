"""npe2 manifest, reader, writer and sample data."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from decrappify._napari._io_hooks import (
    get_reader,
    read_layers,
    sample_em,
    sample_fluorescence,
    sample_fluorescence_stack,
    write_ome_zarr,
)
from decrappify.errors import InputError
from decrappify.io import Image, read_image, write_image

pytestmark = pytest.mark.napari

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "src" / "decrappify" / "napari.yaml"


def test_manifest_is_valid_and_commands_import():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(MANIFEST)
    assert manifest.name == "decrappify"
    manifest.validate_imports()  # every python_name resolves
    contrib = manifest.contributions
    assert [w.display_name for w in contrib.widgets] == [
        "All tools",
        "Crappify",
        "Train",
        "Super-resolve",
        "Compare",
    ]
    assert {s.key for s in contrib.sample_data} == {"em", "fluorescence", "fluorescence-stack"}
    reader = contrib.readers[0]
    assert set(reader.filename_patterns) == {"*.tif", "*.tiff", "*.zarr"}
    assert reader.accepts_directories
    assert contrib.writers[0].filename_extensions == [".zarr"]
    assert (ROOT / "napari.yaml").resolve() == MANIFEST


def test_reader_declines_what_it_cannot_read(tmp_path):
    png = tmp_path / "a.png"
    png.write_bytes(b"\x89PNG")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert get_reader(str(tmp_path / "missing.tif")) is None
    assert get_reader(str(png)) is None
    assert get_reader(str(empty)) is None
    assert get_reader("https://example.org/image.tif") is None
    assert get_reader([str(png), str(tmp_path / "missing.tif")]) is None
    assert get_reader([]) is None


def test_reader_returns_none_for_corrupt_files(tmp_path, notes):
    bad_tif = tmp_path / "bad.tif"
    bad_tif.write_bytes(b"II*\x00garbage" * 10)
    bad_zarr = tmp_path / "bad.zarr"
    bad_zarr.mkdir()
    (bad_zarr / "zarr.json").write_text("{not json")
    for path in (bad_tif, bad_zarr):
        reader = get_reader(str(path))
        assert reader is read_layers  # it looks readable ...
        assert reader(str(path)) is None  # ... but reading fails without raising
    assert len(notes["warning"]) == 2
    assert notes["warning"][0].startswith(f"decrappify could not read {bad_tif}: ")


def test_reader_tiff_with_pixel_size(tmp_path, rng):
    data = rng.integers(0, 4000, (3, 40, 50), dtype=np.uint16)
    image = Image(data, axes="ZYX", pixel_size=(0.5, 0.1, 0.1), units=("micrometer",) * 3)
    path = write_image(image, tmp_path / "cells.tif")
    [(layer_data, kwargs, kind)] = get_reader(str(path))(str(path))
    assert kind == "image" and isinstance(layer_data, np.ndarray)
    np.testing.assert_array_equal(layer_data, data)
    assert kwargs["scale"] == pytest.approx((0.5, 0.1, 0.1))
    assert kwargs["units"] == ("micrometer",) * 3
    assert kwargs["name"] == "cells" and kwargs["metadata"]["decrappify"]["axes"] == "ZYX"
    lo, hi = kwargs["contrast_limits"]
    assert np.percentile(data, 0.1) == pytest.approx(lo) and np.percentile(
        data, 99.9
    ) == pytest.approx(hi)


def test_reader_big_tiff_is_lazy(tmp_path, rng, monkeypatch):
    import decrappify.io.tiff as tiff

    data = rng.integers(0, 255, (128, 96), dtype=np.uint8)
    path = write_image(
        Image(data, pixel_size=(4.0, 4.0), units=("nanometer",) * 2), tmp_path / "em.tif"
    )
    monkeypatch.setattr(tiff, "EAGER_MAX_BYTES", 1024)
    [(layer_data, kwargs, _)] = read_layers(str(path))
    assert isinstance(layer_data, da.Array)
    np.testing.assert_array_equal(layer_data.compute(), data)
    assert kwargs["scale"] == (4.0, 4.0) and kwargs["units"] == ("nanometer", "nanometer")


def test_reader_ome_zarr_pyramid_is_multiscale(tmp_path, rng):
    data = rng.integers(0, 255, (2, 300, 260), dtype=np.uint8)
    image = Image(
        data,
        axes="ZYX",
        pixel_size=(1.0, 0.2, 0.2),
        units=("micrometer",) * 3,
        translate=(0.0, 5.0, 7.0),
    )
    path = write_image(image, tmp_path / "stack.ome.zarr", levels=3)
    [(levels, kwargs, _)] = get_reader(str(path))(str(path))
    assert kwargs["multiscale"] is True and len(levels) == 3
    assert [lv.shape for lv in levels] == [(2, 300, 260), (2, 150, 130), (2, 75, 65)]
    assert all(isinstance(lv, da.Array) for lv in levels)
    np.testing.assert_array_equal(levels[0].compute(), data)
    assert kwargs["scale"] == pytest.approx((1.0, 0.2, 0.2))
    assert kwargs["translate"] == pytest.approx((0.0, 5.0, 7.0))
    assert kwargs["name"] == "stack"


def test_reader_tiff_folder_is_a_stack(tmp_path, rng):
    folder = tmp_path / "series"
    folder.mkdir()
    planes = rng.integers(0, 255, (3, 20, 24), dtype=np.uint8)
    for i, plane in enumerate(planes):
        write_image(Image(plane), folder / f"z{i}.tif")
    [(layer_data, kwargs, _)] = read_layers(str(folder))
    np.testing.assert_array_equal(np.asarray(layer_data), planes)
    assert kwargs["metadata"]["decrappify"]["axes"] == "ZYX"


def test_writer_round_trip(tmp_path, rng):
    from napari.layers import Image as ImageLayer

    data = rng.random((2, 32, 40)).astype(np.float32)
    layer = ImageLayer(
        data, scale=(0.3, 0.1, 0.1), translate=(0.0, 1.5, 2.5), units=("micrometer",) * 3, name="x"
    )
    layer_data, meta, _ = layer.as_layer_data_tuple()
    [written] = write_ome_zarr(str(tmp_path / "out"), layer_data, meta)
    assert written.endswith("out.zarr")
    back = read_image(written)
    np.testing.assert_array_equal(np.asarray(back.data), data)
    assert back.pixel_size == pytest.approx((0.3, 0.1, 0.1))
    assert back.translate == pytest.approx((0.0, 1.5, 2.5))
    assert back.units == ("micrometer",) * 3 and back.axes == "ZYX"


def test_writer_pixel_units_and_refusals(tmp_path):
    [written] = write_ome_zarr(
        str(tmp_path / "plain.zarr"),
        np.arange(256, dtype=np.float64).reshape(16, 16),
        {"scale": (1.0, 1.0), "units": ("pixel", "pixel"), "name": "plain"},
    )
    back = read_image(written)
    assert back.pixel_size is None and back.dtype == np.float32
    with pytest.raises(InputError, match="photo: RGB layers cannot be saved"):
        write_ome_zarr(
            str(tmp_path / "rgb.zarr"),
            np.zeros((8, 8, 3), np.uint8),
            {"rgb": True, "name": "photo"},
        )
    with pytest.raises(InputError, match=r"v: expected a 2D or 3D image, got shape \(2, 2, 8, 8\)"):
        write_ome_zarr(str(tmp_path / "v.zarr"), np.zeros((2, 2, 8, 8), np.uint8), {"name": "v"})


def test_sample_data(monkeypatch):
    from decrappify._napari import _io_hooks

    assert _io_hooks.SAMPLE_SHAPE == (1024, 1024)
    assert _io_hooks.SAMPLE_STACK_SHAPE == (32, 512, 512)
    monkeypatch.setattr(_io_hooks, "SAMPLE_SHAPE", (256, 192))  # the same, only faster
    monkeypatch.setattr(_io_hooks, "SAMPLE_STACK_SHAPE", (4, 128, 96))
    [(em, em_kw, _)] = sample_em()
    assert em.shape == (256, 192) and em.dtype == np.uint8
    assert em_kw["scale"] == (4.0, 4.0) and em_kw["units"] == ("nanometer", "nanometer")
    assert em_kw["name"] == "synthetic em"
    [(fl, fl_kw, _)] = sample_fluorescence()
    assert fl.shape == (256, 192) and fl.dtype == np.uint16
    assert fl_kw["scale"] == (0.065, 0.065) and fl_kw["units"] == ("micrometer", "micrometer")
    lo, hi = fl_kw["contrast_limits"]
    assert 0 < lo < hi < 65535
    assert (lo, hi) == pytest.approx((np.percentile(fl, 0.1), np.percentile(fl, 99.9)))
    [(stack, st_kw, _)] = sample_fluorescence_stack()
    assert isinstance(stack, da.Array) and stack.shape == (4, 128, 96)
    assert stack.chunks[0] == (1, 1, 1, 1)  # rendered plane by plane when shown
    assert st_kw["scale"] == (0.2, 0.065, 0.065)


def test_napari_uses_the_plugin(make_napari_viewer, tmp_path, rng, monkeypatch):
    from decrappify._napari import _io_hooks

    monkeypatch.setattr(_io_hooks, "SAMPLE_SHAPE", (128, 128))
    viewer = make_napari_viewer()
    data = rng.integers(0, 255, (20, 24), dtype=np.uint8)
    path = write_image(
        Image(data, pixel_size=(0.5, 0.5), units=("micrometer",) * 2), tmp_path / "a.tif"
    )
    [layer] = viewer.open(str(path), plugin="decrappify")
    assert layer.source.reader_plugin == "decrappify"
    assert tuple(layer.scale) == (0.5, 0.5) and [str(u) for u in layer.units] == ["micrometer"] * 2
    np.testing.assert_array_equal(layer.data, data)
    [sample] = viewer.open_sample("decrappify", "em")
    assert sample.name == "synthetic em"
    _, crappify = viewer.window.add_plugin_dock_widget("decrappify", "Crappify")
    _, compare = viewer.window.add_plugin_dock_widget("decrappify", "Compare")
    assert type(crappify).__name__ == "CrappifyWidget" and type(compare).__name__ == "CompareWidget"
    assert crappify.layer_picker.names() == ["synthetic em", "a"]
