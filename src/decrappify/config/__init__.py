"""Validated configuration models (pydantic): crappify, model, training, prediction.

Submodules own their part: :mod:`.crappify`, :mod:`.model`, :mod:`.train`,
:mod:`.predict`. Every model forbids unknown fields and gives one-line errors.
"""

from decrappify.config.base import StrictModel, format_validation_error

__all__ = ["StrictModel", "format_validation_error"]
