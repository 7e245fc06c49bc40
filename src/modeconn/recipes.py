"""Every default the commands use, per dataset, in one table: model, training, curve fitting, FGE."""
from __future__ import annotations

from dataclasses import dataclass

from .config import TrainConfig
from .data import family
from .errors import ModeconnError
from .object_ref import is_reference


@dataclass(frozen=True)
class FGERecipe:
    """FGE's cycle: epochs of cycling, cycle length (even), high and low learning rates."""

    epochs: int
    cycle: int
    lr1: float
    lr2: float


@dataclass(frozen=True)
class Recipe:
    """What a command uses for a dataset when an option is left out."""

    model: str
    train: TrainConfig
    connect: TrainConfig
    fge: FGERecipe


RECIPES = {
    # A good network in about a minute or less on 2 CPU cores. FGE: 5 cycles of 2 epochs over the
    # last 0.2B of the 50-epoch budget; lr1 = 0.15 picked from {0.05, 0.1, 0.15, 0.2, 0.4} on the demo.
    "mnist1d": Recipe("conv1d", TrainConfig(epochs=50, lr=0.1, wd=5e-4, batch_size=64),
                      TrainConfig(epochs=50, lr=0.05, wd=5e-4, batch_size=64), FGERecipe(10, 2, 0.15, 0.0005)),
    # lr1 = 0.1: with 0.05 the snapshots barely leave the minimum (docs/results.md).
    "fashion-mnist": Recipe("convbn", TrainConfig(epochs=10, lr=0.05, wd=5e-4, batch_size=128),
                            TrainConfig(epochs=10, lr=0.03, wd=5e-4, batch_size=128), FGERecipe(10, 2, 0.1, 0.0005)),
    "fashion-mnist-32": Recipe("vgg16bn", TrainConfig(epochs=30, lr=0.05, wd=5e-4, batch_size=128),
                               TrainConfig(epochs=30, lr=0.015, wd=5e-4, batch_size=128),
                               FGERecipe(20, 4, 0.05, 0.0005)),
    # The paper's VGG16 recipe (Garipov et al. 2018; docs/cifar.md).
    "cifar10": Recipe("vgg16", TrainConfig(epochs=200, lr=0.05, wd=5e-4, batch_size=128),
                      TrainConfig(epochs=600, lr=0.015, wd=5e-4, batch_size=128), FGERecipe(40, 2, 0.05, 0.0005)),
    "cifar100": Recipe("vgg16", TrainConfig(epochs=200, lr=0.05, wd=5e-4, batch_size=128),
                       TrainConfig(epochs=600, lr=0.015, wd=5e-4, batch_size=128), FGERecipe(40, 2, 0.05, 0.0005)),
    # A 2-layer, 128-wide byte-level GPT-2 (configs/gpt2-tiny.json) on English text: AdamW with a cosine schedule
    # after a 5% warmup, as transformer language models are trained; 3 epochs of the ~2.3 MB training split in
    # blocks of 128 bytes (about 1,700 steps of 32 blocks). Fine-tuning from it: train --init RUN with fewer epochs.
    "fortunes": Recipe("hf:gpt2-tiny", TrainConfig(epochs=3, lr=3e-3, wd=0.01, batch_size=32, optimizer="adamw",
                                                  schedule="cosine", warmup=0.05),
                       TrainConfig(epochs=3, lr=1e-3, wd=0.01, batch_size=32, optimizer="adamw", schedule="cosine",
                                   warmup=0.05), FGERecipe(2, 2, 1e-3, 1e-5)),
}


# Your own data (--dataset package.module:callable): an MLP on the flattened inputs and Fashion-MNIST's schedule,
# a start to override with --model, --epochs, --lr, ... once you know your data.
YOUR_DATA = Recipe("mlp", TrainConfig(epochs=10, lr=0.05, wd=5e-4, batch_size=128),
                   TrainConfig(epochs=10, lr=0.03, wd=5e-4, batch_size=128), FGERecipe(10, 2, 0.1, 0.0005))


def recipe_for(dataset: str) -> Recipe:
    """The recipe of a dataset (YOUR_DATA for a package.module:callable), refusing an unknown name."""
    if is_reference(dataset):
        return YOUR_DATA
    dataset = family(dataset)
    if dataset not in RECIPES:
        raise ModeconnError(f"unknown dataset {dataset!r}: choose one of {', '.join(RECIPES)}, or name your own as "
                            "package.module:callable")
    return RECIPES[dataset]
