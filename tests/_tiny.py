"""The smallest real models and the fastest predict options, shared by the test modules.

Imported as ``from _tiny import ...`` (pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from decrappify.config.model import GeneratorConfig

#: The smallest decrappify generator (a real U-Net all the same).
TINY = {
    "encoder": "resnet18",
    "self_attention": False,
    "nf_factor": 0.25,
    "blocks_per_stage": 1,
    "blur": False,
}
#: ``decrappify predict`` options that keep a test fast: small tiles, one CPU thread.
FAST = ["--tile", "32", "--batch", "4", "--device", "cpu", "--threads", "1", "--quiet"]


def tiny_generator(scale: int = 2, **changes: Any) -> GeneratorConfig:
    """The :data:`TINY` generator's config at a scale, with other settings changed."""
    return GeneratorConfig(scale=scale, **{**TINY, **changes})


def em_model(folder: Path, seed: int = 0) -> Path:
    """Save the tiny ×2 generator, recording the em crappifier at ×2, as ``folder/x2``."""
    from decrappify.config.crappify import get_preset
    from decrappify.config.model import ModelInfo
    from decrappify.models import build_generator, save_model

    cfg = tiny_generator()
    net = build_generator(cfg, seed=seed).eval()
    crappify = get_preset("em").with_scale(2).model_dump(mode="json")
    return save_model(folder / "x2", net, ModelInfo(generator=cfg, crappify=crappify))


#: A ``decrappify`` command line whose network sleeps ``$SLOW_FORWARD`` seconds per forward
#: pass, so that a run can be stopped midway (``python -c SLOW_DRIVER predict ...``).
SLOW_DRIVER = textwrap.dedent(
    """
    import os, sys, time
    from decrappify.models.unet import SuperResolutionNet

    forward = SuperResolutionNet.forward

    def slow_forward(self, x):
        time.sleep(float(os.environ.get("SLOW_FORWARD", "0")))
        return forward(self, x)

    SuperResolutionNet.forward = slow_forward
    from decrappify.cli import main

    sys.argv = ["decrappify", *sys.argv[1:]]
    main()
    """
)


def whole_image_prediction(net, frames, pad=24):
    """The network on the whole reflect-extended image in one pass: what tiles must equal."""
    import numpy as np
    import torch

    from decrappify.predict.tile_geometry import tile_quantum

    frames = frames if frames.ndim == 3 else frames[None]
    quantum = tile_quantum(net.scale, net.multiple)
    h, w = frames.shape[-2:]
    extra_h, extra_w = (-(h + 2 * pad)) % quantum, (-(w + 2 * pad)) % quantum
    padded = np.pad(frames, ((0, 0), (pad, pad + extra_h), (pad, pad + extra_w)), mode="reflect")
    with torch.no_grad():
        out = net(torch.from_numpy(padded[None].astype(np.float32)))[0, 0].numpy()
    s = net.scale
    return out[pad * s : (pad + h) * s, pad * s : (pad + w) * s]
