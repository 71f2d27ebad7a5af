"""Run inside PSSR2's venv (see ``pssr2_env.py``): make its weights, or predict sliding-window.

Usage (PSSR2's Python, the timm stub first on PYTHONPATH):
    python _pssr2_run.py weights OUT.pth
    python _pssr2_run.py sliding INPUTS WEIGHTS OUT TILE OVERLAP
"""

from __future__ import annotations

import os
import sys

#: PSSR2's ResUNet factor in these benchmarks.
SCALE = 4


def weights(path: str) -> None:
    """Save PSSR2's default ResUNet with random weights (seed 0) as a state dict."""
    import torch
    from pssr.models import ResUNet

    torch.manual_seed(0)
    net = ResUNet(channels=1, scale=SCALE)
    torch.save(net.state_dict(), path + ".part")
    os.replace(path + ".part", path)


def sliding(inputs: str, state: str, out: str, tile: str, overlap: str) -> None:
    """PSSR2's sliding-window prediction of a folder of LR images, stitched into images."""
    import torch
    from pssr.data import SlidingDataset
    from pssr.models import ResUNet
    from pssr.predict import predict_images
    from pssr.util import reassemble_sheets

    model = ResUNet(channels=1, scale=SCALE)
    model.load_state_dict(torch.load(state, weights_only=True))
    dataset = SlidingDataset(
        inputs, hr_res=int(tile), lr_scale=-1, overlap=int(overlap), val_split=1
    )
    tiles = predict_images(model, dataset, "cpu", out_dir=None)
    reassemble_sheets(
        tiles, inputs, lr_scale=SCALE, overlap=int(overlap), margin=int(overlap) // 2, out_dir=out
    )


if __name__ == "__main__":
    task = {"weights": weights, "sliding": sliding}[sys.argv[1]]
    task(*sys.argv[2:])
