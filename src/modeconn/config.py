"""Settings records shared across layers: a leaf module, importing nothing of modeconn's, so that the
recipe table (below storage) and the training loops (above it) can both use them."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class TrainConfig:
    """Hyperparameters of one training run (SGD with momentum and the paper's schedule)."""

    epochs: int = 30
    lr: float = 0.05
    momentum: float = 0.9
    wd: float = 5e-4
    batch_size: int = 128
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)
