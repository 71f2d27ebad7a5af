"""NoGAN training: the phases as generators of progress events, checkpoints and exact resume.

- :func:`iter_train` / :func:`train` (:mod:`.nogan`): the schedule (generator
  pretraining, saved outputs, critic pretraining, GAN with adaptive switching and early
  stopping, cycles), checkpoints and resume; the phases are functions (:mod:`._phases`,
  :mod:`._gan`) of a :class:`._session.Session` (the run's folder, models, data, state,
  clock and log);
- :mod:`.run`: the run folder, :class:`TrainResult`, :class:`KeyBatches` (data streams);
- :mod:`.schedule` (pure): one-cycle learning rate, time-budget split, switching and
  stopping rules;
- :mod:`.state`: the run state and checkpoint files (safetensors + JSON);
- :mod:`.validation`: normalised PSNR/SSIM on the fixed validation crops, baseline,
  previews;
- :mod:`.runlog`: ``log.csv`` and ``curves.png``;
- :mod:`.runtime`: mixed precision and the run's own RNG (the device and CPU threads:
  :mod:`decrappify.devices`).

Settings are :class:`decrappify.config.train.TrainConfig`; ``docs/training.md``
explains the method and how to train.
"""

from decrappify.config.train import TrainConfig
from decrappify.train.nogan import iter_train, train
from decrappify.train.run import KeyBatches, TrainResult

__all__ = ["KeyBatches", "TrainConfig", "TrainResult", "iter_train", "train"]
