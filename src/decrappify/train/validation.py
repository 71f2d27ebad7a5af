"""Validation on the fixed crops: normalised PSNR/SSIM, the bicubic baseline and previews.

The validation crops (:class:`~decrappify.data.dataset.ValidationSet`) are the same
every checkpoint and every run with the same seed. Scores follow CSBDeep and
:mod:`decrappify.metrics`: each ground-truth crop is percentile-normalised (0.1 / 99.9),
the prediction is mapped onto it by the least-squares affine fit, and PSNR (data range
1) and SSIM are computed; the reported numbers are means over the crops. The bicubic
upsampling of the LR input's centre frame is scored the same way, once.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from decrappify.data.dataset import ValidationSet
from decrappify.metrics import normalize_minmse, psnr, ssim, upsample
from decrappify.metrics.baselines import baseline_label
from decrappify.metrics.core import frc_resolution_px, gt_range
from decrappify.metrics.spectrum import hf_band_start, high_frequency_power_ratio


def normalized_scores(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """Normalised PSNR and SSIM of one prediction (CSBDeep convention).

    Parameters
    ----------
    pred : numpy.ndarray
        2D prediction.
    gt : numpy.ndarray
        2D ground truth (not constant).

    Returns
    -------
    (float, float)
        ``psnr_norm`` and ``ssim_norm`` as :func:`decrappify.metrics.evaluate_pair`
        computes them.
    """
    pred_n, gt_n = _normalized(pred, gt)
    return psnr(pred_n, gt_n, data_range=1.0), ssim(pred_n, gt_n, data_range=1.0)


def normalized_psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    """Return the PSNR of :func:`normalized_scores` alone (no SSIM: a fraction of the cost)."""
    return psnr(*_normalized(pred, gt), data_range=1.0)


def _normalized(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale the ground truth to [0, 1] by its percentiles and fit the prediction to it."""
    gt64 = np.asarray(gt, dtype=np.float64)
    lo, hi = gt_range(gt64)
    gt_n = (gt64 - lo) / (hi - lo)
    return normalize_minmse(np.asarray(pred, dtype=np.float64), gt_n), gt_n


def mean_scores(preds: np.ndarray, gts: np.ndarray, *, scale: int = 4) -> dict[str, float]:
    """Mean normalised PSNR / SSIM, FRC resolution and high-frequency power over crops.

    Parameters
    ----------
    preds, gts : numpy.ndarray
        ``(n, H, W)`` predictions and ground truths.
    scale : int
        Super-resolution factor: the band of ``hf`` starts at the input's Nyquist
        frequency (:func:`~decrappify.metrics.spectrum.hf_band_start`).

    Returns
    -------
    dict of str to float
        ``{"psnr": ..., "ssim": ..., "frc": ..., "hf": ...}`` (infinite PSNRs of perfect
        crops are capped at 100 dB so that one perfect crop does not make the mean
        infinite; ``frc`` is the mean FRC resolution in pixels, smaller is sharper, NaN
        for crops too small to tell; ``hf`` the mean ratio of the prediction's power to
        the ground truth's above that frequency, 1 as much fine detail as the truth,
        below 1 smoother).
    """
    scores = np.array([normalized_scores(p, g) for p, g in zip(preds, gts, strict=True)])
    psnrs = np.minimum(scores[:, 0], 100.0)
    frcs = [
        frc_resolution_px(np.asarray(p, np.float64), np.asarray(g, np.float64))
        for p, g in zip(preds, gts, strict=True)
    ]
    frc = float(np.nanmean(frcs)) if np.isfinite(frcs).any() else math.nan
    band = (hf_band_start(scale), 0.5)
    ratios = [high_frequency_power_ratio(p, g, band=band) for p, g in zip(preds, gts, strict=True)]
    hf = float(np.nanmean(ratios)) if np.isfinite(ratios).any() else math.nan
    return {
        "psnr": float(np.mean(psnrs)),
        "ssim": float(np.mean(scores[:, 1])),
        "frc": frc,
        "hf": hf,
    }


class Validator:
    """Scores a generator on the fixed validation crops.

    Parameters
    ----------
    validation : ValidationSet
        The fixed crops.
    scale : int
        Super-resolution factor.
    device : torch.device
        Where the network runs.
    batch_size : int
        Crops per forward pass.
    autocast : callable
        Returns the mixed-precision context of the run.
    channels_last : bool
        Feed channels-last inputs.

    Attributes
    ----------
    n_crops : int
        Crops scored (crops whose ground truth is constant are left out: normalised
        scores are undefined for them).
    baseline : dict of str to float
        Bicubic ``psnr`` / ``ssim``.
    """

    def __init__(
        self,
        validation: ValidationSet,
        *,
        scale: int,
        device: torch.device,
        batch_size: int,
        autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
        channels_last: bool = False,
    ) -> None:
        crops = [validation.crop(i) for i in range(len(validation))]
        keep = [c for c in crops if float(c.hr.max()) > float(c.hr.min())]
        self.n_skipped = len(crops) - len(keep)
        self.n_crops = len(keep)
        self.scale = int(scale)
        self.device = device
        self.batch_size = int(batch_size)
        self.autocast = autocast
        self.channels_last = channels_last
        self.lr = np.stack([c.lr for c in keep]) if keep else np.zeros((0, 1, 1, 1), np.float32)
        self.hr = np.stack([c.hr[0] for c in keep]) if keep else np.zeros((0, 1, 1), np.float32)
        self.baseline: dict[str, float] = {}
        #: What the baseline is: bicubic upsampling, or the input itself at scale 1.
        self.baseline_name = baseline_label(self.scale)
        if keep:
            centre = self.lr.shape[1] // 2
            bicubic = np.stack([upsample(x[centre], self.scale, "bicubic") for x in self.lr])
            self.baseline = mean_scores(bicubic, self.hr, scale=self.scale)

    @property
    def enabled(self) -> bool:
        """Whether there is anything to score."""
        return self.n_crops > 0

    def predict(self, net: torch.nn.Module, lr: np.ndarray) -> np.ndarray:
        """Run the network in eval mode on LR crops (its training flag is restored).

        Parameters
        ----------
        net : torch.nn.Module
            The generator.
        lr : numpy.ndarray
            ``(n, n_frames, h, w)`` inputs.

        Returns
        -------
        numpy.ndarray
            ``(n, h * scale, w * scale)`` float32 predictions.
        """
        was_training = net.training
        net.eval()
        out = []
        try:
            with torch.inference_mode():
                for start in range(0, len(lr), self.batch_size):
                    x = torch.from_numpy(np.ascontiguousarray(lr[start : start + self.batch_size]))
                    x = x.to(self.device)
                    if self.channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    with self.autocast():
                        y = net(x)
                    out.append(y.float()[:, 0].cpu().numpy())
        finally:
            net.train(was_training)
        return np.concatenate(out) if out else np.zeros((0, 1, 1), np.float32)

    def evaluate(self, net: torch.nn.Module) -> dict[str, float]:
        """Mean normalised PSNR / SSIM of the network on the crops.

        Parameters
        ----------
        net : torch.nn.Module
            The generator.

        Returns
        -------
        dict of str to float
            ``{"psnr": ..., "ssim": ...}``; empty without crops.
        """
        if not self.enabled:
            return {}
        return mean_scores(self.predict(net, self.lr), self.hr, scale=self.scale)

    def preview(self, net: torch.nn.Module) -> np.ndarray | None:
        """LR (nearest-neighbour upsampled) | prediction | HR of the first crop, side by side.

        Parameters
        ----------
        net : torch.nn.Module
            The generator.

        Returns
        -------
        numpy.ndarray or None
            float32 ``(H, 3 W)`` in normalised units, None without crops.
        """
        if not self.enabled:
            return None
        lr = self.lr[:1]
        pred = self.predict(net, lr)[0]
        centre = lr[0, lr.shape[1] // 2]
        nearest = np.repeat(np.repeat(centre, self.scale, axis=0), self.scale, axis=1)
        return np.concatenate([nearest, pred, self.hr[0]], axis=1).astype(np.float32)
