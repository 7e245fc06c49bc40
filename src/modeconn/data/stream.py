"""Data read batch by batch from DataLoaders, torch datasets or re-iterables, never held in memory as a whole.

`StreamedData` answers the questions every analysis asks of a `Dataset` (training batches in a seeded order,
BatchNorm batches, test batches, the input shape, the number of classes, the task) without stacking the data into
tensors, so data larger than memory can be used. Two kinds of source:

- **map-style** (a `torch.utils.data.Dataset` with `__len__` and `__getitem__`, or a `DataLoader` over one or over
  a list of examples): the
  examples are visited in exactly the order an in-memory `Dataset` of the same examples would use (the same seeded
  permutations, the same batch size), so a streamed analysis equals the in-memory one and a resumed run is
  bit-exact. A DataLoader keeps its workers, collate function and pinning; only its sampler and batch size are
  chosen here (how torch.utils.data.DataLoader is re-instantiated by PyTorch Lightning for the same reason).
- **iterable** (a DataLoader over an `IterableDataset`, or any object that can be iterated again and again and
  yields batches): its batches are used as it gives them, in its own order and batch size. Before each training
  epoch its `set_epoch(epoch)` is called where it has one (as `DistributedSampler` and webdataset's pipelines
  do), so its order can be a function of (seed, epoch); a source without one must yield the same order every
  time for a resume to be exact. Training on it needs `len()` (the learning-rate schedule counts steps).

Under torchrun every rank reads the same global batch and keeps its share of it (`distributed.shard_batch`), as
with data in memory: a sharded run then equals a single-process one, at the cost of each rank reading every batch.
A DataLoader's `DistributedSampler` is therefore replaced like its other default samplers (with it each rank would
keep a share of a share).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
    default_collate,
)

from ..errors import ModeconnError
from ..tasks import CLASSIFICATION, Task, check_task
from .order import epoch_generator, epoch_shuffle, fixed_order, worker_seed


def _map_tensors(item, fn):
    """A batch (tensor, tuple, list or dict of them) with `fn` applied to every tensor in it."""
    if isinstance(item, torch.Tensor):
        return fn(item)
    if isinstance(item, Mapping):
        return {k: _map_tensors(v, fn) for k, v in item.items()}
    if isinstance(item, (tuple, list)):
        return type(item)(_map_tensors(v, fn) for v in item)
    return item


def to_device(item, device: torch.device):
    """A batch with every tensor on `device`."""
    return _map_tensors(item, lambda t: t.to(device, non_blocking=True))


def _map_style(source) -> Any:
    """The map-style dataset behind `source` (itself, or a DataLoader's with the default samplers), or None for a
    source read as it gives its batches: an iterable one, or a DataLoader with a sampler or batch sampler of its
    own (a class-balancing sampler, say), which is kept."""
    if isinstance(source, DataLoader):
        # DistributedSampler counts as a default: modeconn deals each global batch to the ranks itself
        # batch_size=None (no batch sampler) is a default too: the rebuilt loader batches at the analysis's size
        default = (isinstance(source.sampler, (SequentialSampler, RandomSampler, DistributedSampler))
                   and (source.batch_sampler is None or type(source.batch_sampler) is BatchSampler))
        if not default:
            return None
    dataset = source.dataset if isinstance(source, DataLoader) else source
    if isinstance(source, DataLoader) and isinstance(dataset, Sequence) and not isinstance(dataset, (str, bytes)):
        return dataset  # a DataLoader over a list of examples (dicts of tensors, say) indexes it as a map-style one
    if isinstance(dataset, IterableDataset) or not isinstance(dataset, torch.utils.data.Dataset):
        return None
    if not hasattr(dataset, "__len__"):
        return None
    return dataset


def _collate_of(source):
    """The collate function a rebuilt loader batches `source`'s examples with: a DataLoader's own where it batches
    (without batching, batch_size=None, its collate_fn only converts one example), else torch's default."""
    return source.collate_fn if isinstance(source, DataLoader) and source.batch_sampler is not None else None


def _loader_settings(source) -> dict[str, Any]:
    """The settings of a user's DataLoader that a rebuilt one keeps (everything but the order and batching)."""
    if not isinstance(source, DataLoader):
        return {}
    keep: dict[str, Any] = {
            "num_workers": source.num_workers, "collate_fn": _collate_of(source), "pin_memory": source.pin_memory,
            "timeout": source.timeout, "worker_init_fn": source.worker_init_fn,
            "multiprocessing_context": source.multiprocessing_context,
            "persistent_workers": source.persistent_workers}
    if source.num_workers > 0:
        keep["prefetch_factor"] = source.prefetch_factor
    return keep


class _TensorBatches(torch.utils.data.Dataset):
    """A TensorDataset read a batch at a time: one gather per tensor, as data in memory is read, where the
    DataLoader would otherwise index and collate example by example (the cost that dominates small networks).
    The batches are those default_collate gives: a list [x, y, ...] of the same values."""

    def __init__(self, dataset: torch.utils.data.TensorDataset):
        self.tensors = dataset.tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, i):
        return [t[i] for t in self.tensors]

    def __getitems__(self, indices: list[int]):  # what the DataLoader's fetcher asks for a whole batch
        first = indices[0]
        if indices[-1] - first == len(indices) - 1 and indices == list(range(first, first + len(indices))):
            return [t[first:first + len(indices)] for t in self.tensors]  # in order: a view, no copy
        index = torch.as_tensor(indices)
        return [t[index] for t in self.tensors]


def _gathered(batch):
    """The collate function of `_TensorBatches`: its batch is already gathered."""
    return batch


def _batch_readable(dataset, settings: dict[str, Any]):
    """(dataset, settings) with a TensorDataset read by `_TensorBatches` where its collation is the default."""
    if type(dataset) is torch.utils.data.TensorDataset and settings.get("collate_fn") in (None, default_collate):
        return _TensorBatches(dataset), {**settings, "collate_fn": _gathered}
    return dataset, settings


class _Order(Sampler):
    """The indices one pass visits, drawn as `Batches` draws them (modeconn.data.order): range(n) or a fixed
    `order` (a subset), shuffled per epoch when `shuffle`. Lives inside one DataLoader for its lifetime, so
    persistent workers survive epochs."""

    def __init__(self, n: int, shuffle: bool, seed: int, order: torch.Tensor | None):
        self.n, self.shuffle, self.seed, self.order, self.epoch = n, shuffle, seed, order, 0

    def __len__(self) -> int:
        return self.n if self.order is None else len(self.order)

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.n) if self.order is None else self.order.tolist())
        perm = epoch_shuffle(len(self), epoch_generator(self.seed, self.epoch))
        self.epoch += 1
        return iter((perm if self.order is None else self.order[perm]).tolist())


class UnknownLength(ModeconnError, TypeError):
    """An iterable source whose number of batches is not known. A TypeError too, so that `list(batches)` (which
    asks for a length only as a hint) still reads it; training, which needs the count, gets this one line."""


class StreamBatches:
    """An iterable of batches from a streamed source, moved to the data's device; the same interface as `Batches`
    (`len()`, `set_epoch`). Map-style sources are read in `_Order`'s order; iterable ones as they give them,
    the first `limit` examples when a limit is given."""

    def __init__(self, loader, device, check, limit: int | None = None, sampler: _Order | None = None):
        self.loader, self.device, self.check, self.limit, self.sampler = loader, device, check, limit, sampler

    def __len__(self) -> int:
        if self.sampler is not None:
            return math.ceil(len(self.sampler) / self.loader.batch_size)
        try:
            n = len(self.loader)
        except TypeError:
            raise UnknownLength("a data source without len() cannot be trained on: the learning-rate schedule "
                                "counts the steps of an epoch; give it __len__ (the number of batches it yields)"
                                ) from None
        if self.limit is not None:
            raise UnknownLength("a part of an iterable source (a training subset) cannot be trained on: how many "
                                "batches it holds is not known before reading it; train on the whole source")
        return n

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next iteration uses: the seeded shuffle, or the source's own
        `set_epoch` (DistributedSampler, webdataset) where it has one."""
        if self.sampler is not None:
            self.sampler.epoch = epoch
            return
        for holder in (self.loader, getattr(self.loader, "sampler", None), getattr(self.loader, "dataset", None)):
            if holder is not None and callable(getattr(holder, "set_epoch", None)):
                holder.set_epoch(epoch)
                return

    def __iter__(self):
        if self.sampler is not None:
            # The DataLoader draws its workers' base seed from its generator, or from the global random state
            # where it has none (which would shift dropout masks): a generator seeded by (seed, epoch) keeps the
            # global state untouched and a worker's randomness a function of the epoch, so a resume is exact.
            self.loader.generator.manual_seed(worker_seed(self.sampler.seed, self.sampler.epoch))
        if self.limit is None or self.sampler is not None:
            for item in self.loader:
                self.check(item)
                yield to_device(item, self.device)
            return
        left = self.limit
        for item in self.loader:
            if left <= 0:
                return
            n = _examples_in(item)
            if n > left:
                item = _first(item, left)
                n = left
            left -= n
            self.check(item)
            yield to_device(item, self.device)


def _examples_in(item) -> int:
    """How many examples a batch holds: the length of its first tensor."""
    if isinstance(item, torch.Tensor):
        return len(item)
    values = item.values() if isinstance(item, Mapping) else item
    for v in values:
        if isinstance(v, torch.Tensor):
            return len(v)
    raise ModeconnError(f"a batch holds no tensors (got a {type(item).__name__}); yield tensors")


def _first(item, n: int):
    """The first n examples of a batch (every tensor in it cut to n rows)."""
    return _map_tensors(item, lambda t: t[:n])


class StreamedData:
    """Train and test data read batch by batch from `train` and `test` sources, and the task that reads them; used
    wherever an analysis takes a `Dataset` (see this module's docstring for the order the examples are read in).

    train, test: a `DataLoader`, a map-style torch `Dataset` of examples (read through a DataLoader with its
    default collate), or a re-iterable of batches. num_classes: the model's output width; by default the length
    of the training dataset's `classes` (as torchvision's `ImageFolder` has), or for floating-point targets the
    number of target values per example. Nothing is read when it is made except the first batch of each split
    (the input shape, and the targets' check by the task).

    Raises ModeconnError (one line) where a first batch is one the task cannot read, or classification data gives
    no number of classes.
    """

    train_transform = None  # a stream's augmentation, if any, is its own: in its dataset or DataLoader

    def __init__(self, name: str, train, test, num_classes: int | None = None, task: Task = CLASSIFICATION):
        check_task(task)
        for split, source in (("training", train), ("test", test)):
            if not isinstance(source, Iterable) and _map_style(source) is None:
                raise ModeconnError(f"the {split} source is a {type(source).__name__}: give a DataLoader, a torch "
                                    "Dataset or a re-iterable of batches")
            if iter(source) is source:
                raise ModeconnError(f"the {split} source is an iterator, which can be read only once; give a "
                                    "DataLoader, a Dataset or a re-iterable of batches (e.g. a list)")
        self.name, self.train, self.test, self.task = name, train, test, task
        self.device = torch.device("cpu")  # where batches are moved as they are read (`to`)
        self.train_limit: int | None = None
        self.test_limit: int | None = None
        first_train = self._first_batch(train, "training")
        first_test = self._first_batch(test, "test")
        self.input_shape: tuple[int, ...] = tuple(task.split(first_train)[0].shape[1:])
        self._example = task.split(first_test)[0][:2]  # kept: tracing and shape checks ask for it again
        if num_classes is None:
            num_classes = self._num_classes(train, task.split(first_train)[1])
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ModeconnError(f"num_classes (the model's output width) must be a positive integer, got "
                                f"{num_classes!r}")
        self.num_classes = num_classes
        for item, split in ((first_train, "training"), (first_test, "test")):
            self._check_batch(item, split)

    @staticmethod
    def _first_batch(source, split: str):
        dataset = _map_style(source)
        if dataset is not None and len(dataset) == 0:
            raise ModeconnError(f"the {split} split holds no examples; give it at least one")
        if dataset is None:
            loader = source
        else:  # two examples, through the source's own collate function where it is a DataLoader
            loader = DataLoader(dataset, batch_size=2, collate_fn=_collate_of(source))
        for item in loader:
            return item
        raise ModeconnError(f"the {split} split holds no examples; give it at least one")

    @staticmethod
    def _num_classes(train, targets) -> int:
        targets = torch.as_tensor(targets)
        if targets.is_floating_point():
            return int(targets[0].numel())
        classes = getattr(train.dataset if isinstance(train, DataLoader) else train, "classes", None)
        if classes is not None:
            return len(classes)
        raise ModeconnError("give num_classes for streamed classification data (StreamedData(..., num_classes=N); "
                            "from a --dataset callable, a mapping with train, test and num_classes): a stream is "
                            "not read in full to find its largest label")

    # The interface every analysis reads (the same as Dataset's).

    @property
    def train_size(self) -> int | None:
        """The number of training examples, where the source knows it."""
        dataset = _map_style(self.train)
        n = len(dataset) if dataset is not None else None
        return n if self.train_limit is None or n is None else min(n, self.train_limit)

    def example_input(self, n: int = 2) -> torch.Tensor:
        """The inputs of the first `n` (at most 2) test examples, on the data's device (for shape checks and
        tracing): read when the data was made."""
        return self._example[:n].to(self.device)

    def to(self, device) -> StreamedData:
        """The same sources, with every batch moved to `device` as it is read."""
        moved = copy.copy(self)
        moved.device = torch.device(device)
        return moved

    def subset(self, train: int | None = None, test: int | None = None) -> StreamedData:
        """The first `train` training and first `test` test examples (all when None)."""
        cut = copy.copy(self)
        cut.train_limit = train if train is not None else self.train_limit
        cut.test_limit = test if test is not None else self.test_limit
        return cut

    def with_task(self, task: Task) -> StreamedData:
        """The same sources, read by another task."""
        return StreamedData(self.name, self.train, self.test, self.num_classes, task)

    def _batches(self, source, split: str, limit: int | None, batch_size: int, shuffle: bool = False,
                 seed: int = 0, order: torch.Tensor | None = None) -> StreamBatches:
        if batch_size < 1:
            raise ModeconnError(f"batch size must be >= 1, got {batch_size}")
        dataset = _map_style(source)
        check = lambda item: self._check_batch(item, split)  # noqa: E731
        if dataset is None:
            return StreamBatches(source, self.device, check, limit)
        n = len(dataset) if limit is None else min(len(dataset), limit)
        sampler = _Order(n, shuffle, seed, order)
        dataset, settings = _batch_readable(dataset, _loader_settings(source))
        loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, generator=torch.Generator(), **settings)
        return StreamBatches(loader, self.device, check, sampler=sampler)

    def _first_of_iterable(self, limit: int | None) -> int | None:
        """How many training examples a pass over an iterable source reads: the first `limit` of those `subset`
        kept (all when neither is given)."""
        return min((k for k in (limit, self.train_limit) if k is not None), default=None)

    def _check_batch(self, item, split: str) -> None:
        """Refuse, in one line, a batch no analysis could measure, as a Dataset refuses such data when it is made;
        read on the CPU as it comes from the source (a stream is never read ahead of its use)."""
        x, y = self.task.split(item)
        if isinstance(x, torch.Tensor):
            if tuple(x.shape[1:]) != self.input_shape:
                raise ModeconnError(f"a {split} batch has inputs of shape {tuple(x.shape[1:])}, the first one "
                                    f"{self.input_shape}: give every example of both splits the same shape")
            if x.is_floating_point() and not bool(torch.isfinite(x).all()):
                raise ModeconnError(f"a {split} batch holds NaN or infinite inputs; drop or fix those examples")
        self.task.check_targets(torch.as_tensor(y), self.num_classes, f"{split} batch's")

    def train_batches(self, batch_size: int, shuffle: bool = True, seed: int = 0, limit: int | None = None):
        """Batches of the training split: shuffled with seed + epoch for training, in order for evaluation; of a
        fixed random `limit` examples (drawn with `seed`) when given. The same examples in the same order as
        `Dataset.train_batches` for a map-style source; an iterable one is read in its own order, its first
        `limit` examples."""
        n = self.train_size
        if n is None:
            return self._batches(self.train, "training", self._first_of_iterable(limit), batch_size)
        keep = fixed_order(n, seed)[:limit] if limit is not None and limit < n else None
        return self._batches(self.train, "training", self.train_limit, batch_size, shuffle, seed, keep)

    def bn_batches(self, batch_size: int, seed: int = 0, limit: int | None = None):
        """Batches of the training split for BatchNorm recomputation, in the seeded random order of
        `Dataset.bn_batches` (a map-style source; an iterable one is read in its own order), `limit` examples."""
        n = self.train_size
        if n is None:
            return self._batches(self.train, "training", self._first_of_iterable(limit), batch_size)
        return self._batches(self.train, "training", self.train_limit, batch_size, order=fixed_order(n, seed)[:limit])

    def test_batches(self, batch_size: int = 1000):
        """Batches of the test split, in order."""
        return self._batches(self.test, "test", self.test_limit, batch_size)
