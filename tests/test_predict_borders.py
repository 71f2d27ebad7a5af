"""The image's borders: ``decrappify predict`` equals the network on the whole image,
reflect-padded far beyond its receptive field, at the outermost pixels too.

Between tiles the overlap's context margin may be less than a U-Net's receptive field (the
overlap is capped at half the tile) and the cross-fade hides the residual; at the image's
borders nothing does, so windows read the whole field past them (``context``). Before
they did, a 128² image with the small ResNet U-Net of the export tests was 5.3e-2 of the
range off at its borders (32 reflected pixels for a radius of about 70). The ``naf`` one's
margin covers its radius of 7: its windows read that margin, as before (1.8e-4).
"""

from __future__ import annotations

import numpy as np
import pytest

from _export_model import NAF, NORM, saved_model
from _tiny import whole_image_prediction
from decrappify.config.predict import PredictConfig
from decrappify.events import run_to_end
from decrappify.models import load_model
from decrappify.normalize import normalize, percentile_range
from decrappify.predict.engine import iter_predict_image
from decrappify.sample import synthetic_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(("arch", "context", "bound"), [("resnet", 96, 1e-4), ("naf", 7, 1e-3)])
def test_the_borders_of_a_small_image_equal_the_network_on_generous_reflection(
    arch, context, bound, tmp_path
):
    model = saved_model(tmp_path, scale=2, **(NAF if arch == "naf" else {}))
    lr = np.asarray(synthetic_image("em", (256, 256), seed=5).data)[::2, ::2]
    config = PredictConfig.build(dtype="float32", device="cpu", threads=1)
    result = run_to_end(iter_predict_image(model, lr, None, config))
    # resnet: the overlap is capped, so windows read a quarter of the tile (cut to 384 for
    # the image) past the borders; naf: its radius of 7, which its margin covers
    assert result.stats["context"] == context
    lo, hi = percentile_range(lr, NORM.low, NORM.high)
    ours = (np.asarray(result.image.data, dtype=np.float64) - lo) / (hi - lo)
    # 120 reflected pixels (a multiple of the networks' grids) hold the whole field
    whole = whole_image_prediction(load_model(model).net.eval(), normalize(lr, lo, hi), pad=120)
    # everywhere, the outermost rows and columns included (measured: 1.1e-6 and 1.8e-4)
    difference = np.abs(ours - whole).max()
    assert difference <= bound * float(whole.max() - whole.min()), difference
