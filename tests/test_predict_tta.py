"""Test-time augmentation over the dihedral group: transforms, merging, zero spread."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from decrappify.errors import InputError
from decrappify.predict.tta import (
    DIHEDRAL,
    dihedral,
    dihedral_stack,
    inverse_dihedral,
    merge_dihedral,
    tta_predict,
)


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).random((2, 12, 12)).astype(np.float32)


def test_transforms_are_the_eight_distinct_symmetries_and_invert(image):
    seen = {dihedral(image, k).tobytes() for k in DIHEDRAL}
    assert len(seen) == 8
    for k in DIHEDRAL:
        np.testing.assert_array_equal(inverse_dihedral(dihedral(image, k), k), image)
    np.testing.assert_array_equal(dihedral(image, 1), np.rot90(image, 1, axes=(1, 2)))
    np.testing.assert_array_equal(dihedral(image, 4), image[..., ::-1])
    with pytest.raises(InputError, match="expected 0-7, got 8"):
        dihedral(image, 8)


def equivariant_upsampler(x: np.ndarray) -> np.ndarray:
    """Isotropic blur with mirrored borders, then 2x pixel replication: dihedral-equivariant."""
    smooth = ndimage.gaussian_filter(x, (0,) * (x.ndim - 2) + (1.3, 1.3), mode="mirror")
    return np.repeat(np.repeat(smooth, 2, axis=-2), 2, axis=-1)


def test_an_equivariant_model_has_zero_spread(image):
    plane = image[0, :, :10]  # non-square: odd transforms reach the model transposed
    result = tta_predict(equivariant_upsampler, plane)
    assert result.n == 8 and result.mean.shape == (24, 20)
    assert float(result.std.max()) < 1e-6
    np.testing.assert_allclose(result.mean, equivariant_upsampler(plane), atol=1e-6)


def test_an_equivariant_torch_network_has_zero_spread():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():  # symmetrise the kernel over the dihedral group
        w = conv.weight[0, 0]
        conv.weight[0, 0] = (
            sum(torch.from_numpy(np.ascontiguousarray(dihedral(w.numpy(), k))) for k in DIHEDRAL)
            / 8
        )
    net = torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.Upsample(scale_factor=2))

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(np.ascontiguousarray(batch))).numpy()

    tiles = np.random.default_rng(1).random((3, 1, 16, 16)).astype(np.float32)
    merged = merge_dihedral(
        predict(dihedral_stack(tiles).reshape(24, 1, 16, 16)).reshape(8, 3, 1, 32, 32)
    )
    assert float(merged.std.max()) < 1e-6
    np.testing.assert_allclose(merged.mean, predict(tiles), atol=1e-6)


def test_a_model_that_depends_on_orientation_has_spread_where_it_guesses(image):
    def shifter(x: np.ndarray) -> np.ndarray:  # looks one pixel to the right: not equivariant
        return np.roll(x, 1, axis=-1)

    result = tta_predict(shifter, image)
    assert result.std.shape == image.shape
    assert float(result.std.mean()) > 0.1
    flat = tta_predict(shifter, np.ones((8, 8)))
    assert float(flat.std.max()) == 0.0  # no structure, nothing to guess


def test_batched_and_streamed_merging_agree_and_errors(image):
    square = image[:, :8, :8]
    streamed = tta_predict(lambda x: x**2 + np.roll(x, 1, axis=-2), square)
    stacked = dihedral_stack(square)
    assert stacked.shape == (8, 2, 8, 8)
    batched = merge_dihedral(stacked**2 + np.roll(stacked, 1, axis=-2))
    np.testing.assert_allclose(batched.mean, streamed.mean, atol=1e-6)
    np.testing.assert_allclose(batched.std, streamed.std, atol=1e-6)
    with pytest.raises(InputError, match="needs square tiles, got shape"):
        dihedral_stack(image[:, :8, :6])
    with pytest.raises(InputError, match="expected 8 outputs, got 3"):
        merge_dihedral(stacked[:3])
    with pytest.raises(InputError, match="no transform given"):
        tta_predict(lambda x: x, square, transforms=())
