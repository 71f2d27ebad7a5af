"""The README.md of a bioimage.io package: what the model does, how it was made and checked.

Pure text from the model's metadata; the same facts as ``rdf.yaml``, for people.
"""

from __future__ import annotations

from decrappify.config.model import ModelInfo
from decrappify.export.rdf import (
    Geometry,
    People,
    architecture_text,
    citations,
    crappify_summary,
)


def readme_text(
    *,
    info: ModelInfo,
    name: str,
    description: str,
    geometry: Geometry,
    test_source: str,
    weight_formats: tuple[str, ...],
    people: People,
) -> str:
    """Markdown for the package's README.md (see :func:`decrappify.export.rdf.rdf_content`)."""
    lines = [f"# {name}", "", description, ""]
    lines += _what_it_does(info, geometry, weight_formats)
    lines += _how_it_was_trained(info)
    lines += _validation(info, test_source)
    lines += [
        "## Limitations",
        "",
        "The model learned the degradation it was trained on. Images from another "
        "microscope, sample or noise level can gain little or get artefacts; compare with "
        "the ground truth (normalised PSNR/SSIM, FRC) before trusting it.",
        "",
        "## Citations",
        "",
    ]
    lines += [f"- {c['text']}" for c in citations(info, people)]
    return "\n".join(lines) + "\n"


def _what_it_does(info: ModelInfo, g: Geometry, weight_formats: tuple[str, ...]) -> list[str]:
    norm = info.normalization
    return [
        "## What it does",
        "",
        f"- Input: a low-resolution image ({g.n_frames} plane(s) as channels), raw "
        f"intensities. The network takes sides of {g.min_side} + n x {g.step} pixels; "
        f"an image of any multiple of {g.step} pixels is valid once padded by the halo.",
        f"- Preprocessing: percentile normalisation per image, percentile {norm.low:g} -> 0 "
        f"and percentile {norm.high:g} -> 1 (bioimage.io `scale_range`), as decrappify trained it.",
        f"- Output: the image super-resolved x{g.scale} (output pixels are 1/{g.scale} of "
        "the input's), in the same normalised units; multiply by the input's percentile "
        "range and add its low percentile to get intensities back (what `decrappify "
        "predict` writes).",
        f"- Halo: {g.halo_lr} input pixels ({g.halo} output pixels), the network's measured "
        f"receptive-field radius ({g.radius} input pixels, where an output pixel's "
        "sensitivity falls below 0.1 %). Consumers pad the image by it (reflection, as "
        "decrappify does) and crop it from the output, and tiles overlap by it.",
        f"- Network: {architecture_text(info)}.",
        f"- Weights: {', '.join(weight_formats)}. Both need only PyTorch: "
        "`architecture.py` is generated from the network by `torch.export` and imports "
        "nothing else.",
        "",
    ]


def _how_it_was_trained(info: ModelInfo) -> list[str]:
    training = info.training or {}
    lines = ["## How it was trained", "", f"- Training inputs: {crappify_summary(info)}."]
    for key in ("recipe", "steps", "seconds", "device", "precision"):
        if key in training:
            lines.append(f"- {key}: {training[key]}")
    data = training.get("data") or {}
    for key in ("n_train_images", "n_validation_images", "patch_size", "batch_size", "seed"):
        if data.get(key) is not None:
            lines.append(f"- {key.replace('_', ' ')}: {data[key]}")
    lines.append(
        f"- decrappify {info.decrappify_version}, saved {info.created.isoformat()}; the "
        "complete metadata is in `config.decrappify` of rdf.yaml."
    )
    return [*lines, ""]


def _validation(info: ModelInfo, test_source: str) -> list[str]:
    lines = ["## Validation", ""]
    if info.metrics:
        lines += ["Validation metrics recorded at the end of training:", ""]
        lines += [f"- {k}: {v:.4g}" for k, v in info.metrics.items()]
        lines.append("")
    return [
        *lines,
        f"The test tensors are {test_source}; `bioimageio test` re-runs the model on "
        "`test_input.npy` and compares with `test_output.npy`, the output of the network "
        "as decrappify runs it.",
        "To validate on your data, crappify held-back high-resolution images (or acquire "
        "low/high-resolution pairs) and score the predictions against them and against "
        "bicubic interpolation:",
        "",
        "```",
        "decrappify predict MODEL lr/ --out sr/",
        "decrappify evaluate --pred sr/*.zarr --gt hr/*.tif --lr lr/*.tif --report metrics.json",
        "```",
        "",
    ]
