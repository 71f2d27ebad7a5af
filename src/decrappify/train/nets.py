"""The networks of a training run and how they run: generator, critic, loss, device, precision.

:class:`Nets` holds what every phase trains or evaluates: the generator ``G``, the critic
``C``, the content loss, the best generator so far (a CPU copy of its weights), the
device with its precision (:mod:`.precision`) and the run's own torch random state
(:mod:`.rng`). Its :meth:`Nets.tensors` are what a checkpoint keeps of them. On several
processes (:mod:`.distributed`) the training steps go through ``train_G`` / ``train_C``,
the networks wrapped in DistributedDataParallel; ``G`` and ``C`` are the networks
themselves (validation, saved outputs, checkpoints).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch

from decrappify.config.train import TrainConfig
from decrappify.data.dataset import to_device
from decrappify.models import build_critic, build_generator, build_loss
from decrappify.train.distributed import Ranks, wrap
from decrappify.train.precision import Precision
from decrappify.train.rng import RunRandom, derive_seed
from decrappify.train.state import prefixed, unprefixed

__all__ = ["SEED_CRITIC", "SEED_GENERATOR", "SEED_TORCH", "Nets", "clone_state"]

#: Keys of the seeds derived from the config's seed.
SEED_GENERATOR, SEED_CRITIC, SEED_TORCH = 11, 12, 13


def clone_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copy to the CPU a module's weights and buffers."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


class Nets:
    """The generator, critic and content loss of a run on its device, and the best generator.

    Parameters
    ----------
    config : TrainConfig
        The run's (resolved) settings: networks, loss, seed, precision.
    device : torch.device
        Where the networks run.
    precision : Precision
        Their mixed precision.
    channels_last : bool
        Channels-last memory format (CUDA).
    ranks : Ranks
        The processes of the run (one by default).
    """

    def __init__(
        self,
        config: TrainConfig,
        device: torch.device,
        precision: Precision,
        *,
        channels_last: bool,
        ranks: Ranks | None = None,
    ) -> None:
        self.ranks = ranks if ranks is not None else Ranks()
        self.device = device
        self.precision = precision
        self.channels_last = channels_last
        seed = config.seed
        self.G = build_generator(
            config.generator,
            encoder_weights=config.encoder_weights,
            seed=derive_seed(seed, SEED_GENERATOR),
        ).to(device)
        self.C = build_critic(config.critic, seed=derive_seed(seed, SEED_CRITIC)).to(device)
        if self.channels_last:
            self.G.to(memory_format=torch.channels_last)
            self.C.to(memory_format=torch.channels_last)
        self.loss_fn = build_loss(config.loss, config.vgg_weights).to(device)
        self.random = RunRandom(derive_seed(seed, SEED_TORCH), device)
        #: The best generator so far (CPU weights), None until one is kept.
        self.best: dict[str, torch.Tensor] | None = None
        #: The networks as the training steps call them (DDP on several processes).
        self.train_G = wrap(self.G, self.ranks, device)
        self.train_C = wrap(self.C, self.ranks, device)

        self._frozen = False

    def freeze_encoder(self, frozen: bool) -> None:
        """Freeze or unfreeze the generator's encoder (DDP is told which weights train)."""
        self.G.freeze_encoder() if frozen else self.G.unfreeze_encoder()
        if self.ranks.distributed and frozen != self._frozen:
            # DDP reduces the gradients of the weights that trained when it was made
            self.train_G = wrap(self.G, self.ranks, self.device)
        self._frozen = frozen

    def to_device(self, batch: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Move a batch's tensors to the device (channels-last where the networks are)."""
        return to_device(batch, self.device, channels_last=self.channels_last)

    def keep_best(self) -> None:
        """Remember the generator as it is now as the best one."""
        self.best = clone_state(self.G)

    def best_generator(self) -> torch.nn.Module:
        """Return the best generator (the current one when none was kept), on the CPU if a copy."""
        if self.best is None:
            return self.G
        net = copy.deepcopy(self.G).cpu()
        net.load_state_dict(self.best)
        return net

    def tensors(self) -> dict[str, torch.Tensor]:
        """Return the tensors a checkpoint keeps (generator, critic, best, rng states)."""
        out = prefixed(self.G.state_dict(), "generator")
        out.update(prefixed(self.C.state_dict(), "critic"))
        if self.best is not None:
            out.update(prefixed(self.best, "best"))
        out.update(self.random.tensors())
        return out

    def restore(self, tensors: Mapping[str, torch.Tensor], scalers: dict) -> None:
        """Load the networks, best generator, random state and gradient scalers of a checkpoint."""
        self.G.load_state_dict(unprefixed(tensors, "generator"))
        self.C.load_state_dict(unprefixed(tensors, "critic"))
        self.best = unprefixed(tensors, "best") or None
        self.random.load(dict(tensors))
        self.precision.load_state(scalers)
