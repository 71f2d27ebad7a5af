"""The text of a bioimage.io package: ``rdf.yaml`` content (model spec 0.5) and README.md.

Pure functions of the model's metadata and of the files already written; no torch, no
bioimageio import (:mod:`decrappify.api.export` validates and packages the result).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from decrappify.config.model import ModelInfo

#: What every package cites: the method, its microscopy application and the architecture.
CITATIONS: tuple[dict[str, str], ...] = (
    {
        "text": "Howard J., Manor U., Antic J. Decrappification, DeOldification, and Super "
        "Resolution. fast.ai, 2019 (crappify + NoGAN).",
        "url": "https://www.fast.ai/posts/2019-05-03-decrappify.html",
    },
    {
        "text": "Fang L. et al. Deep learning-based point-scanning super-resolution imaging "
        "(PSSR). Nature Methods 18, 406-416 (2021).",
        "doi": "10.1038/s41592-021-01080-z",
    },
    {
        "text": "Ronneberger O., Fischer P., Brox T. U-Net: Convolutional Networks for "
        "Biomedical Image Segmentation. MICCAI 2015.",
        "doi": "10.1007/978-3-319-24574-4_28",
    },
    {
        "text": "He K., Zhang X., Ren S., Sun J. Deep Residual Learning for Image "
        "Recognition. CVPR 2016 (ResNet encoder).",
        "doi": "10.1109/CVPR.2016.90",
    },
)

#: Characters bioimage.io allows in a resource name.
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_+\- ()]+")


@dataclass(frozen=True)
class PackageFiles:
    """The files of a package (names inside it) and their SHA-256 digests.

    Parameters
    ----------
    digests : dict of str to str
        File name to hex SHA-256, for every file the rdf names.
    """

    digests: dict[str, str]

    def entry(self, name: str) -> dict[str, str]:
        """``{"source": name, "sha256": digest}`` of one file."""
        return {"source": name, "sha256": self.digests[name]}


@dataclass(frozen=True)
class Geometry:
    """Tensor sizes of the package.

    Parameters
    ----------
    scale : int
        Upsampling factor.
    n_frames : int
        Input planes (channels of the input tensor).
    min_side : int
        Smallest valid input side (LR pixels).
    step : int
        Valid input sides are ``min_side + n * step``.
    halo : int
        Output pixels at each border that tiled consumers should discard (a multiple of
        ``scale``).
    """

    scale: int
    n_frames: int
    min_side: int
    step: int
    halo: int


def package_name(name: str | None, model_name: str, scale: int) -> str:
    """A bioimage.io resource name (5-128 letters, digits, spaces and ``_+-()``).

    Parameters
    ----------
    name : str or None
        What the user asked for, or None for ``decrappify x<scale> <model name>``.
    model_name : str
        The model's file or folder name.
    scale : int
        Upsampling factor.

    Returns
    -------
    str
        The name, with other characters replaced by ``-``.
    """
    raw = name if name else f"decrappify x{scale} super-resolution {model_name}"
    clean = " ".join(_NAME_CHARS.sub("-", raw).split())[:128].strip()
    return clean if len(clean) >= 5 else f"decrappify {clean}".strip()


def channel_names(n_frames: int) -> list[str]:
    """Names of the input channels: ``intensity``, or the planes ``z-1, z+0, z+1`` of 2.5D."""
    if n_frames == 1:
        return ["intensity"]
    half = n_frames // 2
    return [f"z{offset:+d}" for offset in range(-half, half + 1)]


def crappify_summary(info: ModelInfo) -> str:
    """One line on how the training inputs were made."""
    cfg = info.crappify
    if not cfg:
        return "trained on real low-/high-resolution pairs (no crappifier recorded)"
    steps = cfg.get("steps") or []
    kinds = " -> ".join(str(s.get("kind", "?")) for s in steps if isinstance(s, dict))
    name = cfg.get("name") or "custom"
    return f"crappifier {name!r} (x{cfg.get('scale', info.generator.scale)}): {kinds}"


def rdf_content(
    *,
    info: ModelInfo,
    name: str,
    description: str,
    authors: list[str],
    license: str,
    files: PackageFiles,
    geometry: Geometry,
    weight_formats: tuple[str, ...],
    torch_version: str,
    parameter_count: int,
    test_source: str,
    format_version: str,
) -> dict[str, Any]:
    """The ``rdf.yaml`` of a decrappify model (bioimage.io model spec 0.5).

    Parameters
    ----------
    info : ModelInfo
        The model's metadata (stored whole under ``config.decrappify``).
    name, description : str
        Resource name and one-paragraph description.
    authors : list of str
        Author names.
    license : str
        SPDX licence identifier.
    files : PackageFiles
        ``README.md``, ``cover.png``, ``test_input.npy``, ``test_output.npy``, their TIFF
        views ``sample_input.tif`` and ``sample_output.tif``, and the
        weight files (``weights.pt``, ``architecture.py``, ``environment.yaml`` for the
        state dict; ``weights_torchscript.pt``) with their digests.
    geometry : Geometry
        Sizes.
    weight_formats : tuple of str
        ``"pytorch_state_dict"`` and/or ``"torchscript"``.
    torch_version : str
        PyTorch version that wrote the weights.
    parameter_count : int
        Parameters of the network.
    test_source : str
        Where the test input came from (for the README and the config).
    format_version : str
        The model spec version written (the installed ``bioimageio.spec``'s).

    Returns
    -------
    dict
        The YAML content, file references relative to the package root.
    """
    g, norm = geometry, info.normalization
    space_in = [
        {"type": "space", "id": axis, "size": {"min": g.min_side, "step": g.step}}
        for axis in ("y", "x")
    ]
    space_out = [
        {
            "type": "space",
            "id": axis,
            "size": {"tensor_id": "input", "axis_id": axis},
            "scale": 1.0 / g.scale,
            "halo": g.halo,
        }
        for axis in ("y", "x")
    ]
    norm_axes = ["y", "x"] if g.n_frames == 1 else ["channel", "y", "x"]
    frames = "one plane" if g.n_frames == 1 else f"{g.n_frames} neighbouring planes (2.5D)"
    weights: dict[str, Any] = {}
    if "pytorch_state_dict" in weight_formats:
        weights["pytorch_state_dict"] = {
            **files.entry("weights.pt"),
            "architecture": {
                **files.entry("architecture.py"),
                "callable": "decrappify_generator",
                "kwargs": info.generator.model_dump(mode="json"),
            },
            "pytorch_version": torch_version,
            "dependencies": files.entry("environment.yaml"),
        }
    if "torchscript" in weight_formats:
        weights["torchscript"] = {
            **files.entry("weights_torchscript.pt"),
            "pytorch_version": torch_version,
            "comment": "torch.jit.trace of the whole network (upsampling, U-Net) as "
            "decrappify loads it; valid for every input size the rdf allows",
        }
        if "pytorch_state_dict" in weight_formats:
            weights["torchscript"]["parent"] = "pytorch_state_dict"
    return {
        "format_version": format_version,
        "type": "model",
        "name": name,
        "description": description,
        "authors": [{"name": a} for a in authors],
        "cite": [dict(c) for c in CITATIONS],
        "license": license,
        "documentation": files.entry("README.md"),
        "covers": [files.entry("cover.png")],
        "tags": _tags(info, g),
        "timestamp": info.created.isoformat(),
        "inputs": [
            {
                "id": "input",
                "description": f"Low-resolution image, {frames}, raw intensities",
                "axes": [
                    {"type": "batch"},
                    {"type": "channel", "channel_names": channel_names(g.n_frames)},
                    *space_in,
                ],
                "test_tensor": files.entry("test_input.npy"),
                "sample_tensor": files.entry("sample_input.tif"),
                "data": {"type": "float32"},
                "preprocessing": [
                    {"id": "ensure_dtype", "kwargs": {"dtype": "float32"}},
                    {
                        "id": "scale_range",
                        "kwargs": {
                            "axes": norm_axes,
                            "min_percentile": norm.low,
                            "max_percentile": norm.high,
                        },
                    },
                ],
            }
        ],
        "outputs": [
            {
                "id": "output",
                "description": f"x{g.scale} super-resolved image in normalised units "
                f"(0 and 1 = the input's percentiles {norm.low:g} and {norm.high:g})",
                "axes": [
                    {"type": "batch"},
                    {"type": "channel", "channel_names": ["intensity"]},
                    *space_out,
                ],
                "test_tensor": files.entry("test_output.npy"),
                "sample_tensor": files.entry("sample_output.tif"),
                "data": {"type": "float32"},
                "postprocessing": [{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}],
            }
        ],
        "weights": weights,
        "config": {
            "bioimageio": {
                "architecture_type": "U-Net (ResNet encoder)",
                "architecture_description": _architecture(info),
                "task": "super-resolution",
                "model_parameter_count": int(parameter_count),
                "training": _training_details(info),
            },
            "decrappify": {
                **info.model_dump(mode="json"),
                "test_input": test_source,
            },
        },
    }


def _training_details(info: ModelInfo) -> dict[str, Any]:
    norm, training = info.normalization, info.training or {}
    loss = ((training.get("config") or {}).get("loss") or {}).get("weights")
    terms = ", ".join(f"{k} {v:g}" for k, v in loss.items() if v) if loss else "pixel/SSIM"
    details = {
        "training_preprocessing": f"percentile normalisation {norm.low:g}-{norm.high:g}; "
        f"inputs made by {crappify_summary(info)}",
        "training_batch_size": (training.get("data") or {}).get("batch_size"),
        "training_duration": _hours(training.get("seconds")),
        "loss_function": f"NoGAN: generator pretraining on {terms}, then a critic "
        "(adversarial loss) and the generator in turn",
    }
    return {k: v for k, v in details.items() if v is not None}


def _tags(info: ModelInfo, g: Geometry) -> list[str]:
    tags = ["super-resolution", "decrappify", "pssr", "nogan", "unet", "pytorch", "2d"]
    name = str((info.crappify or {}).get("name") or "")
    if name.startswith("em"):
        tags.append("electron-microscopy")
    elif name.startswith("fluo"):
        tags.append("fluorescence-light-microscopy")
    if g.n_frames > 1:
        tags.append("2.5d")
    return tags


def _architecture(info: ModelInfo) -> str:
    gen = info.generator
    attention = "self-attention" if gen.self_attention else "no attention"
    head = "bilinear input + learned residual" if gen.residual else "direct output"
    return (
        f"Bilinear x{gen.scale} upsampling of {gen.n_frames} input plane(s), then a "
        f"{gen.encoder.value} U-Net ({gen.preset.value} PixelShuffle/ICNR decoder, "
        f"{gen.norm_type.value} norm, {attention}, {head})"
    )


def _hours(seconds: Any) -> float | None:
    return None if not isinstance(seconds, int | float) else round(float(seconds) / 3600.0, 4)


def readme_text(
    *,
    info: ModelInfo,
    name: str,
    description: str,
    geometry: Geometry,
    test_source: str,
    weight_formats: tuple[str, ...],
) -> str:
    """The package's README.md: what the model does, how it was made, how to check it.

    Parameters
    ----------
    info : ModelInfo
        The model's metadata.
    name, description : str
        As in the rdf.
    geometry : Geometry
        Sizes.
    test_source : str
        Where the test input came from.
    weight_formats : tuple of str
        The weight formats in the package.

    Returns
    -------
    str
        Markdown.
    """
    g, norm = geometry, info.normalization
    training = info.training or {}
    lines = [
        f"# {name}",
        "",
        description,
        "",
        "## What it does",
        "",
        f"- Input: a low-resolution image ({g.n_frames} plane(s) as channels), raw "
        f"intensities. Sides must be {g.min_side} + n x {g.step} pixels (pad or crop).",
        f"- Preprocessing: percentile normalisation per image, percentile {norm.low:g} -> 0 "
        f"and percentile {norm.high:g} -> 1 (bioimage.io `scale_range`), as decrappify trained it.",
        f"- Output: the image super-resolved x{g.scale} (output pixels are 1/{g.scale} of "
        "the input's), in the same normalised units; multiply by the input's percentile "
        "range and add its low percentile to get intensities back (what `decrappify "
        "predict` writes).",
        f"- Tiled prediction: discard {g.halo} output pixels at tile borders (the halo).",
        f"- Network: {_architecture(info)}.",
        f"- Weights: {', '.join(weight_formats)} (TorchScript needs only PyTorch; the state "
        "dict needs decrappify, see `environment.yaml`).",
        "",
        "## How it was trained",
        "",
        f"- Training inputs: {crappify_summary(info)}.",
    ]
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
    lines += ["", "## Validation", ""]
    if info.metrics:
        lines.append("Validation metrics recorded at the end of training:")
        lines.append("")
        lines += [f"- {k}: {v:.4g}" for k, v in info.metrics.items()]
        lines.append("")
    lines += [
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
        "## Limitations",
        "",
        "The model learned the degradation it was trained on. Images from another "
        "microscope, sample or noise level can gain little or get artefacts; compare with "
        "the ground truth (normalised PSNR/SSIM, FRC) before trusting it.",
        "",
        "## Citations",
        "",
    ]
    lines += [f"- {c['text']}" for c in CITATIONS]
    return "\n".join(lines) + "\n"
