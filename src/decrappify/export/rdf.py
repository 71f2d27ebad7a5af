"""The ``rdf.yaml`` content of a bioimage.io package (model spec 0.5).

Pure functions of the model's metadata and of the files already written; no torch, no
bioimageio import (:mod:`decrappify.export.package` validates and zips the result).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from decrappify.config.model import ModelInfo

#: What every package cites: the method and its microscopy application.
METHOD_CITATIONS: tuple[dict[str, str], ...] = (
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
)
#: The U-Net generator's architecture papers.
UNET_CITATIONS: tuple[dict[str, str], ...] = (
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

#: Name of the class ``architecture.py`` defines, which a consumer instantiates (the rdf's
#: ``weights.pytorch_state_dict.architecture.callable``).
ARCHITECTURE_CALLABLE = "DecrappifyNet"
#: Characters bioimage.io allows in a resource name.
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_+\- ()]+")
#: A Windows drive or UNC path (``C:\data``, ``\\server\share``).
_WINDOWS_ABSOLUTE = re.compile(r"^([A-Za-z]:[\\/]|\\\\)")


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
    """Tensor sizes of the package, in the network's terms.

    bioimage.io consumers pad an image by ``halo_lr`` input pixels on each side (by
    reflection, as decrappify does), run the network on the padded tensor and crop
    ``halo`` output pixels from each side. ``min_side`` and ``step`` describe the padded
    tensor the network sees, so an image of ``n × step`` pixels is valid as it is.

    Parameters
    ----------
    scale : int
        Upsampling factor.
    n_frames : int
        Input planes (channels of the input tensor).
    min_side : int
        Smallest valid network input side (LR pixels): the smallest valid side above
        twice the halo, so the cropped output keeps a pixel.
    step : int
        Valid network input sides are ``min_side + n * step``.
    radius : int
        Measured receptive-field radius in LR pixels (decrappify's context margin).
    halo_lr : int
        Input pixels padded at each side: the radius, rounded up to a multiple of
        ``step``. The U-Nets compute on a grid of ``step`` pixels; padded by a multiple
        of it, the image stays where the grid is for ``decrappify predict``'s windows
        (half a step off, the test ResNet U-Net's output moved by 14 % of its range), and
        a valid image stays valid.
    """

    scale: int
    n_frames: int
    min_side: int
    step: int
    radius: int
    halo_lr: int

    @classmethod
    def from_radius(cls, scale: int, n_frames: int, step: int, radius: int) -> Geometry:
        """Build the geometry whose halo covers a receptive-field radius of ``radius`` LR pixels."""
        halo_lr = -(-max(1, int(radius)) // step) * step
        min_side = step * (2 * halo_lr // step + 1)
        return cls(scale, n_frames, min_side, step, int(radius), halo_lr)

    @property
    def halo(self) -> int:
        """Output pixels cropped at each side (``halo_lr × scale``)."""
        return self.halo_lr * self.scale


@dataclass(frozen=True)
class People:
    """Who made the model and who answers for the package.

    Parameters
    ----------
    authors : list of str
        Names of the people who trained the model.
    maintainers : list of (str or None, str)
        ``(name, GitHub user)`` of each maintainer (bioimage.io contacts them).
    cite : list of dict
        The user's own citations (``text`` and ``doi`` or ``url``), listed first.
    license : str
        SPDX identifier of the licence of the weights.
    """

    authors: list[str]
    maintainers: list[tuple[str | None, str]] = field(default_factory=list)
    cite: list[dict[str, str]] = field(default_factory=list)
    license: str = "CC-BY-4.0"


def package_name(name: str | None, model_name: str, scale: int) -> str:
    """Make a bioimage.io resource name (5-128 letters, digits, spaces and ``_+-()``).

    ``name`` None gives ``decrappify x<scale> super-resolution <model name>``; other
    characters are replaced by ``-``.
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


def citations(info: ModelInfo, people: People) -> list[dict[str, str]]:
    """List the user's citations, the method's, then the generator architecture's papers."""
    cites = [dict(c) for c in people.cite] + [dict(c) for c in METHOD_CITATIONS]
    if generator_family(info) == "unet":
        cites += [dict(c) for c in UNET_CITATIONS]
    return cites


def generator_family(info: ModelInfo) -> str:
    """Name the generator family (``unet`` for the models that record none)."""
    return str(getattr(info.generator, "arch", None) or "unet").split(".")[-1].lower()


def local_names(value: Any) -> Any:
    """``value`` with every absolute or home-relative file path replaced by its name.

    A package travels to other people: the training images' and weights' local
    folders (``/home/ada/data/cells.tif``) say nothing to them and should not leave
    the machine; the file name still tells which image was used.
    """
    if isinstance(value, dict):
        return {k: local_names(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [local_names(v) for v in value]
    if isinstance(value, str) and "://" not in value and "\n" not in value:
        if value.startswith(("/", "~")):
            return PurePosixPath(value).name
        if _WINDOWS_ABSOLUTE.match(value):
            return PureWindowsPath(value).name
    return value


def rdf_content(
    *,
    info: ModelInfo,
    name: str,
    description: str,
    people: People,
    files: PackageFiles,
    geometry: Geometry,
    weights: dict[str, Any],
    parameter_count: int,
    test_source: str,
    format_version: str,
) -> dict[str, Any]:
    """Describe a decrappify model as ``rdf.yaml`` content (bioimage.io model spec 0.5).

    Parameters
    ----------
    info : ModelInfo
        The model's metadata, stored under ``config.decrappify`` with local paths
        reduced to file names.
    name, description : str
        Resource name and one-paragraph description.
    people : People
        Authors, maintainers, the user's citations and the licence.
    files : PackageFiles
        ``README.md``, ``cover.png``, the test tensors and their TIFF views
        (``sample_input.tif``, ``sample_output.tif``), with their digests.
    geometry : Geometry
        Sizes and halo.
    weights : dict
        The ``weights`` section (:func:`decrappify.export.weights.weights_entries`).
    parameter_count : int
        Parameters of the network.
    test_source : str
        Where the test input came from (for the config).
    format_version : str
        The model spec version written (the installed ``bioimageio.spec``'s).

    Returns
    -------
    dict
        The YAML content, file references relative to the package root.
    """
    content: dict[str, Any] = {
        "format_version": format_version,
        "type": "model",
        "name": name,
        "description": description,
        "authors": [{"name": a} for a in people.authors],
        "cite": citations(info, people),
        "license": people.license,
        "documentation": files.entry("README.md"),
        "covers": [files.entry("cover.png")],
        "tags": _tags(info, geometry),
        "timestamp": info.created.isoformat(),
        "inputs": [_input_tensor(info, geometry, files)],
        "outputs": [_output_tensor(info, geometry, files)],
        "weights": weights,
        "config": {
            "bioimageio": {
                "architecture_type": architecture_type(info),
                "architecture_description": architecture_text(info),
                "task": "super-resolution",
                "model_parameter_count": int(parameter_count),
                "training": _training_details(info),
            },
            "decrappify": {
                **local_names(info.model_dump(mode="json")),
                "test_input": test_source,
                "receptive_field_radius": geometry.radius,
            },
        },
    }
    if people.maintainers:
        content["maintainers"] = [
            {"github_user": user, **({"name": who} if who else {})}
            for who, user in people.maintainers
        ]
    return content


def _input_tensor(info: ModelInfo, g: Geometry, files: PackageFiles) -> dict[str, Any]:
    """Describe the input: raw intensities, normalised by bioimage.io's ``scale_range``.

    The percentiles are taken over ``y, x`` of each image, and over the channels
    together for 2.5D so the planes share one range, as decrappify trained. Consumers
    pad the image by the halo by reflection (``pad``), as decrappify's tiler does.
    """
    norm = info.normalization
    frames = "one plane" if g.n_frames == 1 else f"{g.n_frames} neighbouring planes (2.5D)"
    return {
        "id": "input",
        "description": f"Low-resolution image, {frames}, raw intensities",
        "axes": [
            {"type": "batch"},
            {"type": "channel", "channel_names": channel_names(g.n_frames)},
            *[
                {"type": "space", "id": axis, "size": {"min": g.min_side, "step": g.step}}
                for axis in ("y", "x")
            ],
        ],
        "test_tensor": files.entry("test_input.npy"),
        "sample_tensor": files.entry("sample_input.tif"),
        "data": {"type": "float32"},
        "pad": {"mode": "reflect"},
        "preprocessing": [
            {"id": "ensure_dtype", "kwargs": {"dtype": "float32"}},
            {
                "id": "scale_range",
                "kwargs": {
                    "axes": ["y", "x"] if g.n_frames == 1 else ["channel", "y", "x"],
                    "min_percentile": norm.low,
                    "max_percentile": norm.high,
                },
            },
        ],
    }


def _output_tensor(info: ModelInfo, g: Geometry, files: PackageFiles) -> dict[str, Any]:
    """Describe the output: ``scale`` times the input's size, in normalised units.

    Its pixel ``scale`` is ``1 / scale`` of the input's, so ``size = input size ×
    scale``; the halo (the receptive field) is what consumers crop at tile borders.
    """
    norm = info.normalization
    return {
        "id": "output",
        "description": f"x{g.scale} super-resolved image in normalised units "
        f"(0 and 1 = the input's percentiles {norm.low:g} and {norm.high:g})",
        "axes": [
            {"type": "batch"},
            {"type": "channel", "channel_names": ["intensity"]},
            *[
                {
                    "type": "space",
                    "id": axis,
                    "size": {"tensor_id": "input", "axis_id": axis},
                    "scale": 1.0 / g.scale,
                    "halo": g.halo,
                }
                for axis in ("y", "x")
            ],
        ],
        "test_tensor": files.entry("test_output.npy"),
        "sample_tensor": files.entry("sample_output.tif"),
        "data": {"type": "float32"},
        "postprocessing": [{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}],
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
    family = generator_family(info)
    tags = ["super-resolution", "decrappify", "pssr", "nogan", family, "pytorch", "2d"]
    name = str((info.crappify or {}).get("name") or "")
    if name.startswith("em"):
        tags.append("electron-microscopy")
    elif name.startswith("fluo"):
        tags.append("fluorescence-light-microscopy")
    if g.n_frames > 1:
        tags.append("2.5d")
    return tags


def architecture_type(info: ModelInfo) -> str:
    """Short architecture name for ``config.bioimageio``."""
    family = generator_family(info)
    return "U-Net (ResNet encoder)" if family == "unet" else family


def architecture_text(info: ModelInfo) -> str:
    """One sentence on the generator, from its configuration."""
    gen = info.generator
    if generator_family(info) != "unet":
        return f"decrappify {generator_family(info)} generator, x{gen.scale}, " + ", ".join(
            f"{k} {v}" for k, v in gen.model_dump(mode="json").items() if k != "scale"
        )
    attention = "self-attention" if gen.self_attention else "no attention"
    head = "bilinear input + learned residual" if gen.residual else "direct output"
    return (
        f"Bilinear x{gen.scale} upsampling of {gen.n_frames} input plane(s), then a "
        f"{gen.encoder.value} U-Net ({gen.preset.value} PixelShuffle/ICNR decoder, "
        f"{gen.norm_type.value} norm, {attention}, {head})"
    )


def _hours(seconds: Any) -> float | None:
    return None if not isinstance(seconds, int | float) else round(float(seconds) / 3600.0, 4)
