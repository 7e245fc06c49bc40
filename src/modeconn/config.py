"""Settings records shared across layers: a leaf module (it imports only the errors), so that the recipe
table and the training loops can both use them."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .errors import ModeconnError, param

LIMIT = 2 ** 63  # torch's generators, counters and indices take 64-bit signed integers
OPTIMIZERS = ("sgd", "adamw")  # SGD with momentum (the paper's); AdamW (Loshchilov & Hutter 2019)
SCHEDULES = ("paper", "cosine")  # the paper's step-down schedule; cosine annealing after a linear warmup


@dataclass
class TrainConfig:
    """Hyperparameters of one training run.

    optimizer: "sgd" (momentum `momentum`, the paper's) or "adamw" (torch.optim.AdamW, betas (0.9, 0.999); a
    network's weight decay is then decoupled, as AdamW defines it). schedule: "paper" (constant for half the
    steps, linear down to 1% at 90%) or "cosine" (linear warmup from 0 over the first `warmup` fraction of the
    steps, then cosine annealing to 0, as transformers' get_cosine_schedule_with_warmup). The defaults are the
    paper's; `to_dict` leaves them out, so the records of SGD runs are what they always were.
    """

    epochs: int = 30
    lr: float = 0.05
    momentum: float = 0.9
    wd: float = 5e-4
    batch_size: int = 128
    seed: int = 0
    optimizer: str = "sgd"
    schedule: str = "paper"
    warmup: float = 0.05

    def __post_init__(self):
        """Refuse a setting no run can use, naming it (the CLI checks its options the same way at the door)."""
        for name, low in (("epochs", 1), ("batch_size", 1), ("seed", 0)):
            count = getattr(self, name)
            if isinstance(count, bool) or not isinstance(count, int) or not low <= count < LIMIT:
                raise ModeconnError(f"{param(name)} must be an integer in {low}..2**63-1, got {count!r}")
        for name, bottom, high in (("lr", 0.0, math.inf), ("wd", 0.0, math.inf), ("momentum", 0.0, 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not bottom <= value < high or (name == "lr" and value == 0):
                what = "a positive finite number" if name == "lr" else f"a finite number in [{bottom:g}, {high:g})"
                raise ModeconnError(f"{param(name)} must be {what}, got {value!r}")
        for name, choices in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES)):
            if getattr(self, name) not in choices:
                raise ModeconnError(f"{param(name)} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, (int, float)) or not 0 <= self.warmup < 1:
            raise ModeconnError(f"{param('warmup')} must be a fraction of the steps in [0, 1), got {self.warmup!r}")

    def to_dict(self) -> dict:
        """The config as run.json and checkpoints record it: the paper's optimizer and schedule are left out (the
        records of SGD runs keep their keys), the warmup is kept only for the cosine schedule."""
        out = asdict(self)
        if self.optimizer == "sgd":
            del out["optimizer"]
        if self.schedule == "paper":
            del out["schedule"]
        if self.schedule != "cosine":
            del out["warmup"]
        return out
