"""Test-time augmentation over the 8 dihedral transforms: a mean and an uncertainty map.

A restoration network should not care whether its input is rotated by a multiple of 90°
or mirrored: the microscope has no preferred orientation. Predicting each of the eight
transforms of the input, mapping each output back and averaging gives a (slightly) better
prediction; the per-pixel standard deviation of the eight is an uncertainty map. It is
zero for an exactly dihedral-equivariant model and large where the network's answer
depends on how it looked at the data -- where it guesses.

The functions work on numpy arrays whose last two axes are Y and X (one tile, or a batch
of tiles ``(n, frames, h, w)``), so the tiled predictor can apply them tile by tile with
the same halo as the prediction (the receptive field is the same in every orientation):
memory stays that of a few tiles. Pure numpy: the network is any callable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from decrappify.errors import InputError

__all__ = [
    "DIHEDRAL",
    "TTAResult",
    "dihedral",
    "dihedral_stack",
    "inverse_dihedral",
    "merge_dihedral",
    "tta_predict",
]

#: The dihedral group of the square: 4 rotations, each with or without a mirror.
DIHEDRAL: tuple[int, ...] = tuple(range(8))


def _check(k: int) -> int:
    if k not in DIHEDRAL:
        raise InputError(f"dihedral transform: expected 0-7, got {k!r}")
    return int(k)


def dihedral(x: np.ndarray, k: int) -> np.ndarray:
    """Apply transform ``k`` to the last two axes: ``k % 4`` quarter turns, mirrored if ``k >= 4``.

    Parameters
    ----------
    x : numpy.ndarray
        Array of at least 2 dimensions (Y, X last).
    k : int
        0-7; 0 is the identity.

    Returns
    -------
    numpy.ndarray
        A view of ``x`` (Y and X swap for odd ``k``).
    """
    k = _check(k)
    out = np.rot90(x, k % 4, axes=(-2, -1))
    return out[..., ::-1] if k >= 4 else out


def inverse_dihedral(x: np.ndarray, k: int) -> np.ndarray:
    """Undo :func:`dihedral` (``inverse_dihedral(dihedral(x, k), k) == x``).

    Parameters
    ----------
    x : numpy.ndarray
        A transformed array (or a prediction made from one).
    k : int
        The transform that was applied.

    Returns
    -------
    numpy.ndarray
        A view in the original orientation.
    """
    k = _check(k)
    if k >= 4:
        x = x[..., ::-1]
    return np.rot90(x, -(k % 4), axes=(-2, -1))


@dataclass(frozen=True)
class TTAResult:
    """The merged predictions of the dihedral transforms.

    Attributes
    ----------
    mean : numpy.ndarray
        Mean of the back-transformed predictions (float32).
    std : numpy.ndarray
        Their per-pixel standard deviation (population, float32): the uncertainty map.
    n : int
        Transforms merged.
    """

    mean: np.ndarray
    std: np.ndarray
    n: int


def tta_predict(
    predict: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    *,
    transforms: Iterable[int] = DIHEDRAL,
) -> TTAResult:
    """Predict every transform of ``x``, map each back and merge them (one at a time).

    Parameters
    ----------
    predict : callable
        The model on numpy arrays: ``(..., h, w) -> (..., h * s, w * s)``, for inputs in
        either orientation (non-square inputs reach it transposed for odd transforms).
    x : numpy.ndarray
        The input, Y and X last.
    transforms : iterable of int
        Which transforms (default all eight).

    Returns
    -------
    TTAResult
        Mean and standard deviation, accumulated in float64 with Welford's update, so
        memory is three output-sized arrays whatever the number of transforms.
    """
    mean = m2 = None
    n = 0
    for k in transforms:
        out = np.asarray(inverse_dihedral(np.asarray(predict(dihedral(x, k))), k), np.float64)
        n += 1
        if mean is None:
            mean, m2 = out.copy(), np.zeros_like(out)
            continue
        if out.shape != mean.shape:
            raise InputError(
                f"test-time augmentation: transform {k} gave shape {out.shape} back, the "
                f"identity {mean.shape}; the model must map each orientation alike"
            )
        delta = out - mean
        mean += delta / n
        m2 += delta * (out - mean)
    if mean is None or m2 is None:
        raise InputError("test-time augmentation: no transform given")
    return TTAResult(mean=mean.astype(np.float32), std=np.sqrt(m2 / n).astype(np.float32), n=n)


def dihedral_stack(x: np.ndarray) -> np.ndarray:
    """Stack the eight transforms of square tiles on a new first axis (one batch).

    Parameters
    ----------
    x : numpy.ndarray
        Tiles with Y and X last and equal (``(..., h, h)``).

    Returns
    -------
    numpy.ndarray
        ``(8, ...)`` contiguous copy; run the network on it as one batch.

    Raises
    ------
    InputError
        For non-square tiles (odd transforms would change their shape).
    """
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise InputError(
            f"test-time augmentation in one batch needs square tiles, got shape {x.shape}"
        )
    return np.stack([dihedral(x, k) for k in DIHEDRAL])


def merge_dihedral(outputs: np.ndarray) -> TTAResult:
    """Merge the network's outputs on :func:`dihedral_stack` back into one orientation.

    Parameters
    ----------
    outputs : numpy.ndarray
        ``(8, ..., H, H)``: output ``k`` made from transform ``k``.

    Returns
    -------
    TTAResult
        Mean and standard deviation.
    """
    if outputs.shape[0] != len(DIHEDRAL):
        raise InputError(f"merge_dihedral: expected 8 outputs, got {outputs.shape[0]}")
    back = np.stack([inverse_dihedral(o, k) for k, o in enumerate(outputs)]).astype(np.float64)
    return TTAResult(
        mean=back.mean(axis=0).astype(np.float32),
        std=back.std(axis=0).astype(np.float32),
        n=len(DIHEDRAL),
    )
