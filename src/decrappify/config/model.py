"""Network, critic and loss settings, and the metadata stored with every trained model.

These models are pure configuration (no torch): :mod:`decrappify.models.factory` turns
them into modules. The names of the choices (encoders, presets, normalisations, loss
terms) are :class:`enum.Enum` classes defined here so that both the configuration and
the factory use the same spelling.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from pydantic import Field, field_validator, model_validator

from decrappify import __version__
from decrappify.config.base import StrictModel
from decrappify.config.normalization import NormalizationConfig

#: Version of the saved-model layout (``model.json`` + ``model.safetensors``). Bump it when
#: a change makes older decrappify releases unable to read new files. Version 2 added
#: ``generator.grid``; version-1 files are upsample-first (``"hr"``) networks. Version 3
#: added ``generator.arch``, ``generator.naf`` (older files are ``"resnet"`` networks) and
#: ``weights_sha256``.
MODEL_FORMAT_VERSION = 3

#: Number of U-Net decoder blocks (one per resolution change of every ResNet encoder).
N_DECODER_BLOCKS = 4

#: Indices of the ReLU layers just before each max-pool of torchvision's ``vgg16_bn.features``.
VGG16_BN_BLOCK_ENDS = (5, 12, 22, 32, 42)


class Arch(str, Enum):
    """Generator families."""

    RESNET = "resnet"
    NAF = "naf"


class BlockType(str, Enum):
    """Blocks of the ``"naf"`` family."""

    NAF = "naf"
    RES = "res"


class EncoderName(str, Enum):
    """ResNet encoders of the generator (torchvision parameter names)."""

    RESNET18 = "resnet18"
    RESNET34 = "resnet34"
    RESNET50 = "resnet50"
    RESNET101 = "resnet101"


class Preset(str, Enum):
    """Decoder layouts, after DeOldify's ``DynamicUnetWide`` and ``DynamicUnetDeep``."""

    WIDE = "wide"
    DEEP = "deep"


#: Smallest side of the generator's deepest feature map on a training patch
#: (:meth:`GeneratorConfig.context_warning`).
MIN_DEEPEST_FEATURES = 4


class Grid(str, Enum):
    """Where the generator's U-Net computes."""

    LR = "lr"
    HR = "hr"


class TailType(str, Enum):
    """How an ``"lr"`` generator reaches the output grid."""

    CONV = "conv"
    SHUFFLE = "shuffle"


class NormType(str, Enum):
    """Normalisation of the decoder convolutions."""

    BATCH = "batch"
    SPECTRAL = "spectral"
    WEIGHT = "weight"


class PoolType(str, Enum):
    """How the critic reduces its patch map."""

    GLOBAL = "global"
    PATCH = "patch"


class LossTerm(str, Enum):
    """Terms a :class:`LossConfig` can weight."""

    L1 = "l1"
    MSE = "mse"
    SSIM = "ssim"
    MS_SSIM = "ms_ssim"
    FEATURE = "feature"


#: Preset defaults: ``(nf_factor, convolutions per decoder block)``.
PRESET_DEFAULTS: dict[Preset, tuple[float, int]] = {
    Preset.WIDE: (2.0, 1),
    Preset.DEEP: (1.5, 2),
}


class NafConfig(StrictModel):
    """The ``"naf"`` generator family: a U-Net whose first level runs on the input grid.

    See :mod:`decrappify.models.nafunet` and ``docs/models.md``.

    Parameters
    ----------
    width : int
        Channels of the first (full input resolution) level, doubled at every level
        below.
    blocks : list of int
        Blocks of each encoder level from the full-resolution one down; its length (1-5)
        is the number of 2x downsamplings.
    middle_blocks : int
        Blocks at the deepest level.
    decoder_blocks : list of int or None
        Blocks of each decoder level, in the order of ``blocks`` (None: the same).
    block : BlockType
        ``"naf"``: NAFNet's LayerNorm / SimpleGate block (without its global channel
        attention, which would make tiled and whole-image predictions differ);
        ``"res"``: EDSR's conv-ReLU-conv residual block.
    expand : int
        Channel expansion inside ``"naf"`` blocks.
    """

    width: int = Field(32, ge=4, le=512)
    blocks: list[int] = Field(default_factory=lambda: [2, 2, 2], min_length=1, max_length=5)
    middle_blocks: int = Field(4, ge=0, le=64)
    decoder_blocks: list[int] | None = None
    block: BlockType = BlockType.NAF
    expand: int = Field(2, ge=1, le=8)

    @field_validator("blocks", "decoder_blocks")
    @classmethod
    def _check_counts(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(not 0 <= n <= 64 for n in value):
            raise ValueError(f"block counts must be between 0 and 64 (got {value})")
        return value

    @model_validator(mode="after")
    def _check_decoder(self) -> NafConfig:
        if self.decoder_blocks is not None and len(self.decoder_blocks) != len(self.blocks):
            raise ValueError(
                f"decoder_blocks needs one count per level of blocks ({len(self.blocks)}), "
                f"got {self.decoder_blocks}"
            )
        return self


class GeneratorConfig(StrictModel):
    """The super-resolution generator: which family, and its architecture.

    Two families (``arch``): ``"resnet"``, a ResNet encoder with a DynamicUnet-style
    decoder (fastai / DeOldify / PSSR; the only one that can start from ImageNet
    weights), and ``"naf"``, a U-Net whose first level computes on the input grid itself
    with no BatchNorm (its settings are ``naf``). ``scale``, ``n_frames``, ``y_range``,
    ``blur`` and ``tail_width`` apply to both; the other settings to ``"resnet"`` only.

    Parameters
    ----------
    arch : Arch
        The family.
    naf : NafConfig
        Architecture of the ``"naf"`` family.
    encoder : EncoderName
        ResNet encoder (``resnet18`` / ``resnet34`` are practical on a CPU).
    preset : Preset
        ``"wide"`` (DeOldify's "stable" layout): fewer layers, more filters near full
        resolution; every decoder block is ``blocks_per_stage`` convolutions (default 1)
        of a constant width ``64 * nf_factor`` (default ``nf_factor`` 2: 128 channels,
        64 in the last block). ``"deep"`` (DeOldify's "artistic" idea): more layers,
        fewer filters near full resolution; ``blocks_per_stage`` convolutions (default 2)
        of width ``32 * nf_factor * 2**level`` (default ``nf_factor`` 1.5: 384, 192, 96
        and 48 channels from 1/16 to 1/2 resolution).
    nf_factor : float or None
        Width multiplier of the decoder; None takes the preset's default.
    blocks_per_stage : int or None
        Convolutions per decoder block; None takes the preset's default.
    self_attention : bool
        Put a self-attention layer after the convolutions of one decoder block.
    attention_block : int
        Which of the 4 decoder blocks gets it (Python indexing, negative from the end);
        the default ``-3`` is fastai's ``self_attention=True`` (output at 1/8 resolution).
    norm_type : NormType
        ``"batch"``: BatchNorm after each decoder convolution (fastai default);
        ``"spectral"``: spectral-normalised convolutions, plus BatchNorm in the middle
        and U-Net blocks (DeOldify); ``"weight"``: weight-normalised convolutions and no
        BatchNorm (PSSR).
    blur : bool
        Blur after every PixelShuffle upsampling (replication pad + 2x2 average), which
        removes checkerboard artefacts.
    y_range : tuple of float or None
        Output range of the final sigmoid in normalised intensity units; None for a
        linear output. With ``residual`` it clamps the output at inference only.
    residual : bool
        Global residual (VDSR-style): the output is the bilinearly upsampled input
        (its centre frame) plus the U-Net's correction, whose last layer starts at zero,
        so training starts from bilinear interpolation and learns only what it misses.
        ``"naf"`` networks are always residual (``residual`` must be true).
    n_frames : int
        Input frames (neighbouring z-slices or time points, odd); the network predicts
        the centre one.
    scale : int
        Integer up-sampling factor from the input to the output pixel grid.
    grid : Grid
        ``"lr"``: the U-Net computes on the low-resolution input grid and its decoder
        continues past it with one PixelShuffle-ICNR stage per prime factor of ``scale``
        (``scale**2`` times less computation than ``"hr"``). ``"hr"`` (PSSR): the input is
        upsampled bilinearly first and the U-Net computes on the output grid.
    tail : TailType
        ``"lr"`` only. ``"conv"``: every PixelShuffle-ICNR stage ends with a 3x3
        convolution, the last on the output grid (where the upsampled input is
        concatenated). ``"shuffle"``: the last stage's sub-pixels come straight from the
        head (3x3 convolution to ``factor**2`` channels + PixelShuffle, as ESPCN), so no
        feature map is computed on the output grid: several times cheaper.
    tail_width : int
        ``"lr"`` and ``"naf"``: channels of the last upsampling stage before the output
        grid (doubled per coarser stage).
    encoder_depth : int
        Residual stages of the ResNet encoder kept: 4 (all, features down to 1/32 of
        the U-Net's grid) or fewer (3: down to 1/16, a quarter of the parameters of
        ResNet-18/34, since the last stage holds most of them).
    """

    arch: Arch = Arch.RESNET
    naf: NafConfig = Field(default_factory=NafConfig)
    encoder: EncoderName = EncoderName.RESNET34
    preset: Preset = Preset.WIDE
    nf_factor: float | None = Field(None, gt=0.0, le=8.0)
    blocks_per_stage: int | None = Field(None, ge=1, le=4)
    self_attention: bool = True
    attention_block: int = Field(-3, ge=-N_DECODER_BLOCKS, lt=N_DECODER_BLOCKS)
    norm_type: NormType = NormType.BATCH
    blur: bool = True
    y_range: tuple[float, float] | None = (-0.2, 1.2)
    residual: bool = False
    n_frames: int = Field(1, ge=1, le=15)
    scale: int = Field(4, ge=1, le=8)
    grid: Grid = Grid.LR
    tail: TailType = TailType.CONV
    tail_width: int = Field(16, ge=1, le=512)
    encoder_depth: int = Field(4, ge=2, le=4)

    @field_validator("n_frames")
    @classmethod
    def _check_odd(cls, value: int) -> int:
        if value % 2 != 1:
            raise ValueError("must be odd so that there is a centre frame")
        return value

    @field_validator("y_range")
    @classmethod
    def _check_range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None:
            low, high = value
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"must be [low, high] with low < high (got {list(value)})")
        return value

    @model_validator(mode="after")
    def _check_naf_residual(self) -> GeneratorConfig:
        if self.arch == Arch.NAF and not self.residual:
            raise ValueError(
                "residual: the naf generator always adds its output to the interpolated "
                "input; set residual: true (or arch: resnet)"
            )
        return self

    @property
    def levels(self) -> int:
        """Number of 2x downsamplings between the input grid and the deepest features."""
        if self.arch == Arch.NAF:
            return len(self.naf.blocks)
        return self.encoder_depth + 1

    def deepest_features(self, patch_size: int) -> int:
        """Side in pixels of the deepest encoder features on a training patch.

        Parameters
        ----------
        patch_size : int
            HR training patch side.

        Returns
        -------
        int
            ``patch / 2**levels``, the patch counted on the grid the U-Net computes on
            (the LR grid for ``grid="lr"`` and ``"naf"``).
        """
        on_lr = self.arch == Arch.NAF or self.grid == Grid.LR
        side = patch_size // self.scale if on_lr else patch_size
        return side // 2**self.levels

    @property
    def short_name(self) -> str:
        """The network in two words: ``"resnet18 U-Net"`` or ``"naf U-Net"``."""
        return "naf U-Net" if self.arch == Arch.NAF else f"{self.encoder.value} U-Net"

    def describe(self) -> str:
        """One line naming the network, e.g. ``"naf U-Net (width 32, blocks [2, 2, 2] + 4)"``."""
        if self.arch == Arch.NAF:
            naf = self.naf
            decoder = "" if naf.decoder_blocks is None else f", decoder {naf.decoder_blocks}"
            return (
                f"naf U-Net ({naf.block.value} blocks, width {naf.width}, blocks "
                f"{naf.blocks} + {naf.middle_blocks}{decoder}, on the input grid)"
            )
        return (
            f"{self.encoder.value} U-Net ({self.preset.value} decoder, nf_factor "
            f"{self.resolved_nf_factor:g}, grid {self.grid.value})"
        )

    def context_warning(self, patch_size: int) -> str | None:
        """Return a warning when training patches are too small for the network's depth.

        Below :data:`MIN_DEEPEST_FEATURES` (2x2 on ssTEM: 128-px patches, ``"lr"`` grid,
        ``encoder_depth`` 3) the deepest features are all patch border; on whole images
        they leave the range BatchNorm saw and the output collapses (-2.9 dB against
        bicubic, docs/benchmarks.md).

        Parameters
        ----------
        patch_size : int
            HR training patch side.

        Returns
        -------
        str or None
            The message naming the options to change, or None when the patch is enough.
        """
        side = self.deepest_features(patch_size)
        if side >= MIN_DEEPEST_FEATURES:
            return None
        return (
            f"data.patch_size {patch_size} leaves the generator's deepest features "
            f"{side}x{side} pixels ({self._depth_setting()}); below "
            f"{MIN_DEEPEST_FEATURES}x{MIN_DEEPEST_FEATURES} the network learns from patch "
            "borders and can fail on whole images: raise data.patch_size or lower the depth"
        )

    def _depth_setting(self) -> str:
        if self.arch == Arch.NAF:
            return f"generator.naf.blocks {self.naf.blocks}: {self.levels} levels"
        return f"generator.encoder_depth {self.encoder_depth}, grid {self.grid.value}"

    @property
    def resolved_nf_factor(self) -> float:
        """Decoder width multiplier, the preset's default when ``nf_factor`` is None."""
        return self.nf_factor if self.nf_factor is not None else PRESET_DEFAULTS[self.preset][0]

    @property
    def resolved_blocks_per_stage(self) -> int:
        """Convolutions per decoder block, the preset's default when unset."""
        if self.blocks_per_stage is not None:
            return self.blocks_per_stage
        return PRESET_DEFAULTS[self.preset][1]


class CriticConfig(StrictModel):
    """The NoGAN critic (fastai ``gan_critic`` layout, spectral norm everywhere).

    Parameters
    ----------
    nf : int
        Filters of the first convolution; doubled by every strided block.
    n_blocks : int
        Strided 4x4 blocks after the first one; the input must be at least
        ``2 ** (n_blocks + 3)`` pixels on each side.
    dropout : float
        Dropout2d probability in the blocks (half of it after the first convolution).
        0 by default: with fastai's 0.15 the spectrally normalised critic learnt several
        times slower (docs/training.md).
    self_attention : bool
        Self-attention in the first strided block.
    pool : PoolType
        ``"global"``: one logit per image (mean of the patch map); ``"patch"``: the
        patch map of logits itself (PatchGAN).
    attention_pool : int
        Max-pool the self-attention's keys and values by this factor (BigGAN): the
        attention costs ``attention_pool**2`` times less; 1 attends to every position.
    crop : int or None
        The critic judges a random ``crop x crop`` window of each (real or generated) HR
        patch, the same window for the whole batch, rather than the whole patch: the
        generator keeps training on large patches (context) while the critic's cost
        stays that of small ones. None: the whole patch.
    """

    nf: int = Field(32, ge=8, le=512)
    n_blocks: int = Field(3, ge=1, le=5)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    self_attention: bool = True
    pool: PoolType = PoolType.GLOBAL
    attention_pool: int = Field(2, ge=1, le=8)
    crop: int | None = Field(128, ge=16, le=4096)

    @property
    def min_size(self) -> int:
        """Smallest input side the critic accepts."""
        return 2 ** (self.n_blocks + 3)

    @model_validator(mode="after")
    def _check_crop(self) -> CriticConfig:
        if self.crop is not None and self.crop < self.min_size:
            raise ValueError(
                f"crop {self.crop} is smaller than the critic's input minimum {self.min_size} "
                "(2**(n_blocks + 3))"
            )
        return self


class LossConfig(StrictModel):
    """Generator loss: a weighted sum of pixel, structural and perceptual terms.

    Parameters
    ----------
    weights : dict of str to float
        Weight of each term among ``l1``, ``mse``, ``ssim`` (``1 - SSIM``), ``ms_ssim``
        (``1 - MS-SSIM``) and ``feature`` (perceptual loss on VGG16-bn features, which
        needs a local ImageNet weights file). Terms with weight 0 are not computed.
    data_range : float
        Dynamic range for SSIM / MS-SSIM in normalised units (1 = background to bright).
    ssim_window : int
        Side of the Gaussian SSIM window (odd).
    ssim_sigma : float
        Standard deviation of the Gaussian SSIM window.
    feature_layers : list of int
        Indices in ``vgg16_bn.features`` whose outputs are compared; the default is
        fastai's super-resolution choice (the ReLUs before the 3rd, 4th and 5th
        max-pool, ``blocks[2:5]``).
    feature_layer_weights : list of float
        Weight of each feature layer (fastai: 5, 15, 2).
    feature_pixel_weight : float
        Weight of the L1 pixel term inside the feature loss (fastai: 1).
    feature_gram_weight : float
        Multiplier of the Gram-matrix (style) terms, each weighted
        ``feature_gram_weight * w**2`` (fastai: 5e3); 0 disables them.
    """

    weights: dict[str, float] = Field(default_factory=lambda: {"l1": 1.0, "ssim": 0.5})
    data_range: float = Field(1.0, gt=0.0, le=1e6)
    ssim_window: int = Field(11, ge=3, le=31)
    ssim_sigma: float = Field(1.5, gt=0.0, le=10.0)
    feature_layers: list[int] = Field(default_factory=lambda: [22, 32, 42])
    feature_layer_weights: list[float] = Field(default_factory=lambda: [5.0, 15.0, 2.0])
    feature_pixel_weight: float = Field(1.0, ge=0.0)
    feature_gram_weight: float = Field(5e3, ge=0.0)

    @field_validator("weights")
    @classmethod
    def _check_weights(cls, value: dict[str, float]) -> dict[str, float]:
        valid = [t.value for t in LossTerm]
        for name, weight in value.items():
            if name not in valid:
                raise ValueError(f"unknown loss term {name!r}; expected one of {valid}")
            if not (math.isfinite(weight) and weight >= 0):
                raise ValueError(f"weight of {name!r} must be >= 0 (got {weight})")
        if not any(w > 0 for w in value.values()):
            raise ValueError(f"at least one loss weight must be > 0 (got {value})")
        return value

    @field_validator("ssim_window")
    @classmethod
    def _check_window(cls, value: int) -> int:
        if value % 2 != 1:
            raise ValueError("must be odd")
        return value

    @field_validator("feature_layers")
    @classmethod
    def _check_layers(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("needs at least one layer")
        last = VGG16_BN_BLOCK_ENDS[-1]
        for index in value:
            if not 0 <= index <= last:
                raise ValueError(f"layer indices must be in [0, {last}] (got {index})")
        return value

    @model_validator(mode="after")
    def _check_lengths(self) -> LossConfig:
        if len(self.feature_layers) != len(self.feature_layer_weights):
            raise ValueError(
                "feature_layer_weights needs one weight per feature layer "
                f"(got {len(self.feature_layer_weights)} for {len(self.feature_layers)} layers)"
            )
        return self

    def weight(self, term: LossTerm | str) -> float:
        """Weight of one term (0 when absent).

        Parameters
        ----------
        term : LossTerm or str
            The term.

        Returns
        -------
        float
            Its weight.
        """
        return float(self.weights.get(LossTerm(term).value, 0.0))


def _utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


class ModelInfo(StrictModel):
    """Metadata saved beside the weights of a trained model (``model.json``).

    Parameters
    ----------
    format_version : int
        Layout version of the model file (:data:`MODEL_FORMAT_VERSION`).
    decrappify_version : str
        decrappify release that wrote the file.
    generator : GeneratorConfig
        The network, including ``scale`` and ``n_frames``.
    normalization : NormalizationConfig
        How input images must be normalised (and outputs mapped back).
    crappify : dict or None
        The crappifier configuration used to make the training inputs (plain dict), or
        None when the model was trained on real LR/HR pairs or it is unknown.
    training : dict
        Summary of the training data and schedule (free form, JSON-serialisable).
    metrics : dict of str to float
        Validation metrics of the final model.
    history : list of dict
        Per-epoch (or per-phase) log entries.
    created : datetime
        When the model was saved (UTC).
    description : str
        Free text from the user.
    weights_sha256 : str or None
        SHA-256 of the weights (:func:`decrappify.models.weights.tensors_digest`), set
        when the model is saved and checked when it is read, so that weights swapped in
        from another run are refused; None in models saved before format 3.
    """

    format_version: int = Field(MODEL_FORMAT_VERSION, ge=1)
    decrappify_version: str = __version__
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    normalization: NormalizationConfig = Field(default_factory=NormalizationConfig)
    crappify: dict[str, Any] | None = None
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    history: list[dict[str, Any]] = Field(default_factory=list)
    created: datetime = Field(default_factory=_utc_now)
    description: str = ""
    weights_sha256: str | None = None
