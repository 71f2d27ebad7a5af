"""The trust numbers in words, for people who read the layers, not the statistics.

The Super-resolve widget summarises the trust maps it made (the consistency score, the
TTA spread) and the Compare widget says how well each map points at the real error (a
Spearman rank correlation); both say it in a sentence, with the number in brackets.
"""

from __future__ import annotations

import math
from typing import Any

#: Plain names of the trust maps.
MAP_NAMES = {"uncertainty": "uncertainty map", "consistency": "consistency map"}
#: Rank correlations with the error and what they mean, from the highest.
AGREEMENT_WORDS = (
    (0.5, "shows well where the prediction is wrong"),
    (0.3, "shows fairly well where the prediction is wrong"),
    (0.1, "hints weakly at where the prediction is wrong"),
    (-0.1, "says nothing about where the prediction is wrong"),
)
#: Consistency scores (RMS in noise standard deviations) and what they mean.
CONSISTENCY_WORDS = (
    (0.8, "the result kept some of the input's noise"),
    (1.3, "the input explains the result, as noise alone would"),
    (2.0, "the input does not explain parts of the result"),
    (math.inf, "the input does not explain much of the result: check the pink and green areas"),
)


def agreement_text(key: str, rho: float, where: str = "the image") -> str:
    """Say how well a trust map points at the prediction's error.

    Parameters
    ----------
    key : {"uncertainty", "consistency"}
        The map.
    rho : float
        Spearman rank correlation of the map with the absolute error (NaN: undefined).
    where : str
        What was compared (``"plane 4"``).

    Returns
    -------
    str
        ``"The uncertainty map shows well where the prediction is wrong on the image
        (rank correlation 0.62; 1 would be perfect, 0 no relation)."``
    """
    name = MAP_NAMES.get(key, f"{key} map")
    if not math.isfinite(rho):
        return f"The {name} cannot be compared with the error on {where} (it is constant)."
    words = "points away from where the prediction is wrong"
    for threshold, meaning in AGREEMENT_WORDS:
        if rho >= threshold:
            words = meaning
            break
    return (
        f"The {name} {words} on {where} (rank correlation {rho:.2f}; 1 would be perfect, "
        "0 no relation)."
    )


def trust_summary_text(trust: dict[str, Any]) -> str:
    """Say what the trust maps of a prediction found, one sentence per map.

    Parameters
    ----------
    trust : dict
        Map name to its summary (``predict --report``'s ``trust``): ``consistency``
        ``score`` and ``flagged_fraction``, ``uncertainty`` ``mean``, or ``skipped``.

    Returns
    -------
    str
        The sentences, or ``""`` without maps.
    """
    lines = []
    consistency = trust.get("consistency")
    if consistency and "skipped" in consistency:
        lines.append(f"No consistency map: {consistency['skipped']}.")
    elif consistency:
        score, flagged = consistency["score"], 100 * consistency["flagged_fraction"]
        meaning = next(words for limit, words in CONSISTENCY_WORDS if score < limit)
        lines.append(
            f"Consistency: {meaning} (score {score:.2f}, about 1 for noise alone; "
            f"{flagged:.2g} % of the pixels off by more than 4 noise levels)."
        )
    uncertainty = trust.get("uncertainty")
    if uncertainty and "skipped" in uncertainty:
        lines.append(f"No uncertainty map: {uncertainty['skipped']}.")
    elif uncertainty:
        spread = 100 * uncertainty["mean"]
        lines.append(
            f"Uncertainty: the 8 rotations of the input disagree by {spread:.2g} % of the "
            "intensity range on average; the uncertainty layer shows where they disagree most."
        )
    return "\n".join(lines)
