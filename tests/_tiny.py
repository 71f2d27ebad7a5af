"""The smallest real models and the fastest predict options, shared by the test modules.

Imported as ``from _tiny import ...`` (pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

from typing import Any

from decrappify.config.model import GeneratorConfig

#: The smallest decrappify generator (a real U-Net all the same).
TINY = {
    "encoder": "resnet18",
    "self_attention": False,
    "nf_factor": 0.25,
    "blocks_per_stage": 1,
    "blur": False,
}
#: ``decrappify predict`` options that keep a test fast: small tiles, one CPU thread.
FAST = ["--tile", "32", "--batch", "4", "--device", "cpu", "--threads", "1", "--quiet"]


def tiny_generator(scale: int = 2, **changes: Any) -> GeneratorConfig:
    """The :data:`TINY` generator's config at a scale, with other settings changed."""
    return GeneratorConfig(scale=scale, **{**TINY, **changes})
