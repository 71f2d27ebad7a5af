"""Measure the cost of one generator pretraining step of several recipes, side by side.

Usage::

    python benchmarks/step_cost.py --data fluo --threads 1 \\
        --recipe resnet="" --recipe naf="generator.arch=naf" \\
        --recipe naf_l1="generator.arch=naf;loss.weights={l1: 1.0}"

Each recipe is a set of ``--set``-style overrides of the default ``TrainConfig`` (``;``
between them). For every recipe the script builds the generator, the loss and AdamW as
generator pretraining does, crappifies real training batches (``em`` or ``fluo``, as
``train_benchmark.py``) and times whole steps (data + forward + backward + update). The
recipes are measured in turns (``--rounds`` rounds of ``--steps`` steps each, after a warm-up)
so that a change in the machine's load hits all of them alike; the median over rounds is
reported, in process CPU seconds and in wall seconds, with each recipe's cost relative to
the first. With ``--threads 1`` the CPU time of a step does not depend much on other jobs:
this is how the ablations of ``docs/benchmarks.md`` were given equal compute budgets on a
shared machine (a budget of B CPU seconds = B / cost steps).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_benchmark import DATA, split_files


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=sorted(DATA), default="em")
    parser.add_argument("--recipe", action="append", default=[], help='NAME="key=value;..."')
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5, help="steps per round and recipe")
    parser.add_argument("--rounds", type=int, default=4)
    return parser.parse_args(argv)


def recipe_config(data: str, text: str) -> Any:
    from decrappify.config.train import TrainConfig

    overrides: dict[str, Any] = {"crappify": DATA[data]["preset"], "data.validation.count": 2}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        key, _, value = item.partition("=")
        overrides[key.strip()] = yaml.safe_load(value)
    return TrainConfig().with_overrides(overrides)


class Recipe:
    """One recipe's generator, loss, optimiser and data, ready to step."""

    def __init__(self, name: str, config: Any, images: list[Any]) -> None:
        import torch

        from decrappify.data.dataset import build_datasets
        from decrappify.models import build_generator, build_loss

        self.name, self.config = name, config
        self.train, _ = build_datasets(images, config.data, config.resolved_crappify())
        self.G = build_generator(config.generator, seed=0).train()
        self.loss = build_loss(config.loss)
        self.opt = torch.optim.AdamW(self.G.parameters(), lr=1e-4)
        self.index = 0
        self.cpu: list[float] = []
        self.wall: list[float] = []

    def step(self) -> None:
        import torch

        batch = [self.train[(0, self.index + i)] for i in range(self.config.batch_size)]
        self.index += self.config.batch_size
        lr = torch.stack([b[0] for b in batch])
        hr = torch.stack([b[1] for b in batch])
        self.opt.zero_grad()
        loss, _ = self.loss(self.G(lr), hr)
        loss.backward()
        self.opt.step()

    def round(self, steps: int) -> None:
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(steps):
            self.step()
        self.cpu.append((time.process_time() - cpu) / steps)
        self.wall.append((time.perf_counter() - wall) / steps)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    from decrappify.io import read_image

    torch.set_num_threads(args.threads)
    train_files, _ = split_files(args.data)
    images = [read_image(p) for p in train_files]
    recipes = []
    for item in args.recipe or ['default=""']:
        name, _, text = item.partition("=")
        recipes.append(Recipe(name, recipe_config(args.data, text.strip('"')), images))
    for recipe in recipes:  # warm-up
        recipe.round(2)
        recipe.cpu.clear()
        recipe.wall.clear()
    for _ in range(args.rounds):
        for recipe in recipes:
            recipe.round(args.steps)
    print(
        f"{args.data}, {args.threads} thread(s), median of {args.rounds} rounds of "
        f"{args.steps} steps; load average {os.getloadavg()[0]:.2f}"
    )
    first = statistics.median(recipes[0].cpu)
    for recipe in recipes:
        cpu, wall = statistics.median(recipe.cpu), statistics.median(recipe.wall)
        print(
            f"{recipe.name:24s} cpu {cpu:6.3f} s/step  wall {wall:6.3f} s/step  x{cpu / first:.2f}"
        )


if __name__ == "__main__":
    main()
