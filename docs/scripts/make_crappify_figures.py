"""Make the figures of docs/crappify.md from the synthetic sample data.

Run from the repository root::

    .venv/bin/python docs/scripts/make_crappify_figures.py

Writes ``docs/images/crappify_<preset>.png`` (HR crop | crappified LR shown at the HR
size with nearest-neighbour pixels), ``docs/images/crappify_samples.png`` (the two
synthetic images) and ``docs/images/crappify_fit.png`` (a noise-model fit). Everything
is deterministic (fixed seeds).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from skimage.io import imsave

from decrappify.crappify import crappify_image, fit_noise_model, get_preset
from decrappify.io.image import Image
from decrappify.normalize import percentile_range
from decrappify.sample import synthetic_image

CROP = 384  # HR pixels shown
GAP = 6  # white separator between panels (pixels)
SAMPLES = {
    # kind: (shape rendered, top-left of the crop shown)
    "em": ((512, 512), (64, 64)),
    "fluorescence": ((1024, 1024), (560, 520)),
}
PRESET_KIND = {
    "em": "em",
    "em-poisson": "em",
    "fluorescence": "fluorescence",
    "fluorescence-pssr": "fluorescence",
}


def to_uint8(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Display mapping shared by HR and LR panels."""
    return (np.clip((x.astype(np.float64) - lo) / (hi - lo), 0, 1) * 255).round().astype(np.uint8)


def side_by_side(*panels: np.ndarray) -> np.ndarray:
    """Concatenate equally tall uint8 panels with white gaps."""
    height = panels[0].shape[0]
    gap = np.full((height, GAP), 255, dtype=np.uint8)
    parts: list[np.ndarray] = []
    for panel in panels:
        parts += [panel, gap]
    return np.concatenate(parts[:-1], axis=1)


def crop(data: np.ndarray, kind: str, scale: int = 1) -> np.ndarray:
    (y, x), size = SAMPLES[kind][1], CROP // scale
    return data[y // scale : y // scale + size, x // scale : x // scale + size]


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    images = {kind: synthetic_image(kind, shape, seed=0) for kind, (shape, _) in SAMPLES.items()}
    display = {kind: percentile_range(img.data, 0.2, 99.8) for kind, img in images.items()}

    samples = side_by_side(*(to_uint8(crop(images[k].data, k), *display[k]) for k in SAMPLES))
    imsave(out_dir / "crappify_samples.png", samples, check_contrast=False)

    for preset, kind in PRESET_KIND.items():
        config = get_preset(preset)
        lr = crappify_image(images[kind], config, seed=1).data.compute()
        hr_panel = to_uint8(crop(images[kind].data, kind), *display[kind])
        lr_crop = crop(lr, kind, config.scale)
        lr_panel = to_uint8(np.kron(lr_crop, np.ones((config.scale, config.scale))), *display[kind])
        imsave(
            out_dir / f"crappify_{preset}.png",
            side_by_side(hr_panel, lr_panel),
            check_contrast=False,
        )

    # Fit a noise model to camera images of known gain, read noise and offset.
    gain, read_noise, offset = 2.0, 6.0, 100.0
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:512, :512] / 512.0
    photons = 400.0 * xx**1.5 + 30.0 * yy
    photons[:, :50] = 0.0
    counts = offset + gain * rng.poisson(photons) + rng.normal(0.0, read_noise, photons.shape)
    result = fit_noise_model(Image(np.clip(np.rint(counts), 0, 65535).astype(np.uint16)))
    fig, ax = plt.subplots(figsize=(5.2, 3.4), dpi=100)
    means, variances = np.array(result.bin_means), np.array(result.bin_variances)
    ax.plot(means, variances, "o", ms=4, label="flat patches, mean per intensity bin")
    grid = np.linspace(offset, means.max(), 50)
    ax.plot(
        grid,
        result.gain * (grid - result.offset) + result.read_noise**2,
        "-",
        label=f"fit: gain {result.gain:.3g}, read noise {result.read_noise:.3g}, "
        f"offset {result.offset:.4g}",
    )
    ax.set_xlabel("patch mean (grey levels)")
    ax.set_ylabel("noise variance (grey levels$^2$)")
    ax.set_title(f"truth: gain {gain}, read noise {read_noise}, offset {offset}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "crappify_fit.png")
    plt.close(fig)
    for path in sorted(out_dir.glob("crappify_*.png")):
        print(f"{path}: {path.stat().st_size / 1024:.0f} kB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"), help="output folder")
    main(parser.parse_args().out)
