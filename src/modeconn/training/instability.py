"""The record of an instability analysis (instability.json; Frankle et al. 2020, "Linear Mode Connectivity and
the Lottery Ticket Hypothesis"): the barrier between two copies spawned at each epoch."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModeconnError
from ..storage.record import Record

STABLE = 0.02  # Frankle et al.: a test-error barrier under 2% counts as linearly connected


@dataclass
class InstabilityResult(Record):
    """What instability.json holds: per spawn epoch (`per_spawn`, ascending) the test-error and train-loss
    barriers (against the chord and the endpoints' mean), the copies' test errors and whether the line counts as
    stable (test-error barrier below `stable_below`); `first_stable_spawn` is the first such epoch, or None.
    `config` is the parent's training config, `settings` the lines' evaluation settings."""

    dataset: str
    model: str
    config: dict
    spawn: list[int]
    points: int
    same_order: bool
    per_spawn: list[dict]
    settings: dict
    stable_below: float = STABLE

    kind = "instability"
    file = "instability.json"

    @property
    def first_stable_spawn(self) -> int | None:
        return next((r["spawn"] for r in self.per_spawn if r["stable"]), None)

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "model": self.model, "config": self.config, "spawn": self.spawn,
                "points": self.points, "same_order": self.same_order, "stable_below": self.stable_below,
                "per_spawn": self.per_spawn, "first_stable_spawn": self.first_stable_spawn, "settings": self.settings}

    @classmethod
    def from_json(cls, obj, source: str) -> InstabilityResult:
        try:
            result = cls(obj["dataset"], obj["model"], obj["config"], obj["spawn"], obj["points"], obj["same_order"],
                         obj["per_spawn"], obj["settings"], obj["stable_below"])
            for row in result.per_spawn:
                row["spawn"], row["test_err_barrier"], row["train_loss_barrier"], row["stable"]
            if not isinstance(result.config.get("epochs"), int):
                raise ValueError("config.epochs")
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise ModeconnError(f"{source} is not an instability result (missing or malformed {exc}); rerun "
                                "`modeconn instability`") from None
        return result

    def describe(self) -> str:
        rows = [f"  spawn {r['spawn']:>3}: test-error barrier {r['test_err_barrier']:.4f}, train-loss barrier "
                f"{r['train_loss_barrier']:.4f}{'  (stable)' if r['stable'] else ''}" for r in self.per_spawn]
        return "\n".join(rows + [f"first stable spawn epoch: {self.first_stable_spawn}"])
