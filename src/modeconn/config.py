"""Settings records shared across layers: a leaf module (it imports only the errors), so that the recipe
table and the training loops can both use them."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .errors import ModeconnError, param

LIMIT = 2 ** 63  # torch's generators, counters and indices take 64-bit signed integers


@dataclass
class TrainConfig:
    """Hyperparameters of one training run (SGD with momentum and the paper's schedule)."""

    epochs: int = 30
    lr: float = 0.05
    momentum: float = 0.9
    wd: float = 5e-4
    batch_size: int = 128
    seed: int = 0

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

    def to_dict(self) -> dict:
        return asdict(self)
