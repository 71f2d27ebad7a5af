"""The canvas renders decrappify layers (needs a shown viewer under Xvfb)."""

from __future__ import annotations

import pytest

from decrappify._napari._io_hooks import sample_em

pytestmark = pytest.mark.napari


def test_canvas_shows_sample(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    [(data, kwargs, _)] = sample_em()
    viewer.add_image(data, **kwargs)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.ndim == 3 and shot.shape[2] == 4
    gray = shot[..., :3].astype(float).mean(axis=2)
    assert gray.std() > 20  # membranes and cytoplasm, not a blank canvas
