"""The end-of-training self-check as text: the model's lines against classical methods.

A training run ends by scoring its model on the validation crops next to bilinear and
bicubic interpolation and a Gaussian tuned on those crops (at scale 1: the noisy input
and the tuned classical denoisers), see :mod:`decrappify.train.selfcheck`. The result is
a plain dict (stored in the model's ``training.self_check``):

``model``
    ``{"psnr": ..., "ssim": ...}`` of the model;
``baselines``
    name (``"bilinear"``, ``"gaussian=1.5"`` ...) to ``{"psnr": ..., "ssim": ...}``;
``loses_to``
    the baselines whose PSNR is above the model's;
``advice``
    what to try when it loses.

This module turns it into the lines the CLI summary, ``decrappify info`` and the napari
Train widget show. Pure: no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["loses_to", "self_check_lines", "self_check_rows", "self_check_warning"]


def loses_to(model: Mapping[str, float], baselines: Mapping[str, Mapping[str, float]]) -> list[str]:
    """List the baselines with a higher PSNR than the model, best first.

    Parameters
    ----------
    model : mapping
        The model's ``psnr`` (and ``ssim``).
    baselines : mapping
        Baseline name to its ``psnr`` / ``ssim``.

    Returns
    -------
    list of str
        Their names (empty when the model beats them all, or has no PSNR).
    """
    ours = model.get("psnr")
    if ours is None:
        return []
    beaten = [(s["psnr"], name) for name, s in baselines.items() if s.get("psnr", -1e9) > ours]
    return [name for _, name in sorted(beaten, reverse=True)]


def self_check_rows(check: Mapping[str, Any]) -> list[tuple[str, float | None, float | None]]:
    """List the rows of the self-check table: each baseline, then the model.

    Parameters
    ----------
    check : mapping
        A self-check record.

    Returns
    -------
    list of (str, float or None, float or None)
        ``(name, psnr, ssim)``.
    """
    rows = [(n, s.get("psnr"), s.get("ssim")) for n, s in (check.get("baselines") or {}).items()]
    model = check.get("model") or {}
    return [*rows, ("model", model.get("psnr"), model.get("ssim"))]


def self_check_warning(check: Mapping[str, Any] | None) -> str | None:
    """Say plainly when the model loses to a classical method (None when it does not).

    Parameters
    ----------
    check : mapping or None
        A self-check record (None: no self-check was made).

    Returns
    -------
    str or None
        ``"the model loses to bilinear (17.75 dB, model 17.60 dB) on the validation
        crops: a classical method does better; try ..."``.
    """
    if not check or not check.get("loses_to"):
        return None
    baselines = check.get("baselines") or {}
    ours = (check.get("model") or {}).get("psnr")
    lost = ", ".join(f"{n} ({baselines[n]['psnr']:.2f} dB)" for n in check["loses_to"])
    text = (
        f"the model loses to {lost} on the validation crops (model {ours:.2f} dB): "
        "a classical method does better; do not use this model as it is"
    )
    advice = check.get("advice") or []
    if advice:
        text += ". Try: " + "; ".join(advice)
    return text


def self_check_lines(check: Mapping[str, Any] | None) -> list[str]:
    """Describe the self-check in two lines: the PSNR/SSIM of each, then the verdict.

    Parameters
    ----------
    check : mapping or None
        A self-check record.

    Returns
    -------
    list of str
        ``"bilinear 17.75 dB / 0.4811"`` ... and ``"model beats them all"`` or the warning
        (empty without a record).
    """
    if not check:
        return []
    parts = [
        f"{name} {_num(p, 2)} dB / {_num(s, 4)}"
        for name, p, s in self_check_rows(check)
        if name != "model"
    ]
    model = check.get("model") or {}
    lines = [
        f"model {_num(model.get('psnr'), 2)} dB / {_num(model.get('ssim'), 4)} against "
        + ", ".join(parts)
    ]
    warning = self_check_warning(check)
    lines.append(f"WARNING: {warning}" if warning else "the model beats every classical method")
    return lines


def _num(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
