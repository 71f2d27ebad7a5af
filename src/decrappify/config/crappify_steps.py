"""The degradation steps of a crappifier: one validated model per kind (pure, no torch).

Every numeric parameter is a number or a ``[min, max]`` range sampled per image (or per
training patch) from the seed; :class:`~decrappify.config.crappify.CrappifyConfig` holds
an ordered list of them (:data:`Step`, discriminated by ``kind``).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from decrappify.config.base import StrictModel
from decrappify.errors import InputError

__all__ = [
    "PARAMS_SEED_KEY",
    "BlurStep",
    "DownsampleStep",
    "FloatRange",
    "GaussianNoiseStep",
    "IntRange",
    "JpegStep",
    "LengthUnit",
    "LocalVarianceNoiseStep",
    "PoissonStep",
    "ReadNoiseStep",
    "SaltPepperStep",
    "Step",
    "step_type",
]

#: A number or an inclusive ``[min, max]`` range sampled per image.
FloatRange = float | tuple[float, float]
#: An integer or an inclusive ``[min, max]`` integer range sampled per image.
IntRange = int | tuple[int, int]
#: Length units a blur can be given in (NGFF names), besides ``"pixel"``.
LengthUnit = Literal["pixel", "angstrom", "nanometer", "micrometer", "millimeter"]

#: Key mixed into the seed when sampling parameters (keeps streams apart from noise).
PARAMS_SEED_KEY = 0x5EED_0001
#: Most noise (standard deviation at the bright level, normalised units) a config may add:
#: beyond it the signal is gone (PSSR's noisiest recipe adds about 0.7).
MAX_NOISE = 2.0
#: Widest blur in pixels (sigma); wider ones leave a flat image.
MAX_BLUR_SIGMA_PX = 50.0
#: ``fwhm = FWHM_PER_SIGMA * sigma`` for a Gaussian.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


class _Bound:
    """Allowed interval of a numeric parameter, with its one-line description."""

    def __init__(
        self,
        low: float | None = None,
        high: float | None = None,
        *,
        low_open: bool = False,
        high_open: bool = False,
    ) -> None:
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open

    def accepts(self, value: float) -> bool:
        """Whether ``value`` lies inside the interval."""
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (
            self.high is not None and (value >= self.high if self.high_open else value > self.high)
        )

    def describe(self) -> str:
        """Human description such as ``"> 0"`` or ``"in [0, 1]"``."""
        if self.low is not None and self.high is not None:
            left, right = ("(" if self.low_open else "["), (")" if self.high_open else "]")
            return f"in {left}{_fmt(self.low)}, {_fmt(self.high)}{right}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {_fmt(self.low)}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {_fmt(self.high)}"
        return "finite"


def _fmt(value: float) -> str:
    """Format a number without a useless ``.0``."""
    return str(int(value)) if float(value).is_integer() else str(value)


def _fmt_value(value: Any) -> str:
    """Format a parameter value (a number or a range) for an error message."""
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return _fmt(value)


class _StepBase(StrictModel):
    """Common machinery of the degradation steps: bounds checks and parameter sampling."""

    #: Allowed interval of each numeric parameter.
    _bounds: ClassVar[dict[str, _Bound]] = {}
    #: Parameters sampled log-uniformly from their range.
    _log_uniform: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _check_bounds(self) -> _StepBase:
        for name, bound in self._bounds.items():
            value = getattr(self, name)
            if value is None:
                continue
            values = value if isinstance(value, tuple) else (value,)
            for v in values:
                if not bound.accepts(float(v)):
                    raise ValueError(f"{name} must be {bound.describe()} (got {_fmt_value(value)})")
            if isinstance(value, tuple) and value[0] > value[1]:
                raise ValueError(
                    f"{name} range must be [min, max] with min <= max (got {_fmt_value(value)})"
                )
        return self

    def numeric_parameters(self) -> tuple[str, ...]:
        """Names of the numeric (sampled) parameters, in declaration order."""
        return tuple(self._bounds)

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """Draw one value of every numeric parameter (fixed values are kept).

        One uniform number is drawn per numeric parameter whether it is a range or
        not, so fixing one parameter never changes the values drawn for the others.

        Parameters
        ----------
        rng : numpy.random.Generator
            Source of randomness (derived from the seed and the step index).

        Returns
        -------
        dict
            ``{"kind": ..., name: value, ...}`` with plain Python numbers.
        """
        out: dict[str, Any] = {"kind": self.kind}  # type: ignore[attr-defined]
        for name, value in self.model_dump().items():
            if name == "kind":
                continue
            if name not in self._bounds:
                out[name] = value
                continue
            u = float(rng.random())
            out[name] = None if value is None else _draw(value, u, log=name in self._log_uniform)
        return out

    def central(self) -> dict[str, Any]:
        """Return the step with every range at its median (geometric for photon budgets).

        Returns
        -------
        dict
            ``{"kind": ..., name: value, ...}`` as :meth:`sample` returns, for the value a
            typical image gets (what the forward model of the trust maps uses).
        """
        out: dict[str, Any] = {"kind": self.kind}  # type: ignore[attr-defined]
        for name, value in self.model_dump().items():
            if name == "kind":
                continue
            if name in self._bounds and value is not None:
                value = _draw(value, 0.5, log=name in self._log_uniform)
            out[name] = value
        return out


def _draw(value: Any, u: float, *, log: bool) -> float | int:
    """Map a uniform number ``u`` in [0, 1) to a value of a number or a [min, max] range."""
    if not isinstance(value, tuple | list):
        return value
    low, high = value
    if isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool):
        return int(low + math.floor(u * (high - low + 1)))
    if log and low > 0:
        return float(math.exp(math.log(low) + u * (math.log(high) - math.log(low))))
    return float(low + u * (high - low))


class GaussianNoiseStep(_StepBase):
    """Additive Gaussian noise with one global standard deviation.

    Parameters
    ----------
    sigma : float or [min, max]
        Standard deviation in normalised units (0.05 = 5 % of the bright level).
    """

    kind: Literal["gaussian_noise"] = "gaussian_noise"
    sigma: FloatRange = 0.05

    _bounds: ClassVar[dict[str, _Bound]] = {"sigma": _Bound(0.0)}


class LocalVarianceNoiseStep(_StepBase):
    """PSSR's signal-dependent Gaussian noise: variance proportional to a smoothed image.

    ``variance = gain * max(gaussian_filter(img, smooth_sigma), 0) + min_variance``,
    as ``skimage.util.random_noise(img, mode="localvar",
    local_vars=gain * filters.gaussian(img, smooth_sigma))`` in PSSR.

    Parameters
    ----------
    gain : float or [min, max]
        Variance per unit of smoothed intensity (PSSR: 0.05 for EM, 0.5 for
        fluorescence).
    smooth_sigma : float or [min, max]
        Standard deviation, in pixels, of the Gaussian smoothing that gives the local
        intensity (PSSR: 3 for EM, 5 for fluorescence).
    min_variance : float or [min, max]
        Variance floor added everywhere (PSSR: 1e-10), in normalised units squared.
    """

    kind: Literal["local_variance_noise"] = "local_variance_noise"
    gain: FloatRange = 0.05
    smooth_sigma: FloatRange = 3.0
    min_variance: FloatRange = 1e-10

    _bounds: ClassVar[dict[str, _Bound]] = {
        "gain": _Bound(0.0),
        "smooth_sigma": _Bound(0.0, 64.0, low_open=True),
        "min_variance": _Bound(0.0),
    }


class PoissonStep(_StepBase):
    """Photon (or electron) shot noise at a photon budget.

    ``out = Poisson((max(img, 0) + background) * photons) / photons - background``:
    the bright level (1.0) collects ``photons`` photons per pixel on average and the
    background level (0) collects ``background * photons``.

    Parameters
    ----------
    photons : float or [min, max]
        Photons per pixel at the bright level; ranges are sampled log-uniformly.
    background : float or [min, max]
        Photons at the background level, as a fraction of ``photons`` (0: a
        photon-free background).
    """

    kind: Literal["poisson"] = "poisson"
    photons: FloatRange = 100.0
    background: FloatRange = 0.0

    _bounds: ClassVar[dict[str, _Bound]] = {
        "photons": _Bound(0.0, low_open=True),
        "background": _Bound(0.0, 100.0),
    }
    _log_uniform: ClassVar[frozenset[str]] = frozenset({"photons"})


class ReadNoiseStep(_StepBase):
    """Camera read noise and offset, in photo-electrons.

    ``out = img + (offset + sigma * N(0, 1)) / photons``: Gaussian noise of ``sigma``
    electrons and a constant ``offset`` electrons, converted to normalised units with
    the photon budget (electrons = photons for the detector; divide ADU values by the
    camera's conversion gain in ADU per electron).

    Parameters
    ----------
    sigma : float or [min, max]
        Read noise, electrons rms (sCMOS ~1-2, CCD ~5-10).
    offset : float or [min, max]
        Offset (bias) in electrons added to every pixel (0: the offset was subtracted).
    photons : float or [min, max] or None
        Photon budget used for the conversion; None (default) takes the one sampled
        for the closest preceding ``poisson`` step, so shot and read noise share it.
    """

    kind: Literal["read_noise"] = "read_noise"
    sigma: FloatRange = 2.0
    offset: FloatRange = 0.0
    photons: FloatRange | None = None

    _bounds: ClassVar[dict[str, _Bound]] = {
        "sigma": _Bound(0.0),
        "offset": _Bound(),
        "photons": _Bound(0.0, low_open=True),
    }
    _log_uniform: ClassVar[frozenset[str]] = frozenset({"photons"})


class SaltPepperStep(_StepBase):
    """Salt-and-pepper impulse noise (hot and dead pixels, PSSR's ``salt``/``pepper``).

    Parameters
    ----------
    amount : float or [min, max]
        Fraction of pixels replaced (PSSR: 0.005 salt + 0.005 pepper = 0.01).
    salt_fraction : float or [min, max]
        Fraction of the replaced pixels set to ``salt`` (the others to ``pepper``).
    salt, pepper : float or [min, max]
        Values of salt and pepper pixels in normalised units (1 = bright level,
        0 = background).
    """

    kind: Literal["salt_pepper"] = "salt_pepper"
    amount: FloatRange = 0.01
    salt_fraction: FloatRange = 0.5
    salt: FloatRange = 1.0
    pepper: FloatRange = 0.0

    _bounds: ClassVar[dict[str, _Bound]] = {
        "amount": _Bound(0.0, 0.5),
        "salt_fraction": _Bound(0.0, 1.0),
        "salt": _Bound(),
        "pepper": _Bound(),
    }


class BlurStep(_StepBase):
    """Gaussian point-spread function.

    Give exactly one of ``sigma`` (standard deviation) or ``fwhm`` (full width at half
    maximum, ``fwhm = 2 sqrt(2 ln 2) sigma`` ~ 2.355 sigma), in ``unit``: pixels of the
    grid the step works on, or a physical length converted with the image's pixel
    size (for example ``fwhm: 0.25, unit: micrometer`` for a widefield PSF).

    Parameters
    ----------
    sigma : float or [min, max] or None
        Standard deviation of the Gaussian.
    fwhm : float or [min, max] or None
        Full width at half maximum of the Gaussian.
    unit : str
        ``"pixel"`` (default) or a length unit (``"nanometer"``, ``"micrometer"`` ...).
    """

    kind: Literal["blur"] = "blur"
    sigma: FloatRange | None = None
    fwhm: FloatRange | None = None
    unit: LengthUnit = "pixel"

    _bounds: ClassVar[dict[str, _Bound]] = {
        "sigma": _Bound(0.0),
        "fwhm": _Bound(0.0),
    }

    @model_validator(mode="after")
    def _one_width(self) -> BlurStep:
        if (self.sigma is None) == (self.fwhm is None):
            raise ValueError("blur needs exactly one of sigma or fwhm")
        if self.unit == "pixel":
            name, value = ("sigma", self.sigma) if self.sigma is not None else ("fwhm", self.fwhm)
            limit = MAX_BLUR_SIGMA_PX * (1.0 if name == "sigma" else FWHM_PER_SIGMA)
            if _upper(value) > limit:
                raise ValueError(
                    f"{name} must be at most {limit:.4g} pixels, beyond which the blur leaves "
                    f"no detail to learn (got {_fmt_value(value)})"
                )
        return self


class JpegStep(_StepBase):
    """JPEG-like compression: 8x8 DCT blocks quantised with a quality-scaled table.

    Parameters
    ----------
    quality : int or [min, max]
        JPEG quality 1-100 (IJG scaling of the standard luminance table; lower is
        coarser).
    """

    kind: Literal["jpeg"] = "jpeg"
    quality: IntRange = 75

    _bounds: ClassVar[dict[str, _Bound]] = {"quality": _Bound(1, 100)}


class DownsampleStep(_StepBase):
    """Downsampling by the config's integer ``scale``.

    Parameters
    ----------
    method : {"area", "bilinear"}
        ``"area"``: mean of each ``scale x scale`` block (a camera pixel integrating
        light). ``"bilinear"``: linear interpolation at the LR pixel centres, i.e.
        without anti-aliasing, as PSSR's ``scipy.ndimage.zoom(order=1)``.
    """

    kind: Literal["downsample"] = "downsample"
    method: Literal["area", "bilinear"] = "area"


#: One degradation step; the ``kind`` field selects the type.
Step = Annotated[
    GaussianNoiseStep
    | LocalVarianceNoiseStep
    | PoissonStep
    | ReadNoiseStep
    | SaltPepperStep
    | BlurStep
    | JpegStep
    | DownsampleStep,
    Field(discriminator="kind"),
]

_STEP_TYPES: dict[str, type[_StepBase]] = {
    "gaussian_noise": GaussianNoiseStep,
    "local_variance_noise": LocalVarianceNoiseStep,
    "poisson": PoissonStep,
    "read_noise": ReadNoiseStep,
    "salt_pepper": SaltPepperStep,
    "blur": BlurStep,
    "jpeg": JpegStep,
    "downsample": DownsampleStep,
}


def step_type(kind: str) -> type[_StepBase]:
    """Return the step class for a ``kind`` name.

    Parameters
    ----------
    kind : str
        A step kind such as ``"poisson"``.

    Returns
    -------
    type
        The pydantic model of that step.

    Raises
    ------
    InputError
        For an unknown kind (the message lists the valid ones).
    """
    try:
        return _STEP_TYPES[kind]
    except KeyError:
        raise InputError(
            f"unknown step kind {kind!r}; valid kinds: {sorted(_STEP_TYPES)}"
        ) from None


def _upper(value: Any) -> float:
    """Largest value of a number or a ``[min, max]`` range."""
    return float(max(value)) if isinstance(value, tuple | list) else float(value)


def _lower(value: Any) -> float:
    """Smallest value of a number or a ``[min, max]`` range."""
    return float(min(value)) if isinstance(value, tuple | list) else float(value)


def noise_at_signal(steps: list[Any]) -> list[tuple[int, str, float]]:
    """Worst-case noise of each noise step at the bright signal level (1 in normalised units).

    Parameters
    ----------
    steps : list of steps
        The degradation steps, in order.

    Returns
    -------
    list of (int, str, float)
        ``(step index, parameter to change, noise standard deviation)`` for each step that
        adds noise, with every range at its noisiest end: Gaussian ``sigma``;
        local-variance ``sqrt(gain + min_variance)``; Poisson ``sqrt((1 + background) /
        photons)``; read noise ``sigma / photons`` (the photons of the step, or of the
        closest preceding ``poisson`` step).
    """
    out: list[tuple[int, str, float]] = []
    photons: float | None = None
    for i, step in enumerate(steps):
        if isinstance(step, GaussianNoiseStep):
            out.append((i, "sigma", _upper(step.sigma)))
        elif isinstance(step, LocalVarianceNoiseStep):
            out.append((i, "gain", math.sqrt(_upper(step.gain) + _upper(step.min_variance))))
        elif isinstance(step, PoissonStep):
            photons = _lower(step.photons)
            out.append((i, "photons", math.sqrt((1.0 + _upper(step.background)) / photons)))
        elif isinstance(step, ReadNoiseStep):
            budget = _lower(step.photons) if step.photons is not None else photons
            if budget:
                out.append((i, "sigma", _upper(step.sigma) / budget))
    return out


def check_signal_survives(steps: list[Any]) -> None:
    """Refuse noise that buries the signal (more than :data:`MAX_NOISE` at the bright level).

    Parameters
    ----------
    steps : list of steps
        The degradation steps, in order.

    Raises
    ------
    ValueError
        Naming the noisiest step and the parameter to change.
    """
    noise = noise_at_signal(steps)
    total = math.sqrt(sum(sigma**2 for _, _, sigma in noise))
    if total > MAX_NOISE:
        index, param, _ = max(noise, key=lambda item: item[2])
        kind = steps[index].kind
        raise ValueError(
            f"steps.{index}.{kind}: the noise would be {total:.3g} times the bright signal "
            f"level (at most {MAX_NOISE:g}), so no signal would be left to learn from; "
            f"{'raise' if param == 'photons' else 'lower'} its {param}"
        )
