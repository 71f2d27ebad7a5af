"""The default network and loss of a training run, and what changes with the kind of data.

Pure configuration. :class:`~decrappify.config.train.TrainConfig` takes its ``generator``
and ``loss`` defaults from :func:`default_generator` and :func:`default_loss`: the recipe
measured best on fluorescence (W2S), which is also what runs with a crappifier fitted
to one's own microscope (``crappify --fit``). Electron microscopy differs in a few
settings, :data:`MODALITY_DEFAULTS`, keyed by crappify preset. :func:`recipe_defaults`
returns them for a run's crappifier; :func:`decrappify.api.train_config` (the CLI's
``train`` and the napari Train widget) applies them unless the config file or the
overrides set those keys. The measurements behind every value are in
``docs/benchmarks.md``.
"""

from __future__ import annotations

from typing import Any

from decrappify.config.model import GeneratorConfig, LossConfig

#: Settings that differ from the defaults for a crappify preset (dotted keys, as
#: ``--set``). EM keeps a little SSIM in the loss: L1 alone gains 0.06 dB more PSNR on
#: ssTEM but only a quarter of the SSIM.
MODALITY_DEFAULTS: dict[str, dict[str, Any]] = {
    "em": {"loss.weights": {"l1": 1.0, "ssim": 0.2}},
    "em-poisson": {"loss.weights": {"l1": 1.0, "ssim": 0.2}},
}


def default_generator() -> GeneratorConfig:
    """Return the generator a run trains unless its config says otherwise.

    Returns
    -------
    GeneratorConfig
        A fresh config: the ``"naf"`` U-Net, 4x. Its ``"resnet"`` settings are the ones
        measured best for that family (ResNet-18 to ``layer3`` on the LR grid, a
        half-width decoder, ESPCN-style last upsampling, the global residual), so that
        ``generator.arch: resnet`` alone switches to the tuned ResNet U-Net.
    """
    return GeneratorConfig(
        arch="naf", residual=True, scale=4,
        encoder="resnet18", nf_factor=0.5, self_attention=False, grid="lr", tail="shuffle",
        encoder_depth=3,
    )  # fmt: skip


#: Settings only the ``"resnet"`` U-Net reads: a generator section that gives one of them
#: without ``arch`` (any run folder's ``train.yaml`` from before ``arch`` existed) means it.
RESNET_ONLY = frozenset(
    {"encoder", "preset", "nf_factor", "blocks_per_stage", "self_attention",
     "attention_block", "norm_type", "grid", "tail", "encoder_depth"}
)  # fmt: skip


def over_default_generator(section: dict[str, Any]) -> dict[str, Any]:
    """Complete a generator section of a config with the default generator's settings.

    A config file's ``generator: {scale: 2}`` changes the default network's scale: the
    settings it does not give are :func:`default_generator`'s (the network the docs
    list), not :class:`GeneratorConfig`'s own field defaults, which are the ResNet
    U-Net's. A section without ``arch`` that sets a ResNet-only setting
    (:data:`RESNET_ONLY`) is the ResNet U-Net.

    Parameters
    ----------
    section : dict
        The section as written (nested ``naf`` settings are completed too).

    Returns
    -------
    dict
        The section with every setting.
    """
    base = default_generator().model_dump(mode="json")
    if "arch" not in section and RESNET_ONLY & section.keys():
        base["arch"] = "resnet"
    merged = {**base, **section}
    if isinstance(section.get("naf"), dict):
        merged["naf"] = {**base["naf"], **section["naf"]}
    return merged


def default_loss() -> LossConfig:
    """Return the pretraining (and GAN content) loss unless a config says otherwise.

    Returns
    -------
    LossConfig
        A fresh config: L1 alone.
    """
    return LossConfig(weights={"l1": 1.0})


def preset_name(crappify: Any) -> str | None:
    """Name the preset a crappifier comes from (a preset name, or a config's ``name``).

    Parameters
    ----------
    crappify : str, CrappifyConfig, dict or None
        What a training config holds.

    Returns
    -------
    str or None
        The name, None for paired training or an unnamed config.
    """
    if crappify is None or isinstance(crappify, str):
        return crappify
    name = crappify.get("name") if isinstance(crappify, dict) else getattr(crappify, "name", None)
    return name if isinstance(name, str) else None


def recipe_defaults(crappify: Any) -> dict[str, Any]:
    """Return the settings a run's kind of data changes from the defaults.

    Parameters
    ----------
    crappify : str, CrappifyConfig, dict or None
        The run's crappifier (see :func:`preset_name`).

    Returns
    -------
    dict
        Dotted keys to values (a copy; empty for fluorescence, fitted crappifiers and
        paired training).
    """
    name = preset_name(crappify)
    return {k: _copy(v) for k, v in MODALITY_DEFAULTS.get(name or "", {}).items()}


def _copy(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else value
