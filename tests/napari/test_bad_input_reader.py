"""The napari reader on damaged files: no crash, a warning naming the file, or a clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from decrappify._napari._io_hooks import get_reader, read_layers
from decrappify.errors import InputError
from decrappify.io import write_image
from decrappify.sample import synthetic_image

pytestmark = pytest.mark.napari


@pytest.mark.parametrize("how", ["truncate", "random"])
def test_a_damaged_chunk_is_an_error_naming_it_when_displayed(bad, how):
    store, key = bad.damaged_zarr(how=how)
    layers = read_layers(str(store))  # lazy: nothing is decoded yet
    assert layers is not None
    data, kwargs, kind = layers[0]
    assert kind == "image" and data.shape == (64, 64)
    with pytest.raises(InputError, match=rf"^{store}: chunk {key} is damaged or truncated \("):
        np.asarray(data)


def test_a_damaged_pyramid_level_still_opens(bad, notes):
    image = synthetic_image("em", (600, 600), seed=0)
    store = write_image(image, bad.path("pyramid.zarr"), chunks=(128, 128))
    bad.damage_file(store / "2" / "c" / "0" / "0", "truncate")  # where contrast is sampled
    layers = read_layers(str(store))
    assert layers is not None
    levels, kwargs, _ = layers[0]
    assert kwargs["multiscale"] is True and len(levels) == 3
    assert "contrast_limits" not in kwargs  # napari chooses; the read did not fail for it
    with pytest.raises(InputError, match=r"pyramid.zarr/2: chunk c/0/0 is damaged"):
        np.asarray(levels[2])
    assert notes["warning"] == []


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda store: (store / "zarr.json").write_text(
                json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {"ome": {
                    "version": "0.5", "multiscales": "abc"}}})
            ),
            'invalid OME-Zarr metadata: multiscales must be a list of objects (got "abc")',
        ),
        (
            lambda store: (store / "0" / "zarr.json").write_bytes(b"\xff\xfe{ not json"),
            "invalid OME-Zarr metadata: the metadata of the array '0' is damaged",
        ),
    ],
)  # fmt: skip
def test_damaged_metadata_gives_a_warning_and_no_layer(bad, notes, damage, message):
    store = bad.zarr("meta.zarr")
    damage(store)
    assert get_reader(str(store)) is not None
    assert read_layers(str(store)) is None
    assert len(notes["warning"]) == 1
    assert notes["warning"][0].startswith(f"decrappify could not read {store}: {store}: {message}")


def test_a_truncated_tiff_gives_a_warning_and_no_layer(bad, notes):
    path = bad.tif("cut.tif", size=256)
    path.write_bytes(path.read_bytes()[:30_000])
    assert read_layers(str(path)) is None
    assert len(notes["warning"]) == 1
    assert notes["warning"][0].startswith(f"decrappify could not read {path}: {path}: truncated")
