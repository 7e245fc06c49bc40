"""Options: how a command declares what it takes, and the option groups many commands share.

A command's options are one dataclass, the only place its options, defaults and help are written.
The CLI's parser is generated from it (cli.py), and a Python caller passes the same names as
keyword arguments (`modeconn.commands.plane(out, curve=..., grid=5)`). Fields are written as
`option(default, "help", ...)`: `None` means "from the dataset's recipe" (or the run's own
settings). A field's CLI flag is `--field-name` unless `flag` says otherwise; `positional=True`
makes it an argument without a flag, in field order.

Shared groups (`DeviceOptions`, `DataOptions`, `TrainingOptions`, `EvalOptions`) are keyword-only
dataclasses that a command's options inherit; a command's own fields come first and may be
passed by position.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field
from typing import Any

from ..config import OPTIMIZERS, SCHEDULES
from ..runtime.speed import Speed

REQUIRED: Any = MISSING  # an option without a default: the command cannot run without it


def option(default: Any = REQUIRED, help: str = "", *, flag: str | None = None, positional: bool = False,
           choices: tuple | list | None = None, nargs: str | int | None = None, metavar: str | None = None,
           cli: bool = True) -> Any:
    """One option: its default, its help and how the command line spells it.

    flag: the CLI spelling when it is not `--field-name` (e.g. `--quiet` for `progress`, whose bool
    is then stored inverted). positional: an argument without a flag. nargs: as argparse's ("+",
    "*", "?", 3). cli: False keeps the option to Python callers only.
    """
    meta = {"help": help, "flag": flag, "positional": positional, "choices": choices, "nargs": nargs,
            "metavar": metavar, "cli": cli}
    if isinstance(default, (list, dict, set)):
        frozen = list(default) if isinstance(default, list) else default
        return field(default_factory=lambda: type(frozen)(frozen), metadata={"option": meta})
    return field(default=default, metadata={"option": meta})


@dataclass(kw_only=True)
class DeviceOptions:
    """Where and how the network runs: device, progress bars and the opt-in speed settings."""

    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps (default: cuda if present)")
    progress: bool = option(True, "no progress bars", flag="--quiet")
    amp: str | None = option(None, "bf16 autocast for training and evaluation", choices=("bf16",))
    channels_last: bool = option(False, "NHWC memory format for image batches and conv weights")
    compile: bool = option(False, "torch.compile the network in training steps")

    @property
    def speed(self) -> Speed:
        """The speed settings as one value, passed to what runs the network."""
        return Speed(self.amp, self.channels_last, self.compile)

    def device_options(self) -> dict:
        """These options as keyword arguments, to hand on to another command (the demo's steps)."""
        return {"device": self.device, "progress": self.progress, "amp": self.amp,
                "channels_last": self.channels_last, "compile": self.compile}


@dataclass(kw_only=True)
class DataOptions(DeviceOptions):
    """Where the dataset's files are."""

    data_dir: str | None = option(None, "dataset folder (default: the one recorded in the run, or the dataset's own)")


@dataclass(kw_only=True)
class TrainingOptions(DataOptions):
    """Training settings; left out, each comes from the dataset's recipe."""

    epochs: int | None = option(None, "default: the dataset's recipe")
    lr: float | None = option(None, "initial learning rate (default: the recipe's)")
    wd: float | None = option(None, "weight decay (default: the recipe's)")
    batch_size: int | None = option(None, "default: the recipe's")
    seed: int = option(0, "seed of the initialisation and the data order")
    optimizer: str | None = option(None, "sgd (with momentum: the paper's) or adamw (default: the recipe's)",
                                   choices=OPTIMIZERS)
    schedule: str | None = option(None, "paper (constant, then down to 1%) or cosine (5% linear warmup, then "
                                        "cosine to 0) (default: the recipe's)", choices=SCHEDULES)
    resume: bool = option(False, "continue an unfinished run in --out with the same settings")


@dataclass(kw_only=True)
class SamplingOptions(DataOptions):
    """Which training examples each point's measurement uses."""

    bn_samples: int | None = option(None, "recompute BatchNorm on a random subset of this many training examples "
                                          "(an approximation; default: the exact full pass)")
    train_samples: int | None = option(None, "train metrics on a random subset")


@dataclass(kw_only=True)
class EvalOptions(SamplingOptions):
    """How points are measured, and whether finished evaluation files are replaced."""

    batch_size: int = option(1000, "evaluation batch size")
    force: bool = option(False, "replace existing evaluation files")


OTHER_DATASET_HELP = ("measure on this dataset instead of the run's (the same inputs and targets read another way, "
                      "or a shifted test set)")
TASK_HELP = ("classification, regression, lm (language modeling) or your Task's package.module:Name (default: the "
             "dataset's own: lm for text, else classification unless it names another)")
REPAIR_HELP = "REPAIR each point's unit statistics (networks without BatchNorm; Jordan et al. 2023)"
