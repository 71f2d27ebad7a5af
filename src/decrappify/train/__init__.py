"""NoGAN training: the phases as generators of progress events, checkpoints and exact resume.

- :func:`iter_train` / :func:`train` (:mod:`.nogan`): the schedule (generator
  pretraining, saved outputs, critic pretraining, GAN with adaptive switching and early
  stopping, cycles); the phases are functions (:mod:`._phases`, :mod:`._gan`) that take
  the parts of a session they use (:mod:`.parts`):
- the parts, one job each: :mod:`.clock` (time over all sessions, the budget's phase
  shares; pure) with :mod:`.budget` (step counts under a budget), :mod:`.nets`
  (generator, critic, loss, device, :mod:`.precision`, :mod:`.rng`), :mod:`.streams`
  (keyed training batches, validation crops, :mod:`.validation`), :mod:`.report`
  (events, history notes, :mod:`.training_log`: ``log.csv`` and ``curves.png``),
  :mod:`.checkpoints` (the checkpoint store over :mod:`.state`'s files) and
  :mod:`.result` (the model file and :class:`TrainResult`);
- :mod:`.folder`: the run folder's files and the checks before a run starts or resumes;
- :mod:`.schedule` (pure): one-cycle learning rate, time-budget split, switching and
  stopping rules.

Settings are :class:`decrappify.config.train.TrainConfig`; ``docs/training.md``
explains the method and how to train.
"""

from decrappify.config.train import TrainConfig
from decrappify.train.nogan import iter_train, train
from decrappify.train.result import TrainResult
from decrappify.train.streams import KeyBatches

__all__ = ["KeyBatches", "TrainConfig", "TrainResult", "iter_train", "train"]
