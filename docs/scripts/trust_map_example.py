"""Make ``docs/images/trust_map_example.png``: the trust maps flag a model used off its domain.

Run from the repository root (about 3 minutes on 2 CPU cores)::

    .venv/bin/python docs/scripts/trust_map_example.py [--budget 150s] [--out DIR]

1. A same-grid (scale 1) **EM** model is trained briefly on the ISBI 2012 ssTEM sections
   (``/work/shared/data/em/isbi2012_train``, all but the last), with the ``em`` crappifier.
2. It restores, with test-time augmentation and its consistency map
   (``predict --tta``, consistency on by default), two images:

   * **in its domain**: the held-back EM section, crappified with the model's own
     crappifier (seed 1);
   * **off its domain**: a real single-frame widefield fluorescence acquisition of the W2S
     data set (``/work/shared/data/fluo/w2s_avg1``, field 096), which an EM model has never
     seen (the known artefact: it paints EM texture into cells).

3. The figure shows, for each, the input, the restoration, the consistency map (noise
   standard deviations; pink where the restoration is brighter than the input explains,
   green where it is darker) and the uncertainty map (spread of the 8 rotations/mirrors, in
   % of the image's range), with the per-image summaries ``predict --report`` prints; the
   numbers are also written to ``OUT/trust_example.json``.

Training is seeded, so the run is repeatable on one machine; the short budget makes the
model an undertrained one, which is the point: the maps must say where not to trust it.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
from pathlib import Path

import numpy as np

EM = Path("/work/shared/data/em/isbi2012_train")
FLUO = Path("/work/shared/data/fluo/w2s_avg1/input_avg1_096_0.tif")
REPO = Path(__file__).resolve().parents[2]
FIGURE = REPO / "docs" / "images" / "trust_map_example.png"
#: Central crop shown, in pixels.
CROP = 256


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", default="150s", help="training budget (default 150s)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/decrappify_bench/trust_example"))
    parser.add_argument("--fluo", type=Path, default=FLUO, help="the off-domain frame")
    parser.add_argument("--figure", type=Path, default=FIGURE)
    parser.add_argument("--reuse", action="store_true", help="keep a model trained in OUT")
    return parser.parse_args(argv)


def train_em_model(out: Path, budget: str, reuse: bool) -> Path:
    """A short scale-1 EM training on all ISBI sections but the last."""
    from decrappify import api

    model = out / "em_run" / "model"
    if reuse and (model / "model.json").is_file():
        return model
    sections = sorted(EM.glob("*.tif"))[:-1]
    api.train(
        sections,
        out / "em_run",
        preset="em",
        scale=1,
        time_budget=budget,
        device="cpu",
        seed=0,
        overrides={"data.patch_size": 96, "batch_size": 8},
    )
    return model


def restore(model: Path, image) -> dict:
    """Predict with TTA and the consistency map, in memory."""
    from decrappify import api
    from decrappify.events import run_to_end

    settings = {"tile": 256, "device": "cpu", "tta": True, "dtype": "float32"}
    result = run_to_end(api.iter_predict_image(str(model), image, None, settings))
    return {
        "input": np.asarray(image.data, np.float32),
        "prediction": np.asarray(result.image.data),
        "consistency": np.asarray(result.maps["consistency"].data),
        "uncertainty": np.asarray(result.maps["uncertainty"].data),
        "lo_hi": (result.stats["lo"], result.stats["hi"]),
        "trust": result.stats["trust"],
    }


def crop(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    y, x = (h - CROP) // 2, (w - CROP) // 2
    return a[y : y + CROP, x : x + CROP]


def draw(rows: dict[str, dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from decrappify.io.atomic import atomic_write

    fig = Figure(figsize=(13.5, 7.2), dpi=100)
    axes = fig.subplots(len(rows), 4)
    for r, (title, row) in enumerate(rows.items()):
        lo, hi = row["lo_hi"]
        trust = row["trust"]
        c, u = trust["consistency"], trust["uncertainty"]
        panels = [
            ("input", crop(row["input"]), {"cmap": "gray", "vmin": lo, "vmax": hi}),
            ("restoration", crop(row["prediction"]), {"cmap": "gray", "vmin": lo, "vmax": hi}),
            (
                f"consistency: score {c['score']:.2f}, {100 * c['flagged_fraction']:.1f} % > 4σ",
                crop(row["consistency"]),
                {"cmap": "PiYG", "vmin": -5, "vmax": 5},
            ),
            (
                f"uncertainty: mean {100 * u['mean']:.1f} % of the range",
                crop(row["uncertainty"]) / (hi - lo) * 100,
                {"cmap": "magma", "vmin": 0, "vmax": 6},
            ),
        ]
        for c_index, (label, values, kwargs) in enumerate(panels):
            ax = axes[r, c_index]
            shown = ax.imshow(values, interpolation="nearest", **kwargs)
            ax.set_title(label, fontsize="small")
            ax.set_xticks([])
            ax.set_yticks([])
            if c_index >= 2:
                fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
        axes[r, 0].set_ylabel(title, fontsize="medium")
    fig.suptitle(
        "An EM model (scale 1, short training) in its domain and on a real fluorescence frame",
        fontsize="medium",
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from decrappify.config.crappify import CrappifyConfig
    from decrappify.crappify import crappify_image
    from decrappify.io import read_image
    from decrappify.models import load_model

    args.out.mkdir(parents=True, exist_ok=True)
    model = train_em_model(args.out, args.budget, args.reuse)
    config = CrappifyConfig.model_validate(load_model(model).info.crappify)
    held_back = read_image(sorted(EM.glob("*.tif"))[-1])
    em_input = crappify_image(held_back, config, seed=1)
    em_input = em_input.with_data(np.asarray(em_input.data))
    rows = {
        "EM, its domain": restore(model, em_input),
        "fluorescence (W2S)": restore(model, read_image(args.fluo)),
    }
    numbers = {title: row["trust"] for title, row in rows.items()}
    (args.out / "trust_example.json").write_text(json.dumps(numbers, indent=2) + "\n")
    print(json.dumps(numbers, indent=2))
    print(f"wrote {draw(rows, args.figure)}")


if __name__ == "__main__":
    main()
