"""What several commands share: resolving training options against a recipe, and evaluation settings."""
from __future__ import annotations

from dataclasses import replace

from ..config import TrainConfig
from ..evaluation.pointwise import EvalSettings
from ..runtime import distributed
from . import validate


def training_config(base: TrainConfig, epochs=None, lr=None, wd=None, batch_size=None, seed=0) -> TrainConfig:
    """The recipe's config with the options given on the command line, each checked."""
    return replace(base,
                   epochs=validate.optional(validate.positive_int, "--epochs", epochs) or base.epochs,
                   lr=validate.optional(validate.positive_float, "--lr", lr) or base.lr,
                   wd=base.wd if wd is None else validate.nonnegative_float("--wd", wd),
                   batch_size=validate.optional(validate.positive_int, "--batch-size", batch_size) or base.batch_size,
                   seed=validate.nonnegative_int("--seed", seed))


def eval_settings(wd: float, batch_size, bn_samples, train_samples) -> EvalSettings:
    """How each point is measured, every number checked."""
    return EvalSettings(wd=wd, batch_size=validate.positive_int("--batch-size", batch_size),
                        bn_samples=validate.optional(validate.positive_int, "--bn-samples", bn_samples),
                        train_samples=validate.optional(validate.positive_int, "--train-samples", train_samples))


def join(device):
    """Choose the device (checked) and then, under torchrun, join the process group: this rank's device."""
    return distributed.setup(validate.device(device))
