"""A small saved model for the bioimage.io export tests (``from _export_model import ...``).

Its encoder stops at 1/8 of the grid (``encoder_depth`` 2) and it has no self-attention,
which keeps the measured receptive field, and so the package's halo and smallest input,
small. ``NAF`` is the same for the ``"naf"`` family (the default generator): two levels
(1/4 of the grid), width 8.
"""

from __future__ import annotations

from pathlib import Path

import torch

from decrappify.config.model import GeneratorConfig, ModelInfo
from decrappify.config.normalization import NormalizationConfig
from decrappify.crappify import get_preset
from decrappify.models import build_generator, save_model

SMALL = {
    "encoder": "resnet18",
    "nf_factor": 0.25,
    "blocks_per_stage": 1,
    "encoder_depth": 2,
    "self_attention": False,
}
#: A small ``"naf"`` generator (``saved_model(folder, **NAF)``).
NAF = {"arch": "naf", "residual": True, "naf": {"width": 8, "blocks": [1, 1], "middle_blocks": 1}}
NORM = NormalizationConfig(low=1.0, high=99.5)


def saved_model(folder: Path, **generator) -> Path:
    """Save a small generator with moved BatchNorm statistics and full metadata.

    ``generator`` overrides :data:`SMALL` (``**NAF`` for a ``"naf"`` network). Convolutions
    that start at zero (the last one of a residual network, so that it computes bilinear
    interpolation) get small random weights: the network computes more than its input's
    interpolation and has a receptive field to measure.
    """
    base = {} if generator.get("arch") == "naf" else SMALL
    cfg = GeneratorConfig(**base, **generator)
    net = build_generator(cfg, seed=0)
    net.train()  # move the BatchNorm statistics away from their initial values
    rng = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(2):
            net(torch.rand(2, cfg.n_frames, 16, 16, generator=rng))
        for p in net.parameters():
            if p.ndim == 4 and not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=rng))
    info = ModelInfo(
        generator=cfg,
        normalization=NORM,
        crappify=get_preset("em").with_scale(cfg.scale).model_dump(mode="json"),
        training={
            "recipe": "NoGAN",
            "steps": {"pretrain": 2},
            "seconds": 3.5,
            "data": {"images": ["/home/ada/data/hr/cells_01.tif"], "batch_size": 4},
            "config": {"encoder_weights": "/home/ada/weights/resnet18.pth"},
        },
        metrics={"psnr_norm": 27.5},
        description="unit test model",
    )
    return save_model(folder / f"em_x{cfg.scale}_{cfg.n_frames}f", net.eval(), info)
