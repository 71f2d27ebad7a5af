"""decrappify: microscopy super-resolution from crappified training pairs.

Importing the package is cheap: torch, napari and Qt are imported lazily by the
modules that need them.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
