"""Ensembles as a running sum of member probabilities, streamed batch by batch; calibration error."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import ModeconnError, param
from ..runtime import distributed
from ..runtime.speed import EAGER, Speed
from ..storage.record import Record
from ..tasks import CLASSIFICATION, Task, check_task
from .batchnorm import recompute_bn
from .evaluate import Metrics


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE with equal-width confidence bins: sum_b |B_b|/N * |accuracy(B_b) - confidence(B_b)|."""
    conf, pred = probs.max(1)
    correct = (pred == labels).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=conf.dtype, device=conf.device)
    ece = torch.zeros((), dtype=torch.float64, device=conf.device)
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.double().mean() * (correct[inside].mean() - conf[inside].double().mean()).abs()
    return float(ece)


def check_ensemble_task(task: Task) -> None:
    """Refuse (ModeconnError, one line) a task other than classification: ensembles average class probabilities."""
    check_task(task)
    if task.name != CLASSIFICATION.name:
        raise ModeconnError(f"ensembles (FGE, SWA, curve and simplex ensembles, budget) measure classification "
                            f"so far, not {task.name}; measure the members one by one with evaluate")


@dataclass(frozen=True)
class EnsembleMetrics:
    """The averaged members' test error, NLL and 15-bin expected calibration error."""

    err: float
    nll: float
    ece: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


class RunningEnsemble:
    """Averages members' softmax probabilities on a fixed set of batches, keeping only their sum.

    Memory is one (N, classes) tensor whatever the number of members; no model copies are kept. Ensembles
    measure classification so far: another task is refused (ModeconnError, one line).
    """

    def __init__(self, batches, num_classes: int, speed: Speed = EAGER, task: Task = CLASSIFICATION):
        check_ensemble_task(task)
        self.batches, self.speed = [task.split(item) for item in batches], speed
        self.labels = torch.cat([y for _, y in self.batches])  # on the data's device, in batch order
        self.prob_sum = torch.zeros(len(self.labels), num_classes, dtype=torch.float64, device=self.labels.device)
        self.members = 0

    @torch.no_grad()
    def log_probs(self, model: nn.Module) -> torch.Tensor:
        """One member's log-probabilities on every example, (N, classes) in float64 (eval mode)."""
        was_training = model.training
        model.eval()
        with self.speed.autocast(self.prob_sum.device):
            out = torch.cat([torch.log_softmax(model(self.speed.input(x)).double(), 1) for x, _ in self.batches])
        model.train(was_training)
        return out

    @torch.no_grad()
    def add_log_probs(self, logp: torch.Tensor) -> Metrics:
        """Add one member from its log-probabilities; return that member's own metrics (loss = NLL)."""
        self.prob_sum += logp.exp()
        self.members += 1
        nll = -logp.gather(1, self.labels[:, None]).mean()
        err = (logp.argmax(1) != self.labels).double().mean()
        return Metrics(loss=float(nll), err=float(err))

    def add(self, model: nn.Module) -> Metrics:
        """Add one member (evaluated in eval mode); return that member's own metrics."""
        return self.add_log_probs(self.log_probs(model))

    def metrics(self) -> EnsembleMetrics:
        """Error, NLL and 15-bin ECE of the average of the members so far."""
        probs = self.prob_sum / self.members
        nll = float(-torch.log(probs.gather(1, self.labels[:, None]).clamp_min(1e-300)).mean())
        err = float((probs.argmax(1) != self.labels).double().mean())
        return EnsembleMetrics(err=err, nll=nll, ece=expected_calibration_error(probs, self.labels))

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors that restore this ensemble (for resumable runs)."""
        return {"prob_sum": self.prob_sum, "members": torch.tensor(self.members, device="cpu")}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.prob_sum.copy_(state["prob_sum"])
        self.members = int(state["members"])


def member_record(own: Metrics, ensemble: EnsembleMetrics) -> dict[str, float]:
    """One member's row in ensemble.json and fge.json: its own metrics and the ensemble's so far."""
    return {"test_err": own.err, "test_nll": own.loss, "ensemble_test_err": ensemble.err,
            "ensemble_test_nll": ensemble.nll, "ensemble_test_ece": ensemble.ece}


@dataclass
class SpanEnsemble(Record):
    """Networks at chosen points of a curve or simplex, ensembled: one record per member and the final metrics
    (ensemble.json). `curve` or `simplex` (with the draws' `seed`) names the run the members came from, `out`
    where the command wrote the file; a notebook's ensemble leaves them None."""

    members: list[dict]
    ensemble: EnsembleMetrics
    curve: str | None = None
    simplex: str | None = None
    seed: int | None = None
    out: str | None = None

    kind = "ensemble"
    file = "ensemble.json"
    what = "an ensemble result"
    made_by = "ensemble"

    def to_json(self) -> dict:
        where = {k: getattr(self, k) for k in ("curve", "simplex", "seed") if getattr(self, k) is not None}
        return {"members": self.members, "ensemble": self.ensemble.to_dict(), **where, "points": len(self.members),
                **({"out": self.out} if self.out is not None else {})}

    @classmethod
    def from_json(cls, obj, source: str) -> SpanEnsemble:
        with cls.parsing(source):
            metrics = EnsembleMetrics(**{k: float(obj["ensemble"][k]) for k in ("err", "nll", "ece")})
            members = obj["members"]
            if not isinstance(members, list):
                raise TypeError("members is not a list")
            return cls(members, metrics, **{k: obj.get(k) for k in ("curve", "simplex", "seed", "out")})

    def describe(self) -> str:
        e = self.ensemble
        return (f"{'curve' if self.curve else 'simplex' if self.simplex else 'span'} ensemble of {len(self.members)}: "
                f"test error {e.err:.4f}, NLL {e.nll:.4f}, ECE {e.ece:.4f}")


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
        logps = torch.zeros(len(block), *ens.prob_sum.shape, dtype=torch.float64, device=ens.prob_sum.device)
        for i in distributed.my_indices(len(block)):
            member = model_at(block[i])
            recompute_bn(member, bn_batches, speed, data.task)
            logps[i] = ens.log_probs(member)
        logps = distributed.combine_rows(logps)
        for w, logp in zip(block, logps):
            own = ens.add_log_probs(logp)
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
