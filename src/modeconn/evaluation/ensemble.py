"""Ensembles as a running sum of the members' predictions (class probabilities, regression outputs), streamed
member by member."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import ModeconnError, param
from ..runtime import distributed
from ..runtime.speed import EAGER, Speed
from ..storage.record import Record
from ..tasks import CLASSIFICATION, Task, check_task, metric_label
from .batchnorm import recompute_bn
from .evaluate import NamedMetrics


class EnsembleMetrics(NamedMetrics):
    """An ensemble's metrics by name, in the task's order (`Task.ensemble_metrics`): classification's are test
    error (`err`, a fraction), NLL (`nll`, nats) and 15-bin expected calibration error (`ece`); regression's the
    averaged prediction's MSE (`loss`) and MAE (`mae`). Read as a mapping or by attribute (`m.err`)."""

    def to_dict(self) -> dict[str, float]:
        return dict(self._values)


class RunningEnsemble:
    """Averages members' predictions on a fixed set of batches, keeping only their running sum: for
    classification the softmax probabilities, for regression the outputs (the task's `ensemble_terms`).

    Memory is one (N, *prediction) float64 tensor whatever the number of members; no model copies are kept.
    Raises ModeconnError (one line) for an object that is not a Task, or batches the task cannot read.
    """

    def __init__(self, batches, num_classes: int, speed: Speed = EAGER, task: Task = CLASSIFICATION):
        self.task = check_task(task)
        self.batches, self.speed = [task.split(item) for item in batches], speed
        if not self.batches:
            raise ModeconnError("an ensemble needs at least one batch to measure on; the test split is empty")
        self.targets = torch.cat([y for _, y in self.batches])  # on the data's device, in batch order
        shape = tuple(task.prediction_shape(self.targets, num_classes))
        # kept as `prob_sum` in checkpoints, the name FGE's resumable checkpoints have always used
        self.total = torch.zeros(len(self.targets), *shape, dtype=torch.float64, device=self.targets.device)
        self.members = 0

    @torch.no_grad()
    def predict(self, model: nn.Module) -> torch.Tensor:
        """One member's predictions on every example, (N, *prediction) in float64 (eval mode): classification's
        log-probabilities, regression's outputs."""
        was_training = model.training
        model.eval()
        with self.speed.autocast(self.total.device):
            out = torch.cat([self.task.ensemble_prediction(model(self.speed.input(x)), y) for x, y in self.batches])
        model.train(was_training)
        return out

    @torch.no_grad()
    def add_prediction(self, prediction: torch.Tensor) -> dict[str, float]:
        """Add one member from its predictions; return that member's own metrics (classification: err, nll)."""
        self.total += self.task.ensemble_terms(prediction)
        self.members += 1
        return self.task.member_measure(prediction, self.targets)

    def add(self, model: nn.Module) -> dict[str, float]:
        """Add one member (evaluated in eval mode); return that member's own metrics."""
        return self.add_prediction(self.predict(model))

    def metrics(self) -> EnsembleMetrics:
        """The task's ensemble metrics of the average of the members so far."""
        return EnsembleMetrics(**self.task.ensemble_measure(self.total / self.members, self.targets))

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors that restore this ensemble (for resumable runs)."""
        return {"prob_sum": self.total, "members": torch.tensor(self.members, device="cpu")}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.total.copy_(state["prob_sum"])
        self.members = int(state["members"])


def ensemble_summary(metrics) -> str:
    """An ensemble's metrics in words: "test error 0.0812, NLL 0.2710, ECE 0.0153" for classification, "test loss
    0.0341, test MAE 0.1290" for regression."""
    if set(metrics) == {"err", "nll", "ece"}:  # classification's, worded as they always were
        return f"test error {metrics['err']:.4f}, NLL {metrics['nll']:.4f}, ECE {metrics['ece']:.4f}"
    return ", ".join(f"{metric_label('test_' + k)} {v:.4f}" for k, v in metrics.items())


def member_record(own: dict[str, float], ensemble: EnsembleMetrics) -> dict[str, float]:
    """One member's row in ensemble.json and fge.json: its own metrics (test_<metric>) and the ensemble's so far
    (ensemble_test_<metric>); classification's are test_err, test_nll, ensemble_test_err, _nll and _ece."""
    return {**{f"test_{k}": v for k, v in own.items()}, **{f"ensemble_test_{k}": v for k, v in ensemble.items()}}


@dataclass
class SpanEnsemble(Record):
    """Networks at chosen points of a curve or simplex, ensembled: one record per member and the final metrics
    (ensemble.json). `curve` or `simplex` (with the draws' `seed`) names the run the members came from, `out`
    where the command wrote the file, `dataset` the data measured on where it is not the run's; a notebook's
    ensemble leaves them None."""

    members: list[dict]
    ensemble: EnsembleMetrics
    curve: str | None = None
    simplex: str | None = None
    seed: int | None = None
    out: str | None = None
    dataset: str | None = None  # where measured on other data than the run's (ensemble --dataset)

    kind = "ensemble"
    file = "ensemble.json"
    what = "an ensemble result"
    made_by = "ensemble"

    def to_json(self) -> dict:
        where = {k: getattr(self, k) for k in ("curve", "simplex", "seed", "dataset") if getattr(self, k) is not None}
        return {"members": self.members, "ensemble": self.ensemble.to_dict(), **where, "points": len(self.members),
                **({"out": self.out} if self.out is not None else {})}

    @classmethod
    def from_json(cls, obj, source: str) -> SpanEnsemble:
        with cls.parsing(source):
            values = obj["ensemble"]
            if not isinstance(values, dict) or not values:
                raise TypeError("ensemble is not an object of metrics")
            metrics = EnsembleMetrics(**{str(k): float(v) for k, v in values.items()})
            members = obj["members"]
            if not isinstance(members, list):
                raise TypeError("members is not a list")
            return cls(members, metrics, **{k: obj.get(k) for k in ("curve", "simplex", "seed", "out", "dataset")})

    def describe(self) -> str:
        where = "curve" if self.curve else "simplex" if self.simplex else "span"
        return f"{where} ensemble of {len(self.members)}: {ensemble_summary(self.ensemble)}"


def span_ensemble(model_at, where: list, label: str, data, batch_size: int = 1000, progress: bool = True,
                  speed: Speed = EAGER) -> SpanEnsemble:
    """Ensemble of the networks `model_at(w)` for each w in `where` (BN recomputed for each); each
    member's record names its point as `label` (t along a curve, weights in a simplex).

    Under torchrun each rank computes whole members, a round of one per rank at a time; every
    rank adds them in order, so the sums are exactly those of one process. Raises ModeconnError for no members.
    """
    if not where:
        raise ModeconnError(f"an ensemble needs at least one member: {param('points')} must be >= 1")
    ens = RunningEnsemble(data.test_batches(batch_size), data.num_classes, speed, data.task)
    bn_batches = data.bn_batches(batch_size)
    width, records = distributed.world_size(), []
    bar = tqdm(total=len(where), desc="ensemble", disable=not progress, leave=False)
    for start in range(0, len(where), width):
        block = where[start:start + width]
        predictions = torch.zeros(len(block), *ens.total.shape, dtype=torch.float64, device=ens.total.device)
        for i in distributed.my_indices(len(block)):
            member = model_at(block[i])
            recompute_bn(member, bn_batches, speed, data.task)
            predictions[i] = ens.predict(member)
        predictions = distributed.combine_rows(predictions)
        for w, prediction in zip(block, predictions):
            own = ens.add_prediction(prediction)
            records.append({label: w, **member_record(own, ens.metrics())})
        bar.update(len(block))
    bar.close()
    return SpanEnsemble(records, ens.metrics())


def curve_ensemble(curve, data, points: int, **kwargs) -> SpanEnsemble:
    """Ensemble of networks at `points` evenly spaced t along a curve (BN recomputed for each)."""
    return span_ensemble(curve.model_at, [float(t) for t in np.linspace(0, 1, points)], "t", data, **kwargs)


def simplex_ensemble(simplex, data, points: int, seed: int = 0, **kwargs) -> SpanEnsemble:
    """Ensemble of networks at `points` points drawn uniformly from a simplex (BN recomputed for each)."""
    gen = torch.Generator().manual_seed(seed)
    result = span_ensemble(simplex.model_at, [simplex.sample_weights(gen) for _ in range(points)], "weights", data,
                           **kwargs)
    result.seed = seed
    return result
