"""How intensities are normalised before degradations and networks, stored with each model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from decrappify.config.base import StrictModel


class NormalizationConfig(StrictModel):
    """Percentile normalisation: ``(x - p_low) / (p_high - p_low)`` per image.

    Parameters
    ----------
    method : {"percentile"}
        Only percentile normalisation for now.
    low : float
        Low percentile, mapped to 0 (background).
    high : float
        High percentile, mapped to 1 (bright signal level).
    """

    method: Literal["percentile"] = "percentile"
    low: float = Field(0.1, ge=0.0, lt=100.0)
    high: float = Field(99.9, gt=0.0, le=100.0)

    @model_validator(mode="after")
    def _check_order(self) -> NormalizationConfig:
        if not self.low < self.high:
            raise ValueError(f"low percentile must be below high (got {self.low} >= {self.high})")
        return self
