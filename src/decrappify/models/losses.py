"""Generator losses: L1, MSE, SSIM, MS-SSIM, perceptual (VGG16-bn features) and their mix.

Every loss takes ``(pred, target)`` tensors ``(N, C, H, W)`` in normalised intensity units
and is differentiable.

SSIM follows Wang et al. 2004 with a Gaussian window (11 taps, sigma 1.5), ``K1 = 0.01``,
``K2 = 0.03``, population (co)variances and the mean over the "valid" region where the
window fits, which equals ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=...)``.

MS-SSIM follows Wang et al. 2003 with 5 scales (2x2 average pooling between scales) and
weights ``(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)``. A patch too small for 5 scales (its
shorter side must be at least ``window * 2**(scales-1)``, 176 pixels for 5) uses as many
scales as fit, with the first weights renormalised to sum to 1; negative contrast/structure
values are clamped to a small positive number before the fractional powers.

The perceptual loss is fastai's super-resolution ``FeatureLoss``: an L1 pixel term, plus
for each chosen VGG16-bn layer ``w * L1(features)`` and ``gram_weight * w**2 *
L1(gram matrices)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from decrappify.config.model import LossConfig, LossTerm
from decrappify.errors import InputError
from decrappify.models.vgg import VGG16BNFeatures

#: MS-SSIM scale weights (Wang et al. 2003).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: SSIM stabilising constants.
K1, K2 = 0.01, 0.03
#: Floor of contrast/structure terms before the MS-SSIM powers (keeps gradients finite).
MS_SSIM_FLOOR = 1e-4


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """1D Gaussian window normalised to sum 1.

    Parameters
    ----------
    size : int
        Number of taps (odd).
    sigma : float
        Standard deviation in pixels.

    Returns
    -------
    torch.Tensor
        ``(size,)`` float32.
    """
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).float()


def _check_pair(pred: torch.Tensor, target: torch.Tensor, name: str, min_side: int = 1) -> None:
    if pred.shape != target.shape or pred.ndim != 4:
        raise InputError(
            f"{name}: expected prediction and target of the same shape (N, C, H, W), "
            f"got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if min(pred.shape[-2:]) < min_side:
        raise InputError(
            f"{name}: images must be at least {min_side}x{min_side} pixels, "
            f"got {pred.shape[-2]}x{pred.shape[-1]}"
        )


def _blur(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filtering of every channel."""
    c = x.shape[1]
    k = window.to(dtype=x.dtype, device=x.device)
    x = F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def _ssim_and_cs(
    pred: torch.Tensor, target: torch.Tensor, window: torch.Tensor, data_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel mean SSIM and contrast-structure ``(N, C)``."""
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    mu_x = _blur(pred, window)
    mu_y = _blur(target, window)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x = _blur(pred * pred, window) - mu_xx
    var_y = _blur(target * target, window) - mu_yy
    cov = _blur(pred * target, window) - mu_xy
    cs_map = (2 * cov + c2) / (var_x + var_y + c2)
    ssim_map = (2 * mu_xy + c1) / (mu_xx + mu_yy + c1) * cs_map
    return ssim_map.mean(dim=(-2, -1)), cs_map.mean(dim=(-2, -1))


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    data_range: float = 1.0,
    window: int = 11,
    sigma: float = 1.5,
    reduction: Literal["mean", "none"] = "mean",
) -> torch.Tensor:
    """Structural similarity with a Gaussian window (differentiable).

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(N, C, H, W)``, sides at least ``window``.
    data_range : float
        Dynamic range of the values (1 for normalised units).
    window : int
        Window size (odd).
    sigma : float
        Gaussian standard deviation.
    reduction : {"mean", "none"}
        Mean over everything, or one value per image (mean over channels) ``(N,)``.

    Returns
    -------
    torch.Tensor
        SSIM (1 for identical images).
    """
    _check_pair(pred, target, "ssim", window)
    value, _ = _ssim_and_cs(pred, target, gaussian_window(window, sigma), data_range)
    value = value.mean(dim=1)
    return value.mean() if reduction == "mean" else value


def ms_ssim_scales(height: int, width: int, window: int = 11, max_scales: int = 5) -> int:
    """Count the MS-SSIM scales that fit an image.

    Parameters
    ----------
    height, width : int
        Image size.
    window : int
        SSIM window size; every scale must be at least this large.
    max_scales : int
        Upper bound (5 in the standard definition).

    Returns
    -------
    int
        Scales ``n`` such that ``min(height, width) // 2**(n-1) >= window`` (0 if none).
    """
    side = min(height, width)
    n = 0
    while n < max_scales and side // 2**n >= window:
        n += 1
    return n


def ms_ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    data_range: float = 1.0,
    window: int = 11,
    sigma: float = 1.5,
    weights: Sequence[float] = MS_SSIM_WEIGHTS,
    reduction: Literal["mean", "none"] = "mean",
) -> torch.Tensor:
    """Multi-scale SSIM (differentiable), with fewer scales for small patches.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(N, C, H, W)``, sides at least ``window``.
    data_range : float
        Dynamic range of the values.
    window : int
        Window size (odd).
    sigma : float
        Gaussian standard deviation.
    weights : sequence of float
        Weight of each scale; when fewer scales fit (see :func:`ms_ssim_scales`), the
        first ones are used, renormalised to sum 1.
    reduction : {"mean", "none"}
        Mean over the batch or one value per image ``(N,)``.

    Returns
    -------
    torch.Tensor
        MS-SSIM (1 for identical images).
    """
    _check_pair(pred, target, "ms_ssim", window)
    n = ms_ssim_scales(pred.shape[-2], pred.shape[-1], window, len(weights))
    w = torch.tensor(weights[:n], dtype=pred.dtype, device=pred.device)
    w = w / w.sum()
    win = gaussian_window(window, sigma)
    values = []
    for i in range(n):
        s, cs = _ssim_and_cs(pred, target, win, data_range)
        values.append(s if i == n - 1 else cs)
        if i < n - 1:
            pred, target = F.avg_pool2d(pred, 2), F.avg_pool2d(target, 2)
    stacked = torch.stack(values, dim=0).clamp(min=MS_SSIM_FLOOR)  # (scales, N, C)
    value = torch.prod(stacked ** w.view(-1, 1, 1), dim=0).mean(dim=1)
    return value.mean() if reduction == "mean" else value


def gram_matrix(x: torch.Tensor) -> torch.Tensor:
    """Gram matrix of feature maps, normalised by ``C * H * W`` (fastai).

    Parameters
    ----------
    x : torch.Tensor
        ``(N, C, H, W)``.

    Returns
    -------
    torch.Tensor
        ``(N, C, C)``.
    """
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


class FeatureLoss(nn.Module):
    """Perceptual loss on frozen VGG16-bn features (fastai super-resolution ``FeatureLoss``).

    Parameters
    ----------
    extractor : VGG16BNFeatures
        Frozen feature extractor (from a local ImageNet weights file).
    layer_weights : sequence of float
        Weight of each of the extractor's layers.
    pixel_weight : float
        Weight of the L1 pixel term.
    gram_weight : float
        Multiplier of the Gram terms (each ``gram_weight * w**2``).
    """

    def __init__(
        self,
        extractor: VGG16BNFeatures,
        layer_weights: Sequence[float],
        *,
        pixel_weight: float = 1.0,
        gram_weight: float = 5e3,
    ) -> None:
        super().__init__()
        if len(layer_weights) != len(extractor.layer_ids):
            raise InputError(
                f"feature_layer_weights: expected {len(extractor.layer_ids)} weights, "
                f"got {len(layer_weights)}"
            )
        self.extractor = extractor
        self.layer_weights = tuple(float(w) for w in layer_weights)
        self.pixel_weight = float(pixel_weight)
        self.gram_weight = float(gram_weight)

    def components(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted terms of the loss.

        Parameters
        ----------
        pred, target : torch.Tensor
            ``(N, 1, H, W)`` normalised images.

        Returns
        -------
        dict of str to torch.Tensor
            ``"pixel"``, ``"feat_<layer>"`` and ``"gram_<layer>"`` (already weighted).
        """
        _check_pair(pred, target, "feature loss")
        with torch.no_grad():
            target_feats = self.extractor(target)
        pred_feats = self.extractor(pred)
        terms = {"pixel": self.pixel_weight * F.l1_loss(pred, target)}
        for layer, w, fp, ft in zip(
            self.extractor.layer_ids, self.layer_weights, pred_feats, target_feats, strict=True
        ):
            terms[f"feat_{layer}"] = w * F.l1_loss(fp, ft)
            if self.gram_weight > 0:
                gram = F.l1_loss(gram_matrix(fp), gram_matrix(ft))
                terms[f"gram_{layer}"] = self.gram_weight * w**2 * gram
        return terms

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Sum of :meth:`components`.

        Parameters
        ----------
        pred, target : torch.Tensor
            ``(N, 1, H, W)`` normalised images.

        Returns
        -------
        torch.Tensor
            Scalar loss.
        """
        return torch.stack(list(self.components(pred, target).values())).sum()


class CombinedLoss(nn.Module):
    """Weighted sum of the terms of a :class:`~decrappify.config.model.LossConfig`.

    Parameters
    ----------
    config : LossConfig
        Term weights and SSIM / feature settings.
    feature_loss : FeatureLoss or None
        Needed when the ``feature`` weight is positive.
    """

    def __init__(self, config: LossConfig, feature_loss: FeatureLoss | None = None) -> None:
        super().__init__()
        self.config = config
        self.feature_loss = feature_loss
        if config.weight(LossTerm.FEATURE) > 0 and feature_loss is None:
            raise InputError(FEATURE_LOSS_HELP)
        self.weights = {
            LossTerm(name): float(w) for name, w in config.weights.items() if float(w) > 0
        }

    def _term(self, term: LossTerm) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        cfg = self.config
        ssim_kw = {"data_range": cfg.data_range, "window": cfg.ssim_window, "sigma": cfg.ssim_sigma}
        if term is LossTerm.L1:
            return F.l1_loss
        if term is LossTerm.MSE:
            return F.mse_loss
        if term is LossTerm.SSIM:
            return lambda p, t: 1 - ssim(p, t, **ssim_kw)
        if term is LossTerm.MS_SSIM:
            return lambda p, t: 1 - ms_ssim(p, t, **ssim_kw)
        if self.feature_loss is None:
            raise InputError(FEATURE_LOSS_HELP)
        return self.feature_loss

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Compute the loss.

        Parameters
        ----------
        pred, target : torch.Tensor
            ``(N, 1, H, W)`` normalised images.

        Returns
        -------
        total : torch.Tensor
            Scalar ``sum(weight * term)`` to back-propagate.
        terms : dict of str to float
            Each term's unweighted value (``ssim`` and ``ms_ssim`` are ``1 - index``) and
            ``"total"``, for logging.
        """
        _check_pair(pred, target, "loss")
        total = pred.new_zeros(())
        logged: dict[str, float] = {}
        for term, weight in self.weights.items():
            value = self._term(term)(pred, target)
            total = total + weight * value
            logged[term.value] = float(value.detach())
        logged["total"] = float(total.detach())
        return total, logged


FEATURE_LOSS_HELP = (
    "loss.weights.feature: the perceptual (feature) loss needs ImageNet VGG16-bn weights from a "
    "local file; pass vgg_weights=PATH to a torchvision vgg16_bn state dict (.pth or "
    ".safetensors, e.g. vgg16_bn-6c64b313.pth) or set the feature weight to 0"
)
