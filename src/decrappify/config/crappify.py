"""Crappifier configuration: an ordered list of degradation steps, the scale and the presets.

A :class:`CrappifyConfig` says how a high-resolution (HR) image is turned into a
realistic low-resolution (LR) noisy one. Every numeric parameter of a step is either
a number or a ``[min, max]`` range; ranges are sampled once per image (or per
training patch) from the seed, uniformly, except photon budgets which are sampled
log-uniformly (equal weight per decade). Intensities are in *normalised units*
(0 = background, 1 = bright signal level; see :mod:`decrappify.normalize`), lengths
in pixels of the grid the step works on (HR pixels before the ``downsample`` step,
LR pixels after it) unless a physical unit is given.

The step models are :mod:`decrappify.config.crappify_steps` (re-exported here). Presets
are functions returning a fresh config (:func:`get_preset`, :data:`PRESETS`).
The physics behind each is described in ``docs/crappify.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field, model_validator

from decrappify.config.base import StrictModel
from decrappify.config.choices import CrappifyPreset
from decrappify.config.crappify_steps import (
    PARAMS_SEED_KEY,
    BlurStep,
    DownsampleStep,
    GaussianNoiseStep,
    JpegStep,
    LocalVarianceNoiseStep,
    PoissonStep,
    ReadNoiseStep,
    SaltPepperStep,
    Step,
    check_signal_survives,
    step_type,
)
from decrappify.config.normalization import NormalizationConfig
from decrappify.errors import InputError

__all__ = [
    "PARAMS_SEED_KEY",
    "PRESETS",
    "BlurStep",
    "CrappifyConfig",
    "DownsampleStep",
    "GaussianNoiseStep",
    "JpegStep",
    "LocalVarianceNoiseStep",
    "NormalizationConfig",
    "PoissonStep",
    "ReadNoiseStep",
    "SaltPepperStep",
    "Step",
    "get_preset",
    "step_type",
]


class CrappifyConfig(StrictModel):
    """How HR images are degraded into LR training inputs.

    Parameters
    ----------
    name : str or None
        Label for reports (the preset name, or "fitted").
    scale : int
        Integer downsampling factor between HR and LR (1 = same grid, denoising only).
        A config with ``scale > 1`` needs one ``downsample`` step.
    steps : list of steps
        Degradations applied in order; each a mapping with ``kind`` in
        ``gaussian_noise``, ``local_variance_noise``, ``poisson``, ``read_noise``,
        ``salt_pepper``, ``blur``, ``jpeg``, ``downsample``. Default: area
        downsampling only.
    normalization : NormalizationConfig
        Percentiles that define the normalised units the steps work in.
    """

    name: str | None = None
    scale: int = Field(4, ge=1, le=32)
    steps: list[Step] = Field(default_factory=lambda: [DownsampleStep()])
    normalization: NormalizationConfig = Field(default_factory=NormalizationConfig)

    @model_validator(mode="after")
    def _check_steps(self) -> CrappifyConfig:
        kinds = [step.kind for step in self.steps]
        if kinds.count("downsample") > 1:
            raise ValueError(f"steps: only one downsample step is allowed (got {kinds})")
        if self.scale > 1 and "downsample" not in kinds:
            raise ValueError(
                f"scale {self.scale} needs a step with kind: downsample (steps are {kinds})"
            )
        for i, step in enumerate(self.steps):
            if isinstance(step, ReadNoiseStep) and step.photons is None:
                if "poisson" not in kinds[:i]:
                    raise ValueError(
                        f"steps.{i}: read_noise without photons needs a poisson step before it"
                    )
        check_signal_survives(self.steps)
        return self

    def with_scale(self, scale: int) -> CrappifyConfig:
        """Return a copy with another downsampling factor.

        At scale 1 (restoration on the same grid) the ``downsample`` step is dropped; a
        config without one that is given a scale above 1 gets an ``area`` downsampling
        step after its last blur (optics, then the camera pixel, then the noise).

        Parameters
        ----------
        scale : int
            The new factor (>= 1).

        Returns
        -------
        CrappifyConfig
            A validated copy.
        """
        return self.with_overrides(scale=scale)

    def with_overrides(self, **overrides: Any) -> CrappifyConfig:
        """Return a validated copy with some settings replaced.

        Parameters
        ----------
        **overrides
            Top-level fields (``scale=2``, ``steps=[...]``, ``normalization={...}``) or
            step parameters as ``"<kind>.<parameter>"`` keys, applied to every step of
            that kind (``**{"poisson.photons": [20, 200]}``). A new ``scale`` without new
            ``steps`` drops or adds the ``downsample`` step as :meth:`with_scale` says.

        Returns
        -------
        CrappifyConfig
            A validated copy.

        Raises
        ------
        InputError
            For an unknown field, a kind with no step in this config, or invalid values.
        """
        raw = self.model_dump(mode="json")
        for key, value in overrides.items():
            if "." not in key:
                raw[key] = value
                continue
            kind, _, param = key.partition(".")
            matches = [s for s in raw["steps"] if s["kind"] == kind]
            if not matches:
                raise InputError(
                    f"override {key}: this config has no {kind!r} step "
                    f"(steps: {[s['kind'] for s in raw['steps']]})"
                )
            if param not in matches[0]:
                valid = sorted(p for p in matches[0] if p != "kind")
                raise InputError(f"override {key}: {kind} has no parameter {param!r} ({valid})")
            for step in matches:
                step[param] = value
        if "scale" in overrides and "steps" not in overrides:
            raw["steps"] = _steps_for_scale(raw["steps"], raw["scale"])
        return CrappifyConfig.validate_dict(raw, source=f"{self.name or 'crappify config'}")

    def summary(self) -> str:
        """One line describing the pipeline, for logs and reports.

        Returns
        -------
        str
            For example ``"em (x4): local_variance_noise(gain=0.05, ...) -> downsample(...)"``.
        """
        parts = []
        for step in self.steps:
            params = ", ".join(
                f"{k}={_short(v)}"
                for k, v in step.model_dump().items()
                if k != "kind" and v is not None
            )
            parts.append(f"{step.kind}({params})")
        label = self.name or "crappify"
        return f"{label} (x{self.scale}): " + (" -> ".join(parts) if parts else "no degradation")


def _steps_for_scale(steps: list[dict[str, Any]], scale: Any) -> list[dict[str, Any]]:
    """Drop the downsample step at scale 1; add an area one (after the last blur) above 1."""
    kinds = [step["kind"] for step in steps]
    if scale == 1:
        return [step for step in steps if step["kind"] != "downsample"]
    if isinstance(scale, int) and scale > 1 and "downsample" not in kinds:
        at = max((i + 1 for i, kind in enumerate(kinds) if kind == "blur"), default=0)
        return [*steps[:at], {"kind": "downsample", "method": "area"}, *steps[at:]]
    return steps


def _short(value: Any) -> str:
    """Compact text for a parameter value."""
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# --------------------------------------------------------------------------- presets


def preset_em() -> CrappifyConfig:
    """PSSR's EM recipe: local-variance Gaussian noise, then 4x bilinear downsampling.

    ``local_vars = 0.05 * gaussian(x, sigma=3)`` then ``zoom(x, 1/4, order=1)``, as
    ``em_AG_D_sameas_preprint`` in PSSR (Fang et al. 2021).

    Returns
    -------
    CrappifyConfig
        A fresh config.
    """
    return CrappifyConfig(
        name="em",
        scale=4,
        steps=[
            LocalVarianceNoiseStep(gain=0.05, smooth_sigma=3.0, min_variance=1e-10),
            DownsampleStep(method="bilinear"),
        ],
    )


def preset_em_poisson() -> CrappifyConfig:
    """Low-dose EM: probe blur, 4x area sampling, electron shot noise.

    Returns
    -------
    CrappifyConfig
        A fresh config.
    """
    return CrappifyConfig(
        name="em-poisson",
        scale=4,
        steps=[
            BlurStep(sigma=(0.5, 1.5)),
            DownsampleStep(method="area"),
            PoissonStep(photons=(20.0, 200.0), background=0.25),
        ],
    )


def preset_fluorescence() -> CrappifyConfig:
    """Widefield/confocal fluorescence: PSF blur, 4x area sampling, Poisson-Gaussian noise.

    Returns
    -------
    CrappifyConfig
        A fresh config.
    """
    return CrappifyConfig(
        name="fluorescence",
        scale=4,
        steps=[
            BlurStep(sigma=(1.0, 2.0)),
            DownsampleStep(method="area"),
            PoissonStep(photons=(50.0, 500.0), background=(0.0, 0.1)),
            ReadNoiseStep(sigma=(1.0, 3.0)),
        ],
    )


def preset_fluorescence_pssr() -> CrappifyConfig:
    """PSSR's fluorescence recipe: salt & pepper, local-variance Gaussian, 4x bilinear.

    ``salt`` and ``pepper`` at 0.005 each, ``local_vars = 0.5 * gaussian(x, 5)``, then
    ``zoom(x, 1/4, order=1)``, as ``fluo_SP_AG_D_sameas_preprint`` in PSSR.

    Returns
    -------
    CrappifyConfig
        A fresh config.
    """
    return CrappifyConfig(
        name="fluorescence-pssr",
        scale=4,
        steps=[
            SaltPepperStep(amount=0.01, salt_fraction=0.5),
            LocalVarianceNoiseStep(gain=0.5, smooth_sigma=5.0, min_variance=1e-10),
            DownsampleStep(method="bilinear"),
        ],
    )


_PRESETS: dict[str, Callable[[], CrappifyConfig]] = {
    CrappifyPreset.EM.value: preset_em,
    CrappifyPreset.EM_POISSON.value: preset_em_poisson,
    CrappifyPreset.FLUORESCENCE.value: preset_fluorescence,
    CrappifyPreset.FLUORESCENCE_PSSR.value: preset_fluorescence_pssr,
}

#: Names accepted by :func:`get_preset`.
PRESETS: tuple[str, ...] = tuple(_PRESETS)


def get_preset(name: str, **overrides: Any) -> CrappifyConfig:
    """Return a fresh preset config, optionally with some settings replaced.

    Parameters
    ----------
    name : str
        One of :data:`PRESETS`: ``"em"``, ``"em-poisson"``, ``"fluorescence"``,
        ``"fluorescence-pssr"``.
    **overrides
        Passed to :meth:`CrappifyConfig.with_overrides` (``scale=2``,
        ``**{"poisson.photons": [20, 200]}`` ...).

    Returns
    -------
    CrappifyConfig
        A new, validated config.

    Raises
    ------
    InputError
        For an unknown name (the message lists the valid ones) or invalid overrides.
    """
    try:
        factory = _PRESETS[name]
    except KeyError:
        raise InputError(
            f"unknown crappify preset {name!r}; valid presets: {', '.join(PRESETS)}"
        ) from None
    config = factory()
    return config.with_overrides(**overrides) if overrides else config
