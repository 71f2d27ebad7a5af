"""Architecture of a decrappify generator, for bioimage.io ``pytorch_state_dict`` weights.

This file travels inside every bioimage.io package that ``decrappify export --bioimageio``
writes. A bioimage.io consumer calls :func:`decrappify_generator` with the generator
settings recorded in the package (``weights.pytorch_state_dict.architecture.kwargs``) and
loads the state dict (``weights.pt``) into the network it returns. It needs decrappify
itself (see the package's ``environment.yaml``); the TorchScript weights of the same
package need only PyTorch.
"""

from __future__ import annotations

from typing import Any


def decrappify_generator(**generator: Any) -> Any:
    """Build the super-resolution network of a decrappify model, ready for its state dict.

    Parameters
    ----------
    **generator
        The fields of :class:`decrappify.config.model.GeneratorConfig` (``encoder``,
        ``preset``, ``scale``, ``n_frames`` ...).

    Returns
    -------
    decrappify.models.SuperResolutionNet
        ``(N, n_frames, h, w)`` normalised low-resolution frames in, ``(N, 1, h * scale,
        w * scale)`` out, as ``decrappify predict`` runs it.
    """
    from decrappify.config.model import GeneratorConfig
    from decrappify.models.factory import generator_skeleton

    return generator_skeleton(GeneratorConfig.model_validate(generator)).eval()
