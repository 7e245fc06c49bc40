"""Datasets as tensors in memory, by name; nothing is downloaded."""
from __future__ import annotations

from collections.abc import Mapping

from ..errors import ModeconnError, param
from ..object_ref import is_reference, one_line, resolve
from ..tasks import CLASSIFICATION, task_from
from .datasets import Batches, Dataset, DataSource, from_torch, tensors_from
from .fashion import FASHION_MNIST_DIR, load_fashion_mnist, load_fashion_mnist_32
from .fortunes import FORTUNES_DIR, load_fortunes
from .mnist1d import load_mnist1d
from .stream import StreamedData


def _cifar(name):
    def load(data_dir):
        from .cifar import load_cifar

        return load_cifar(name, data_dir)
    return load


LOADERS = {"mnist1d": lambda data_dir: load_mnist1d(), "fashion-mnist": load_fashion_mnist,
           "fashion-mnist-32": load_fashion_mnist_32,
           "cifar10": _cifar("cifar10"), "cifar100": _cifar("cifar100"),
           "fortunes": lambda data_dir: load_fortunes("fortunes", data_dir)}
GENERATED = {"mnist1d"}  # made in memory: a --data-dir means nothing for these
# datasets whose name takes settings after a slash (fortunes/only=science): the loader reads the whole name
PARAMETERISED = {"fortunes": load_fortunes}


def family(name: str) -> str:
    """The dataset a name belongs to: `fortunes` for fortunes/only=science, the name itself otherwise."""
    head = name.split("/", 1)[0] if isinstance(name, str) else name
    return head if head in PARAMETERISED else name


def load_dataset(name: str, data_dir: str | None = None, task: str | None = None, recorded_in=None) -> DataSource:
    """Load a dataset by name: 'mnist1d' (generated), 'fashion-mnist'/'fashion-mnist-32' (IDX files),
    'cifar10'/'cifar100', 'fortunes' (English text for language modeling; topics selected as in
    `fortunes/only=science`, see modeconn.data.fortunes), or your own, named `package.module:callable` (see
    `user_dataset`).

    task: None (the data's own: classification, or what your callable names), "classification", "regression", or
    a Task's package.module:Name (`tasks.task_from`). recorded_in: the run.json that names `name` and `task`, for
    the errors (a command that reads a run has no --dataset of its own). Raises ModeconnError (one line) for an
    unknown name, a data folder a generated dataset does not read, or data the task cannot read.
    """
    if is_reference(name):
        return user_dataset(name, data_dir, task, recorded_in)
    if family(name) not in LOADERS:
        raise ModeconnError(f"unknown dataset {name!r}: choose one of {', '.join(LOADERS)}, or name your own as "
                            "package.module:callable")
    if data_dir is not None and name in GENERATED:
        raise ModeconnError(f"{name} is generated in memory and reads no files: leave out {param('data_dir')}")
    data = PARAMETERISED[family(name)](name, data_dir) if family(name) in PARAMETERISED else LOADERS[name](data_dir)
    return data if task is None else data.with_task(task_from(task, _named("task", recorded_in)))


def _named(field: str, recorded_in) -> str:
    """How an error names a dataset or task: the option, or the run.json field it was read from."""
    return param(field) if recorded_in is None else f"{recorded_in}'s {field}"


def user_dataset(reference: str, data_dir: str | None = None, task: str | None = None,
                 recorded_in=None) -> DataSource:
    """The data your callable (package.module:callable, imported from the Python path) returns.

    The callable is called with `data_dir=` where its signature takes it (and a data folder is refused where it
    does not), and returns a `Dataset`, a pair `(train, test)`, or a mapping with `train`, `test` and optionally
    `task` (a Task, or "classification"/"regression") and `num_classes`. A Dataset is used as it is, in memory;
    train and test otherwise are DataLoaders, torch datasets or re-iterables of batches, read batch by batch
    and never held in memory (`StreamedData`). `task` (a name or reference, `tasks.task_from`)
    overrides the data's own. Raises ModeconnError (one line) where the callable cannot be imported, raises, or
    returns something else; a reference read from a run says which run.json names it (`recorded_in`).
    """
    import inspect

    label = _named("dataset", recorded_in)
    keep = (" (a run calls the data it was made with again: keep its module where it was, on the Python path)"
            if recorded_in is not None else "")
    try:
        source = resolve(reference, label)
    except ModeconnError as exc:
        raise ModeconnError(f"{exc.args[0]}{keep}") from None  # args[0]: its options still marked
    if not callable(source):
        raise ModeconnError(f"{label} {reference} is a {type(source).__name__}, not a callable that returns data")
    try:
        takes_dir = "data_dir" in inspect.signature(source).parameters
    except (TypeError, ValueError):
        takes_dir = False
    if data_dir is not None and not takes_dir:
        raise ModeconnError(f"{label} {reference} takes no data_dir argument: leave out {param('data_dir')}")
    try:
        made = source(data_dir=data_dir) if takes_dir else source()
    except ModeconnError as exc:  # data it built was refused (a StreamedData, a Dataset): that reason, as it is
        raise ModeconnError(f"{label} {reference}: {exc.args[0]}{keep}") from None
    except Exception as exc:  # the user's code failed: say how, in one line
        raise ModeconnError(f"{label} {reference}: calling it failed: {one_line(exc)}{keep}") from None
    given = task_from(task, _named("task", recorded_in)) if task is not None else None
    if isinstance(made, (Dataset, StreamedData)):
        return made if given is None else made.with_task(given)
    if isinstance(made, Mapping) and not {"train", "test"} <= set(made):
        missing = " and ".join(k for k in ("train", "test") if k not in made)
        raise ModeconnError(f"{label} {reference} returned a mapping without {missing}: it must hold train and test "
                            "(and optionally task and num_classes)")
    if isinstance(made, Mapping):
        extra = set(made) - {"train", "test", "task", "num_classes"}
        if extra:
            raise ModeconnError(f"{label} {reference} returned a mapping with {', '.join(map(str, extra))}: it "
                                "may hold train, test, task and num_classes")
        own = made.get("task")
        if given is None and own is not None:
            given = task_from(own, f"the task entry of what {reference} returned")
        return StreamedData(reference, made["train"], made["test"], made.get("num_classes"),
                            task=given or CLASSIFICATION)
    if isinstance(made, (tuple, list)) and len(made) == 2:
        return StreamedData(reference, made[0], made[1], task=given or CLASSIFICATION)
    raise ModeconnError(f"{label} {reference} returned a {type(made).__name__}: return a Dataset, a pair "
                        "(train, test), or a mapping with train and test")


__all__ = ["Batches", "DataSource", "Dataset", "StreamedData", "FASHION_MNIST_DIR", "FORTUNES_DIR", "GENERATED",
           "LOADERS",
           "family", "from_torch", "load_dataset", "load_fortunes",
           "load_fashion_mnist", "load_fashion_mnist_32", "load_mnist1d", "tensors_from"]
