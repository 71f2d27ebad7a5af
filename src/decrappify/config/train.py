"""Training settings: the NoGAN schedule, time budget, device and precision (pure, no torch).

A :class:`TrainConfig` holds everything a training run needs, so that one YAML file
(``decrappify train --config train.yaml``) reproduces a run: the data pipeline
(:class:`~decrappify.config.data.DataConfig`), the crappifier (a
:class:`~decrappify.config.crappify.CrappifyConfig` or a preset name), the generator,
critic and loss, and one section per NoGAN phase:

1. ``pretrain_generator``: the generator alone, pixel (+ perceptual) loss, one-cycle
   learning rate, encoder frozen for a first part;
2. ``save_outputs``: the generator's outputs on a sample of training patches;
3. ``pretrain_critic``: the critic alone, real HR patches against those outputs;
4. ``gan``: generator and critic together with adaptive switching, checkpoints and
   early stopping on a validation metric;

then ``cycles`` repeats phases 2-4. ``time_budget`` splits a wall-clock budget over the
phases by their ``budget_share`` (:func:`decrappify.train.clock.phase_budgets`,
``docs/training.md``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from decrappify.config.base import StrictModel, apply_overrides
from decrappify.config.choices import check_device_name
from decrappify.config.crappify import PRESETS, CrappifyConfig, get_preset
from decrappify.config.data import DataConfig
from decrappify.config.model import CriticConfig, GeneratorConfig, LossConfig
from decrappify.config.recipes import default_generator, default_loss, over_default_generator
from decrappify.durations import duration_seconds

__all__ = [
    "PHASES",
    "GanConfig",
    "PretrainCriticConfig",
    "PretrainGeneratorConfig",
    "SaveOutputsConfig",
    "TrainConfig",
]

#: The NoGAN phases, in order (phases 2-4 repeat once per cycle).
PHASES: tuple[str, ...] = ("pretrain_generator", "save_outputs", "pretrain_critic", "gan")

#: Validation metrics the GAN phase can watch (normalised PSNR / SSIM of the fixed crops,
#: or their FRC resolution, smaller is better).
WatchMetric = Literal["psnr", "ssim", "frc"]


class PretrainGeneratorConfig(StrictModel):
    """Phase 1: the generator alone, with the pixel (+ perceptual) loss.

    AdamW with fastai's one-cycle schedule: the learning rate rises from
    ``max_lr / div_factor`` to ``max_lr`` over the first ``pct_start`` of the steps
    (cosine), then anneals to ``max_lr / final_div_factor`` (cosine).

    Parameters
    ----------
    steps : int
        Optimiser steps without a time budget (with one, the count comes from the
        budget and this is ignored).
    budget_share : float
        Share of the time budget for this phase (shares are normalised by their sum).
    max_lr : float
        Peak learning rate of the decoder.
    encoder_lr_factor : float
        The encoder's learning rate is ``max_lr * encoder_lr_factor`` (discriminative
        learning rates, fastai's ``slice(lr / 10, lr)`` is 0.1; 1 trains all alike).
    pct_start : float
        Fraction of the steps spent warming up.
    div_factor : float
        Starting learning rate is ``max_lr / div_factor``.
    final_div_factor : float
        Final learning rate is ``max_lr / final_div_factor``.
    weight_decay : float
        AdamW decoupled weight decay.
    frozen_fraction : float or None
        Fraction of the steps with the encoder frozen (BatchNorm still trained). None:
        0.25 when ImageNet encoder weights are given, 0 otherwise (freezing a randomly
        initialised encoder only wastes steps).
    checkpoint_every : int
        Validate and write a checkpoint every this many steps (and at the end).
    fine_tune_lr_factor : float
        ``max_lr`` is multiplied by this when the generator starts from a trained model
        (``start_from``). 1 by default: the one-cycle warm-up (from ``max_lr /
        div_factor``) keeps the start, and a lower rate adapts a starting point to real
        data more slowly (``docs/benchmarks.md``, issue 16).
    """

    steps: int = Field(1000, ge=1, le=10_000_000)
    budget_share: float = Field(0.76, ge=0.0, le=1.0)
    max_lr: float = Field(1e-3, gt=0.0, le=1.0)
    encoder_lr_factor: float = Field(1.0, gt=0.0, le=10.0)
    pct_start: float = Field(0.25, ge=0.0, lt=1.0)
    div_factor: float = Field(25.0, ge=1.0, le=1e6)
    final_div_factor: float = Field(1e3, ge=1.0, le=1e8)
    weight_decay: float = Field(1e-3, ge=0.0, le=1.0)
    frozen_fraction: float | None = Field(None, ge=0.0, le=1.0)
    checkpoint_every: int = Field(100, ge=1, le=10_000_000)
    fine_tune_lr_factor: float = Field(1.0, gt=0.0, le=1.0)

    def resolved_frozen_fraction(self, pretrained_encoder: bool) -> float:
        """Fraction of steps with the encoder frozen.

        Parameters
        ----------
        pretrained_encoder : bool
            Whether ImageNet encoder weights are loaded.

        Returns
        -------
        float
            ``frozen_fraction``, or its default (0.25 / 0) when None.
        """
        if self.frozen_fraction is not None:
            return self.frozen_fraction
        return 0.25 if pretrained_encoder else 0.0


class SaveOutputsConfig(StrictModel):
    """Phase 2: save the generator's outputs on training patches, for the critic.

    Parameters
    ----------
    patches : int
        Number of patches (with the matching HR patches) written to
        ``RUN_DIR/gen_outputs.zarr``; a time budget can lower it.
    budget_share : float
        Share of the time budget.
    """

    patches: int = Field(512, ge=1, le=10_000_000)
    budget_share: float = Field(0.02, ge=0.0, le=1.0)


class PretrainCriticConfig(StrictModel):
    """Phase 3: the critic alone, real HR patches (label 1) against saved outputs (label 0).

    Parameters
    ----------
    max_steps : int
        Upper bound of critic steps (each on a batch of real and a batch of generated
        patches), also with a time budget.
    loss_threshold : float
        Stop once the mean BCE loss of the last ``smoothing`` steps is below this
        (chance level is ``ln 2 = 0.693``).
    smoothing : int
        Steps averaged for the threshold test.
    lr : float
        AdamW learning rate (at 1e-4 the critic stayed at chance for hundreds of steps).
    weight_decay : float
        AdamW weight decay.
    holdout : float
        Fraction of the saved patches held back: the critic's accuracy on them is
        reported at the end of the phase (``critic_accuracy`` in the history).
    budget_share : float
        Share of the time budget.
    min_steps : int
        With a time budget, the critic and GAN phases run only when critic pretraining's
        share buys at least this many steps (at most ``max_steps``), at the measured
        generator step time: fewer do not bring the critic below its loss threshold, so
        their time goes to generator pretraining instead.
    """

    max_steps: int = Field(300, ge=1, le=10_000_000)
    loss_threshold: float = Field(0.3, gt=0.0, le=10.0)
    smoothing: int = Field(5, ge=1, le=1000)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    weight_decay: float = Field(1e-3, ge=0.0, le=1.0)
    holdout: float = Field(0.125, ge=0.0, lt=1.0)
    budget_share: float = Field(0.06, ge=0.0, le=1.0)
    min_steps: int = Field(100, ge=1, le=10_000_000)


class GanConfig(StrictModel):
    """Phase 4: generator and critic together (NoGAN's short GAN phase).

    The generator loss is ``w_adv * BCE(critic(G(x)), real) + w_content * content``
    (the pretraining loss). Before each generator step the critic trains on fresh
    batches until its loss falls below ``critic_threshold``, at most
    ``max_critic_steps`` times (fastai's ``AdaptiveGANSwitcher``). Every
    ``checkpoint_every`` generator steps the generator is validated; the phase stops
    when the watched metric has not beaten the best for ``patience`` checkpoints in a
    row, and the best generator is kept (the pretrained one if the GAN never beat it).

    Parameters
    ----------
    max_steps : int
        Upper bound of generator steps, also with a time budget; 0 skips phases 2-4
        (pretraining only).
    w_adv : float
        Weight of the adversarial loss.
    w_content : float
        Weight of the content (pretraining) loss.
    critic_threshold : float
        Critic loss below which training switches to the generator.
    max_critic_steps : int
        Critic steps before each generator step at most.
    lr : float
        Adam learning rate of the generator.
    critic_lr : float or None
        Adam learning rate of the critic (None: ``lr``).
    betas : tuple of float
        Adam betas of both (``(0, 0.9)``: no momentum, as in GAN practice).
    checkpoint_every : int
        Validate and checkpoint every this many generator steps.
    patience : int
        Checkpoints without improvement before stopping.
    metric : {"psnr", "ssim", "frc"}
        The validation metric watched: normalised PSNR or SSIM, or the FRC resolution
        (in pixels, smaller is better: it rewards recovered fine detail, which the GAN
        is for, rather than the smoothest answer).
    fidelity_drop : float or None
        A checkpoint only counts as an improvement while its validation PSNR is at most
        this many dB below the generator the phase started from: the automatic stop
        before the inflection point where the adversarial loss starts to invent detail.
        None: no guard.
    budget_share : float
        Share of the time budget.
    """

    max_steps: int = Field(1000, ge=0, le=10_000_000)
    w_adv: float = Field(1.0, ge=0.0, le=1e4)
    w_content: float = Field(1.5, ge=0.0, le=1e4)
    critic_threshold: float = Field(0.65, gt=0.0, le=10.0)
    max_critic_steps: int = Field(5, ge=1, le=1000)
    lr: float = Field(2e-5, gt=0.0, le=1.0)
    critic_lr: float | None = Field(None, gt=0.0, le=1.0)
    betas: tuple[float, float] = (0.0, 0.9)
    checkpoint_every: int = Field(50, ge=1, le=10_000_000)
    patience: int = Field(3, ge=1, le=10_000)
    metric: WatchMetric = "frc"
    fidelity_drop: float | None = Field(0.3, ge=0.0, le=100.0)
    budget_share: float = Field(0.16, ge=0.0, le=1.0)

    @field_validator("betas")
    @classmethod
    def _check_betas(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in value):
            raise ValueError(f"must be two numbers in [0, 1) (got {list(value)})")
        return value

    @model_validator(mode="after")
    def _check_weights(self) -> GanConfig:
        if self.w_adv == 0 and self.w_content == 0:
            raise ValueError("w_adv and w_content cannot both be 0")
        return self

    @property
    def resolved_critic_lr(self) -> float:
        """The critic's learning rate (``critic_lr`` or ``lr``)."""
        return self.critic_lr if self.critic_lr is not None else self.lr


class TrainConfig(StrictModel):
    """Everything a NoGAN training run needs (one YAML file).

    Parameters
    ----------
    data : DataConfig
        Patch size, sampling, augmentation, validation split. Its ``seed`` and
        ``batch_size`` are set from this config's ``seed`` / ``batch_size`` (give them
        here; if given in both places they must agree).
    crappify : CrappifyConfig, str or None
        The degradation making the LR inputs, or a preset name (``em``,
        ``em-poisson``, ``fluorescence``, ``fluorescence-pssr``); None for paired
        training on real LR/HR images.
    generator : GeneratorConfig
        The generator; its ``scale`` must equal the crappifier's and its ``n_frames``
        ``data.n_frames``.
    critic : CriticConfig
        The critic; ``data.patch_size`` must be at least its ``min_size``.
    loss : LossConfig
        The content loss (pretraining loss, and GAN content term).
    pretrain_generator, save_outputs, pretrain_critic, gan : phase configs
        The NoGAN phases.
    cycles : int
        Number of times phases 2-4 run (1-4); each cycle starts from the best generator
        so far.
    time_budget : float or None
        Wall-clock budget in seconds (strings such as ``"20m"`` or ``"1h30m"`` are
        parsed); None runs the configured step counts.
    device : str
        ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    amp : {"auto", "bf16", "fp16", "off"}
        Mixed precision: ``auto`` is bf16 on CUDA devices that support it (fp16 with a
        gradient scaler otherwise) and off on the CPU.
    channels_last : bool
        Channels-last memory format on CUDA (ignored on the CPU).
    num_threads : int or None
        torch CPU threads (None: every core available to the process).
    seed : int
        Seed of everything random (data, weights, dropout).
    batch_size : int
        Patches per batch (all phases).
    preview_every : int
        Yield a preview image every this many steps (0: only at checkpoints).
    encoder_weights : str or None
        Local torchvision ImageNet state dict of the encoder (``.pth`` or
        ``.safetensors``); None starts from random weights.
    vgg_weights : str or None
        Local torchvision ``vgg16_bn`` state dict, needed when ``loss.weights.feature``
        is positive.
    start_from : str
        The generator's starting weights: ``auto`` (the shipped starting point matching
        the network, scale and modality, else random), ``none`` (random), a shipped
        starting point (``em-4x``, ``fluo-4x``, ``fluo-denoise``) or a model path.
    """

    data: DataConfig = Field(default_factory=DataConfig)
    crappify: CrappifyConfig | str | None = "em"
    generator: GeneratorConfig = Field(default_factory=default_generator)
    critic: CriticConfig = Field(default_factory=CriticConfig)
    loss: LossConfig = Field(default_factory=default_loss)
    pretrain_generator: PretrainGeneratorConfig = Field(default_factory=PretrainGeneratorConfig)
    save_outputs: SaveOutputsConfig = Field(default_factory=SaveOutputsConfig)
    pretrain_critic: PretrainCriticConfig = Field(default_factory=PretrainCriticConfig)
    gan: GanConfig = Field(default_factory=GanConfig)
    cycles: int = Field(1, ge=1, le=4)
    time_budget: float | None = None
    device: str = "auto"
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: bool = True
    num_threads: int | None = Field(None, ge=1, le=1024)
    seed: int = Field(0, ge=0)
    batch_size: int = Field(4, ge=1, le=4096)
    preview_every: int = Field(50, ge=0, le=10_000_000)
    encoder_weights: str | None = None
    vgg_weights: str | None = None
    start_from: str = Field("auto", min_length=1)

    @field_validator("generator", mode="before")
    @classmethod
    def _complete_generator(cls, value: Any) -> Any:
        # a partial section changes the default network, not GeneratorConfig's defaults
        return over_default_generator(value) if isinstance(value, dict) else value

    @model_validator(mode="before")
    @classmethod
    def _sync_data(cls, raw: Any) -> Any:
        """Fill ``data.seed`` / ``data.batch_size`` from the top level (they must agree)."""
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        data = raw.get("data", {})
        if isinstance(data, DataConfig):
            data = data.model_dump()
        data = dict(data) if isinstance(data, dict) else data
        if not isinstance(data, dict):
            return raw
        for key in ("seed", "batch_size"):
            top, inner = raw.get(key), data.get(key)
            if top is None and inner is not None:
                raw[key] = inner
            elif top is not None and inner is not None and top != inner:
                raise ValueError(
                    f"{key} is {top!r} but data.{key} is {inner!r}; set it once, at the top level"
                )
            elif top is not None:
                data[key] = top
        raw["data"] = data
        return raw

    @field_validator("time_budget", mode="before")
    @classmethod
    def _parse_budget(cls, value: Any) -> Any:
        if value is None:
            return None
        seconds, problem = duration_seconds(value)
        if problem:
            raise ValueError(problem)
        return seconds

    @field_validator("device", mode="before")
    @classmethod
    def _check_device(cls, value: Any) -> Any:
        return check_device_name(value)

    @field_validator("crappify")
    @classmethod
    def _check_preset(cls, value: CrappifyConfig | str | None) -> CrappifyConfig | str | None:
        if isinstance(value, str) and value not in PRESETS:
            raise ValueError(f"unknown preset; valid presets: {', '.join(PRESETS)}")
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> TrainConfig:
        if self.data.seed != self.seed or self.data.batch_size != self.batch_size:
            raise ValueError(
                "data.seed / data.batch_size must equal seed / batch_size; set them at the "
                "top level"
            )
        crappify = self.resolved_crappify()
        if crappify is not None:
            if crappify.scale != self.generator.scale:
                raise ValueError(
                    f"generator.scale {self.generator.scale} differs from the crappifier's "
                    f"scale {crappify.scale}; set both (or use --scale)"
                )
            if self.data.patch_size % crappify.scale:
                raise ValueError(
                    f"data.patch_size {self.data.patch_size} is not divisible by the scale "
                    f"{crappify.scale}"
                )
        if self.generator.n_frames != self.data.n_frames:
            raise ValueError(
                f"generator.n_frames {self.generator.n_frames} differs from data.n_frames "
                f"{self.data.n_frames}"
            )
        if self.gan.max_steps > 0 and self.data.patch_size < self.critic.min_size:
            raise ValueError(
                f"data.patch_size {self.data.patch_size} is smaller than the critic's input "
                f"minimum {self.critic.min_size} (2**(critic.n_blocks + 3)); lower "
                "critic.n_blocks or raise the patch size"
            )
        shares = [self.pretrain_generator.budget_share]
        if self.gan.max_steps > 0:
            shares += [
                self.save_outputs.budget_share,
                self.pretrain_critic.budget_share,
                self.gan.budget_share,
            ]
        if self.time_budget is not None and (
            self.pretrain_generator.budget_share <= 0 or sum(shares) <= 0
        ):
            raise ValueError("pretrain_generator.budget_share must be > 0 with a time budget")
        return self

    def resolved_crappify(self) -> CrappifyConfig | None:
        """Return the crappifier as a config (a preset name is expanded).

        Returns
        -------
        CrappifyConfig or None
            The configuration, or None in paired mode.
        """
        if isinstance(self.crappify, str):
            return get_preset(self.crappify)
        return self.crappify

    def resolved(self) -> TrainConfig:
        """Return a copy with the preset name expanded, as written to ``RUN_DIR/train.yaml``.

        Returns
        -------
        TrainConfig
            Validated copy.
        """
        raw = self.model_dump(mode="json")
        crappify = self.resolved_crappify()
        raw["crappify"] = None if crappify is None else crappify.model_dump(mode="json")
        return TrainConfig.validate_dict(raw, source="train config")

    @property
    def gan_enabled(self) -> bool:
        """Whether phases 2-4 run (``gan.max_steps > 0``)."""
        return self.gan.max_steps > 0

    def with_overrides(self, overrides: dict[str, Any]) -> TrainConfig:
        """Return a validated copy with some settings replaced.

        Parameters
        ----------
        overrides : dict
            Dotted keys (``"gan.max_steps"``, ``"crappify.scale"``) to values, as
            :func:`~decrappify.config.base.apply_overrides` sets them (``{"crappify":
            None}`` selects paired training); ``seed``/``batch_size`` and their
            ``data.`` twins are set together.

        Returns
        -------
        TrainConfig
            Validated copy.

        Raises
        ------
        InputError
            For an unknown key or an invalid value.
        """
        raw = apply_overrides(
            type(self), self.model_dump(mode="json"), overrides, expand=_expand_preset
        )
        for key, value in overrides.items():  # seed and batch_size are set in both places
            if key in ("seed", "batch_size", "data.seed", "data.batch_size"):
                leaf = key.rpartition(".")[2]
                raw[leaf] = raw["data"][leaf] = value
        return TrainConfig.validate_dict(raw, source="train config")


def _expand_preset(key: str, value: Any) -> dict[str, Any] | None:
    """Expand a crappify preset name, so that ``crappify.scale=2`` can change one setting."""
    if key == "crappify" and isinstance(value, str) and value in PRESETS:
        return get_preset(value).model_dump(mode="json")
    return None
