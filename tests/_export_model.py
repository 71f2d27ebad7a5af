"""A small saved model for the bioimage.io export tests (``from _export_model import ...``).

Its encoder stops at 1/8 of the grid (``encoder_depth`` 2) and it has no self-attention,
which keeps the measured receptive field, and so the package's halo and smallest input,
small.
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
NORM = NormalizationConfig(low=1.0, high=99.5)


def saved_model(folder: Path, **generator) -> Path:
    """Save a small generator with moved BatchNorm statistics and full metadata."""
    cfg = GeneratorConfig(**{**SMALL, **generator})
    net = build_generator(cfg, seed=0)
    net.train()  # move the BatchNorm statistics away from their initial values
    with torch.no_grad():
        for _ in range(2):
            net(torch.rand(2, cfg.n_frames, 16, 16))
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
