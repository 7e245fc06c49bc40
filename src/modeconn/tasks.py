"""Tasks: what a model is asked to do. A task reads a batch into the model's inputs and targets, gives the loss
training minimises, and the metrics a split is measured by.

Every analysis reads the task from the data it is given (`Dataset.task`; `classification` unless said
otherwise), so a curve, a plane, a landscape, curvature or an ensemble of a regression model needs nothing but
a dataset that carries `regression()`. A user's own task subclasses `Task`.

Metrics are reduced from per-batch sums, never from per-batch means: `sums` returns, for one batch, the sum of
each metric over its examples (or tokens, or elements), and `count` how many there were, as float64 tensors that
stay on the device. Evaluation adds these up over a split and reads them back once, so a split cut into batches of
any size, or into shards across ranks, gives the same metric (up to float summation order).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch.nn import functional as F

from .errors import ModeconnError, param
from .object_ref import is_reference, resolve


class Task:
    """What a model is asked to do. Subclass it and set `name` and `metrics` (the first is always "loss"); override
    `loss` and `sums`, and `split` where batches are not (inputs, targets, ...) tuples or lists.

    `input_key` and `target_key` name the entries of dict batches (e.g. "image" and "label"); without them a dict
    batch is refused, never guessed at.
    """

    name: str = "task"
    metrics: tuple[str, ...] = ("loss",)
    # metrics computed from the means of `metrics` over a whole split, not summed batch by batch (perplexity is
    # exp of the mean loss): their names, and `derive`, which gives them
    derived_metrics: tuple[str, ...] = ()

    def __init__(self, input_key: str | None = None, target_key: str | None = None):
        if (input_key is None) != (target_key is None) or not all(isinstance(k, (str, type(None)))
                                                               for k in (input_key, target_key)):
            raise ModeconnError(f"a task reads dict batches by two entry names, input_key and target_key (strings), "
                                f"or neither; got input_key={input_key!r}, target_key={target_key!r}")
        self.input_key, self.target_key = input_key, target_key

    def split(self, batch) -> tuple:
        """(inputs, targets) of one batch: a tuple or list (x, y, extras...) (extras, such as the indices some
        datasets add, are ignored), a dict read by `input_key` and `target_key`, or a dict in Hugging Face's layout
        (`input_ids`, optionally `attention_mask`, and `labels` or `label`; read by `token_inputs`). Raises
        ModeconnError (one line) for anything else: a bare tensor is never split into inputs and targets."""
        if isinstance(batch, (tuple, list)) and len(batch) >= 2:
            return batch[0], batch[1]
        if isinstance(batch, Mapping) and self.input_key is None and "input_ids" in batch:
            labels = next((k for k in ("labels", "label") if k in batch), None)
            if labels is None:
                raise ModeconnError(f"a dict batch with input_ids (keys {', '.join(map(str, batch))}) has no labels "
                                    f"or label entry for {type(self).__name__} to measure against; add one")
            return token_inputs(batch), batch[labels]
        if isinstance(batch, Mapping):
            if self.input_key is None or self.target_key is None:
                raise ModeconnError(f"a dict batch (keys {', '.join(map(str, batch))}) needs the task to name its "
                                    f"entries: {type(self).__name__}(input_key=..., target_key=...)")
            missing = [k for k in (self.input_key, self.target_key) if k not in batch]
            if missing:
                raise ModeconnError(f"a dict batch has no {' or '.join(map(repr, missing))} entry (it has "
                                    f"{', '.join(map(str, batch))}); name the entries the task reads")
            return batch[self.input_key], batch[self.target_key]
        got = f"a {type(batch).__name__}" + (f" of {len(batch)}" if isinstance(batch, (tuple, list)) else "")
        raise ModeconnError(f"a batch must be a tuple or list (inputs, targets, ...) or a dict, got {got}; give "
                            "(x, y) pairs, e.g. a TensorDataset(x, y) or a DataLoader over one")

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The scalar loss training minimises on one batch (a mean, so the learning rate does not scale with the
        batch)."""
        raise NotImplementedError

    def sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Shape (len(metrics),), float64, on the outputs' device: the sum of each metric over the batch; `loss`
        must equal sums[0] / count(targets). Works under `torch.func.vmap` when written with ordinary tensor
        operations (several networks are measured at once that way)."""
        raise NotImplementedError

    def count(self, targets: torch.Tensor) -> torch.Tensor:
        """What the sums of a batch are averaged over (examples; tokens; elements), a float64 scalar tensor on the
        targets' device. Default: the examples, targets.shape[0]."""
        return torch.tensor(float(targets.shape[0]), dtype=torch.float64, device=targets.device)

    def measure(self, outputs, targets) -> tuple[torch.Tensor, torch.Tensor]:
        """(sums, count) of one batch, checked: sums of shape (len(metrics),), count a scalar (float64). Raises
        ModeconnError (one line) where a task's `sums` or `count` returns something else."""
        sums = self.sums(outputs, targets)
        if not isinstance(sums, torch.Tensor) or tuple(sums.shape) != (len(self.metrics),):
            got = tuple(sums.shape) if isinstance(sums, torch.Tensor) else type(sums).__name__
            raise ModeconnError(f"{type(self).__name__}.sums must return a tensor of shape ({len(self.metrics)},), "
                                f"one sum per metric ({', '.join(self.metrics)}), got {got}")
        count = self.count(targets)
        if not isinstance(count, torch.Tensor) or count.dim() != 0:
            raise ModeconnError(f"{type(self).__name__}.count(targets) must return a scalar tensor (what the sums are "
                                f"averaged over), got {type(count).__name__}")
        return sums.double(), count.double()

    def reduce(self, sums: torch.Tensor, count: torch.Tensor) -> dict[str, float]:
        """{metric: mean} from the sums and count of a whole split (one host read), then the derived metrics. Raises
        ModeconnError (one line) where the split held nothing to measure (every token's label -100, say)."""
        values = dict(zip(self.metrics, (sums / count).tolist()))
        if float(count) == 0:
            raise ModeconnError(f"there is nothing to measure: the batches hold no examples, tokens or values the "
                                f"{self.name} task counts (for language modeling: every label is {IGNORE_INDEX} or "
                                "the sequences are one token long)")
        return {**values, **self.derive(values)}

    def derive(self, means: dict[str, float]) -> dict[str, float]:
        """The `derived_metrics` of a split from the means of its `metrics`. Default: none."""
        return {}

    @property
    def all_metrics(self) -> tuple[str, ...]:
        """Every metric a split is measured by: `metrics`, then `derived_metrics`."""
        return (*self.metrics, *self.derived_metrics)

    @property
    def point_metrics(self) -> tuple[str, ...]:
        """The keys of one measured point in result files: train_<metric>, test_<metric> for each metric (derived
        ones included), and train_objective (the train loss plus the decay term training minimised)."""
        return (*(f"train_{m}" for m in self.all_metrics), *(f"test_{m}" for m in self.all_metrics),
                "train_objective")

    def output_shape(self, input_shape: tuple[int, ...], num_classes: int) -> tuple[int, ...]:
        """The shape of the model's output for one example of `input_shape` (read by `model_output`): checked when a
        model is built, so a model that does not fit the task is refused before anything runs. Default:
        (num_classes,), one logit per class or one value per target value."""
        return (num_classes,)

    def check_targets(self, targets: torch.Tensor, num_classes: int, split: str) -> None:
        """Refuse (ModeconnError, one line) a dataset's targets this task cannot measure; run once when a Dataset is
        made (it reads the targets back to the host)."""

    # Ensembles (FGE, SWA, curve and simplex ensembles, budget) average the members' predictions. The defaults
    # average the model's outputs and measure the average by the task's own metrics, what regression needs;
    # classification averages probabilities instead and adds NLL and calibration error.

    @property
    def ensemble_metrics(self) -> tuple[str, ...]:
        """The names of an ensemble's metrics (ensemble_measure's keys). Default: the task's metrics."""
        return tuple(self.metrics)

    def prediction_shape(self, targets: torch.Tensor, num_classes: int) -> tuple[int, ...]:
        """The shape of one example's prediction (ensemble_prediction's rows). Default: the targets' per example."""
        return tuple(targets.shape[1:])

    def ensemble_prediction(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """One member's prediction for a batch, (batch, *prediction_shape), float64. Default: the outputs, one row
        per example, in the targets' shape; raises ModeconnError (one line) for outputs that are not (override this
        and prediction_shape for other outputs)."""
        return _like(model_output(outputs), targets, f"{type(self).__name__}'s ensemble (by default)",
                     "or override ensemble_prediction and prediction_shape").double()

    def member_measure(self, prediction: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """One member's own metrics from its predictions of a whole split (one host read). Default: the task's
        metrics, by `sums`."""
        return self.reduce(*self.measure(prediction, targets))

    def ensemble_terms(self, prediction: torch.Tensor) -> torch.Tensor:
        """What the ensemble averages of a member's prediction. Default: the prediction itself."""
        return prediction

    def ensemble_measure(self, mean_terms: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """The metrics of the members' averaged terms on a whole split, keyed by ensemble_metrics. Default: the
        task's metrics of the averaged prediction."""
        return self.reduce(*self.measure(mean_terms, targets))

    def __repr__(self) -> str:
        keys = f"input_key={self.input_key!r}, target_key={self.target_key!r}" if self.input_key is not None else ""
        return f"{type(self).__name__}({keys})"


class Classification(Task):
    """Cross-entropy on logits of shape (N, classes) against class indices (N,); metrics: mean cross-entropy
    (`loss`, nats) and error as a fraction (`err`). The paper's task and modeconn's default."""

    name = "classification"
    metrics = ("loss", "err")

    def loss(self, outputs, targets):
        return F.cross_entropy(model_output(outputs), _labels(targets))

    def sums(self, outputs, targets):
        targets, logits = _labels(targets), model_output(outputs).float()
        return torch.stack([F.cross_entropy(logits, targets, reduction="sum").double(),
                            (logits.argmax(-1) != targets).sum().double()])

    def check_targets(self, targets, num_classes, split):
        _labels(targets)
        if len(targets) and not 0 <= int(targets.min()) <= int(targets.max()) < num_classes:
            raise ModeconnError(f"the {split} labels run from {int(targets.min())} to {int(targets.max())}, outside "
                                f"0..{num_classes - 1} (num_classes={num_classes}); labels must be 0..num_classes-1: "
                                "fix the labels or give num_classes above the largest")

    # an ensemble averages the members' class probabilities; a member's prediction is kept as log-probabilities,
    # so its own NLL is exact (no log of an exponential)
    ensemble_metrics = ("err", "nll", "ece")  # type: ignore[assignment]

    def prediction_shape(self, targets, num_classes):
        return (num_classes,)

    def ensemble_prediction(self, outputs, targets):
        return torch.log_softmax(model_output(outputs).double(), -1)

    def member_measure(self, prediction, targets):
        nll = -prediction.gather(1, targets[:, None]).mean()
        err = (prediction.argmax(1) != targets).double().mean()
        return {"err": float(err), "nll": float(nll)}

    def ensemble_terms(self, prediction):
        return prediction.exp()

    def ensemble_measure(self, mean_terms, targets):
        probs = mean_terms
        nll = float(-torch.log(probs.gather(1, targets[:, None]).clamp_min(1e-300)).mean())
        err = float((probs.argmax(1) != targets).double().mean())
        return {"err": err, "nll": nll, "ece": expected_calibration_error(probs, targets)}


class Regression(Task):
    """Squared error on outputs of the targets' shape; metrics: mean squared error (`loss`) and mean absolute error
    (`mae`), both per target element. Ensembles average the members' predictions."""

    name = "regression"
    metrics = ("loss", "mae")

    def loss(self, outputs, targets):
        return F.mse_loss(_like(model_output(outputs), targets), targets)

    def sums(self, outputs, targets):
        diff = _like(model_output(outputs), targets).double() - targets.double()
        return torch.stack([diff.square().sum(), diff.abs().sum()])

    def count(self, targets):
        return torch.tensor(float(targets.numel()), dtype=torch.float64, device=targets.device)

    def ensemble_prediction(self, outputs, targets):
        return _like(model_output(outputs), targets).double()

    def check_targets(self, targets, num_classes, split):
        if not targets.is_floating_point():
            raise ModeconnError(f"regression needs floating-point targets, the {split} targets are "
                                f"{str(targets.dtype).removeprefix('torch.')}; convert them (y.float()), or use "
                                "classification for class labels")
        width = targets[0].numel() if len(targets) else num_classes
        if width != num_classes:
            raise ModeconnError(f"num_classes is the model's output width, one per target value: the {split} targets "
                                f"have {width} per example, num_classes is {num_classes}")
        if not bool(torch.isfinite(targets).all()):
            raise ModeconnError(f"the {split} targets hold NaN or infinite values; drop or fix those examples")



IGNORE_INDEX = -100  # a label no token is measured against (padding), as in PyTorch's and Hugging Face's losses


class LanguageModeling(Task):
    """Next-token prediction (Radford et al. 2019's objective): the logits at position i, shape (N, L, vocab), are
    measured against the token at i + 1 of the labels (N, L), over the positions whose label is not IGNORE_INDEX
    (-100, padding). Metrics, per predicted token: mean cross-entropy (`loss`, nats), token error (`err`, the
    fraction whose most likely next token is wrong), and perplexity (`ppl`, exp of the mean loss over a whole
    split, so a split's perplexity is never an average of batch perplexities).

    Batches: a tensor of token ids (N, L) (its own labels), (ids, labels) pairs, or dicts of `input_ids`,
    optionally `attention_mask` (masked positions are not measured) and `labels` (`token_inputs`). Ensembles
    average the members' next-token probabilities."""

    name = "lm"
    metrics = ("loss", "err")
    derived_metrics = ("ppl",)
    ensemble_metrics = ("loss", "err", "ppl")  # type: ignore[assignment]

    def split(self, batch):
        if isinstance(batch, torch.Tensor):
            return batch, batch
        if isinstance(batch, Mapping) and self.input_key is None and "input_ids" in batch:
            labels, mask = batch.get("labels", batch["input_ids"]), batch.get("attention_mask")
            if mask is not None and isinstance(labels, torch.Tensor) and labels.shape == mask.shape:
                labels = labels.masked_fill(mask == 0, IGNORE_INDEX)  # masked positions are never measured
            return token_inputs(batch), labels
        return super().split(batch)

    @staticmethod
    def _next_tokens(outputs, targets) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (..., L - 1, vocab), labels (..., L - 1)): each position's logits beside the token after it."""
        logits = model_output(outputs)
        return logits[..., :-1, :], _tokens(targets)[..., 1:]

    def loss(self, outputs, targets):
        logits, labels = self._next_tokens(outputs, targets)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX)

    def sums(self, outputs, targets):
        logits, labels = self._next_tokens(outputs, targets)
        logp = torch.log_softmax(logits.float(), -1)
        valid = labels != IGNORE_INDEX
        nll = -logp.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        wrong = (logp.argmax(-1) != labels) & valid
        return torch.stack([(nll.double() * valid).sum(), wrong.sum().double()])

    def count(self, targets):
        return (_tokens(targets)[..., 1:] != IGNORE_INDEX).sum().double()

    def derive(self, means):
        return {"ppl": math.exp(min(means["loss"], 700.0))}  # exp overflows a float past 709

    def output_shape(self, input_shape, num_classes):
        return (input_shape[-1], num_classes)

    def check_targets(self, targets, num_classes, split):
        labels = _tokens(targets)
        valid = labels[labels != IGNORE_INDEX]
        if labels.dim() != 2 or labels.shape[1] < 2:
            raise ModeconnError(f"the lm task needs token ids of shape (batch, length >= 2), the {split} labels have "
                                f"shape {tuple(labels.shape)}")
        if len(valid) and not 0 <= int(valid.min()) <= int(valid.max()) < num_classes:
            raise ModeconnError(f"the {split} tokens run from {int(valid.min())} to {int(valid.max())}, outside the "
                                f"vocabulary 0..{num_classes - 1} (num_classes is the vocabulary size); give "
                                f"num_classes above the largest token id (padding labels are {IGNORE_INDEX})")

    def prediction_shape(self, targets, num_classes):
        return (targets.shape[1] - 1, num_classes)

    def ensemble_prediction(self, outputs, targets):
        logits, _ = self._next_tokens(outputs, targets)
        return torch.log_softmax(logits.double(), -1)

    def _measure_log_probs(self, logp: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        labels = _tokens(targets)[:, 1:]
        valid = labels != IGNORE_INDEX
        nll = -logp.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        tokens = valid.sum().double()
        loss = float((nll * valid).sum() / tokens)
        err = float(((logp.argmax(-1) != labels) & valid).sum() / tokens)
        return {"loss": loss, "err": err, **self.derive({"loss": loss})}

    def member_measure(self, prediction, targets):
        return self._measure_log_probs(prediction, targets)

    def ensemble_terms(self, prediction):
        return prediction.exp()

    def ensemble_measure(self, mean_terms, targets):
        return self._measure_log_probs(torch.log(mean_terms.clamp_min(1e-300)), targets)


def model_output(outputs) -> torch.Tensor:
    """The tensor a task measures among a model's outputs: a tensor as it is; from a dict or a Hugging Face
    `ModelOutput` (a dict), its `logits`; from a tuple, its first entry (Hugging Face's return_dict=False).
    Raises ModeconnError (one line) for anything else."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, Mapping):
        if "logits" not in outputs:
            raise ModeconnError(f"the model returns a {type(outputs).__name__} without logits (it has "
                                f"{', '.join(map(str, outputs))}); return a tensor or a dict with `logits`")
        return outputs["logits"]
    if isinstance(outputs, (tuple, list)) and outputs and isinstance(outputs[0], torch.Tensor):
        return outputs[0]
    raise ModeconnError(f"the model returns a {type(outputs).__name__}; a task reads a tensor, a dict with `logits` "
                        "or a tuple whose first entry is the logits")


def token_inputs(batch: Mapping) -> torch.Tensor:
    """A Hugging Face dict batch's model inputs as one tensor, so every analysis batches, shards and moves it like
    any input: its `input_ids` (N, L), or, with an `attention_mask`, both stacked as (N, 2, L) (ids, mask), which
    `modeconn.models.huggingface.HuggingFaceModel` unstacks."""
    ids, mask = batch["input_ids"], batch.get("attention_mask")
    if mask is None:
        return ids
    if tuple(mask.shape) != tuple(ids.shape):
        raise ModeconnError(f"a batch's attention_mask has shape {tuple(mask.shape)}, its input_ids "
                            f"{tuple(ids.shape)}; give one mask entry per token")
    return torch.stack([ids, mask.to(ids.dtype)], 1)


def _tokens(targets: torch.Tensor) -> torch.Tensor:
    """Token ids (integers), or a one-line refusal (read from the dtype: no host sync)."""
    if targets.is_floating_point():
        raise ModeconnError(f"the lm task needs integer token ids, got {str(targets.dtype).removeprefix('torch.')} "
                            "labels")
    return targets


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al. 2017): sum_b |B_b|/N * |accuracy(B_b) - confidence(B_b)|.
    probs (N, classes), labels (N,); a fraction in [0, 1]."""
    conf, pred = probs.max(1)
    correct = (pred == labels).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=conf.dtype, device=conf.device)
    ece = torch.zeros((), dtype=torch.float64, device=conf.device)
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.double().mean() * (correct[inside].mean() - conf[inside].double().mean()).abs()
    return float(ece)


def _labels(targets: torch.Tensor) -> torch.Tensor:
    """Class indices, or a one-line refusal of floating-point targets (read from the dtype: no host sync)."""
    if targets.is_floating_point() or targets.dim() != 1:
        raise ModeconnError(f"classification needs class indices of shape (batch,) (integers), got "
                            f"{str(targets.dtype).removeprefix('torch.')} targets of shape {tuple(targets.shape)}; for "
                            "continuous targets use the regression task (mc.regression(); --task regression where the "
                            "networks are trained)")
    return targets


def _like(outputs: torch.Tensor, targets: torch.Tensor, who: str = "regression", hint: str = "") -> torch.Tensor:
    """Outputs in the targets' shape: one row per example and one value per target value, else a one-line refusal
    naming `who` needs them (never a reshape that would pair outputs with another example's targets)."""
    if not isinstance(outputs, torch.Tensor) or outputs.dim() == 0 or outputs.shape[0] != targets.shape[0] \
            or outputs.numel() != targets.numel():
        got = tuple(outputs.shape) if isinstance(outputs, torch.Tensor) else type(outputs).__name__
        raise ModeconnError(f"{who} needs one output row per example with one value per target value (targets "
                            f"{tuple(targets.shape)}), the model gives {got}; give the model as many outputs as "
                            f"each example has target values (num_classes){' ' + hint if hint else ''}")
    return outputs.reshape(targets.shape)


def classification(input_key: str | None = None, target_key: str | None = None) -> Classification:
    """The classification task (the default)."""
    return Classification(input_key, target_key)


def regression(input_key: str | None = None, target_key: str | None = None) -> Regression:
    """The regression task: squared error, MAE."""
    return Regression(input_key, target_key)


def headline(names) -> str:
    """The metric a summary or figure leads with, among the metric names of a result (`err`, `test_err`, ...):
    perplexity where the task has one (language modeling), else the error where it has one (classification), else
    the loss. Read from the names, so a file read back needs no task."""
    names = list(names)
    prefix = next((p for p in ("test_", "", "train_") if p + "loss" in names), "")  # test metrics first
    return next((prefix + m for m in ("ppl", "err") if prefix + m in names), prefix + "loss")


def metric_label(name: str) -> str:
    """A metric's name in words: test_err is "test error", train_loss "train loss", mae "MAE"."""
    words = {"err": "error", "mae": "MAE", "nll": "NLL", "ece": "ECE", "ppl": "perplexity"}
    return " ".join(words.get(w, w) for w in name.split("_"))


CLASSIFICATION = Classification()
def language_modeling(input_key: str | None = None, target_key: str | None = None) -> LanguageModeling:
    """The language-modeling task: next-token cross-entropy, token error, perplexity."""
    return LanguageModeling(input_key, target_key)


BUILT_IN = {"classification": Classification, "regression": Regression, "lm": LanguageModeling}


def task_from(spec, option: str = param("task")) -> Task:
    """The task a name or reference gives: "classification", "regression", or package.module:Name naming a Task
    object or a Task class built with no arguments (imported from the Python path); a Task is returned as it is.
    Raises ModeconnError (one line, naming `option`) for anything else."""
    if isinstance(spec, Task):
        return check_task(spec)
    if isinstance(spec, str) and spec in BUILT_IN:
        return BUILT_IN[spec]()
    if not is_reference(spec):
        raise ModeconnError(f"{option} {spec!r}: choose {' or '.join(BUILT_IN)}, or name your own Task as "
                            "package.module:Name")
    made = resolve(spec, option)
    if isinstance(made, type) and issubclass(made, Task):
        try:
            made = made()
        except TypeError as exc:
            raise ModeconnError(f"{option} {spec} cannot be built with no arguments ({exc}); name a Task object "
                                "instead") from None
    if not isinstance(made, Task):
        raise ModeconnError(f"{option} {spec} is a {type(made).__name__}, not a modeconn.Task or a subclass of it")
    return check_task(made)


def check_task(task) -> Task:
    """`task` if it is a Task; raises ModeconnError (one line) otherwise."""
    if not isinstance(task, Task):
        raise ModeconnError(f"a task must be a modeconn.Task (classification(), regression() or a subclass), got "
                            f"{type(task).__name__}")
    name = type(task).__name__
    metrics = task.metrics
    if isinstance(metrics, str) or not isinstance(metrics, Sequence) or not metrics or metrics[0] != "loss" \
            or not all(isinstance(m, str) and m.isidentifier() for m in metrics) or len(set(metrics)) != len(metrics) \
            or any(m.startswith(("train_", "test_", "ensemble_")) for m in metrics):
        raise ModeconnError(f"{name}.metrics must be a tuple of distinct names starting with 'loss' (identifiers, "
                            f"none starting train_, test_ or ensemble_: files prefix them), got {metrics!r}")
    derived = task.derived_metrics
    if isinstance(derived, str) or not isinstance(derived, Sequence) \
            or not all(isinstance(m, str) and m.isidentifier() for m in derived) \
            or len(set(task.all_metrics)) != len(task.all_metrics):
        raise ModeconnError(f"{name}.derived_metrics must be a tuple of names distinct from each other and from "
                            f"metrics, got {derived!r}")
    if not any("name" in vars(c) for c in type(task).__mro__ if c is not Task) or not isinstance(task.name, str) \
            or not task.name:
        raise ModeconnError(f"{name} must define name, a non-empty string (result settings record it)")
    missing = [m for m in ("loss", "sums") if getattr(type(task), m) is getattr(Task, m)]
    if missing:
        raise ModeconnError(f"{name} must define {' and '.join(missing)} (see modeconn.Task)")
    return task
