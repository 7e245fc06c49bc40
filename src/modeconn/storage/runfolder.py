"""Run folders: a typed reader for run.json, loading networks and curves back, and claiming an output folder.

Every command that takes networks goes through `load_endpoints`, which checks once that they
share a dataset and an architecture and hold finite floating-point weights.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..core.curve import Curve
from ..core.families import FAMILIES
from ..core.flat import check_same_architecture
from ..core.simplex import Simplex
from ..data import DataSource, load_dataset
from ..errors import ModeconnError, param
from ..models import create_model, input_note
from ..runtime import distributed
from .checkpoint import check_settings
from .files import load_state_into, load_tensors, make_dir, read_json, write_json
from .lock import LOCK_NAME, FolderLock, folder_in_use, lock_owner

CHECKPOINT = "checkpoint.safetensors"
WEIGHT_NAMES = ("model.safetensors", "model.pt")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model: registry name and constructor arguments."""

    name: str
    kwargs: dict
    input_shape: tuple[int, ...] | None = None  # what the run's network was built for, where run.json says
    num_classes: int | None = None

    def build(self, data: DataSource) -> nn.Module:
        """The model for this dataset's input shape and classes. Raises ModeconnError where the run recorded
        other ones: data given in place of the run's (`--dataset`) must hold the same inputs and targets."""
        recorded = (self.input_shape, self.num_classes)
        if self.input_shape is not None and recorded != (tuple(data.input_shape), data.num_classes):
            raise ModeconnError(
                f"{data.name} gives inputs of shape {tuple(data.input_shape)} with num_classes {data.num_classes} "
                f"(the output width), but the network was made for {self.input_shape} with num_classes "
                f"{self.num_classes}: pass data with "
                f"the same inputs and targets as the run's")
        try:
            return create_model(self.name, data.input_shape, data.num_classes, data.task, data.example_input(),
                                **self.kwargs)
        except TypeError as exc:  # constructor arguments from a run.json that this model does not take
            raise ModeconnError(f"model {self.name!r} cannot be built with kwargs {self.kwargs} ({exc}); "
                                "fix model.kwargs in run.json or rerun the command that wrote it") from None

    def to_dict(self, data: DataSource) -> dict:
        """run.json's `model`: name, kwargs, input_shape, num_classes, and `input` where the inputs are adapted
        before the model sees them (gray images for an RGB torchvision model)."""
        note = input_note(self.name, data.input_shape)
        return {"name": self.name, "kwargs": self.kwargs, "input_shape": list(data.input_shape),
                "num_classes": data.num_classes, **({"input": note} if note else {})}


@dataclass(frozen=True)
class CurveSpec:
    """A curve run's family, number of bends and whether its endpoints were trained."""

    kind: str
    bends: int
    free_endpoints: bool


@dataclass(frozen=True)
class RunInfo:
    """The record of a run folder (kinds network, curve, simplex): its run.json checked field by field, with
    the fields every run has typed and `raw` keeping every field (a simplex's vertices and volume, a curve's
    length and midpoint metrics, ...). Commands that make a run return it."""

    path: Path
    kind: str
    dataset: str
    model: ModelSpec
    wd: float
    data_dir: str | None
    curve: CurveSpec | None
    raw: dict

    @property
    def task(self) -> str | None:
        """The task the run was trained for as given (`--task`: a name or package.module:Name), None for its data's
        own (classification unless the data names another)."""
        return self.raw.get("task")

    HEADLINE = ("midpoint_test_ppl", "midpoint_test_err", "midpoint_test_loss", "centroid_test_ppl",
                "centroid_test_err", "test_ppl", "test_err", "test_loss")

    def metrics(self) -> dict[str, float]:
        """The headline test metrics it records (a curve's midpoint, a simplex's centroid, a network's own)."""
        return {k: float(self.raw[k]) for k in self.HEADLINE
                if isinstance(self.raw.get(k), (int, float)) and not isinstance(self.raw.get(k), bool)}

    @classmethod
    def read(cls, path) -> RunInfo:
        """`read_run`: a run folder's run.json (or the file itself), checked field by field."""
        return read_run(path)

    def write(self, folder) -> Path:
        """`write_run`: this record as FOLDER/run.json, checked first; returns the path."""
        write_run(folder, self.raw)
        return Path(folder) / "run.json"

    def describe(self) -> str:
        """One line: kind, model, dataset, curve family and headline metrics."""
        curve = f", {self.curve.kind} curve, {self.curve.bends} bend(s)" if self.curve else ""
        metrics = "".join(f", {k} {v:.4f}" for k, v in self.metrics().items())
        return f"{self.kind} run of {self.model.name} on {self.dataset}{curve}{metrics}"


def _field(obj: dict, key: str, types, path: Path, where: str = "", optional: bool = False):
    """obj[key], refusing a missing field or one of the wrong type by file and field name."""
    name = f"{where}{key}"
    if key not in obj:
        if optional:
            return None
        raise ModeconnError(f"{path}: field {name!r} is missing; rerun the command that wrote it")
    value = obj[key]
    if types is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, types) or (types is int and isinstance(value, bool)):
        label = {str: "a string", int: "an integer", float: "a number", dict: "an object", list: "a list",
                 bool: "true or false"}.get(types, str(types))
        raise ModeconnError(f"{path}: field {name!r} must be {label}, got {type(value).__name__} {value!r:.40}; "
                            "rerun the command that wrote it")
    return value


def read_run(folder) -> RunInfo:
    """Read and check FOLDER/run.json (FOLDER may also be the run.json itself)."""
    folder = Path(folder)
    if folder.is_file() and folder.name != "run.json":
        raise ModeconnError(f"{folder} is a file, not a run folder: pass the folder modeconn wrote "
                            "(the one holding run.json"
                            f"{', e.g. ' + str(folder.parent) if (folder.parent / 'run.json').exists() else ''})")
    path = folder if folder.name == "run.json" else folder / "run.json"
    return _parse_run(read_json(path), path)


def write_run(folder, raw: dict) -> RunInfo:
    """Write FOLDER/run.json atomically: the one place a network, curve or simplex run's record is written.

    Its fields are checked as `read_run` checks them first, so a run.json that was written always reads back;
    returns its RunInfo. Raises ModeconnError for a record `read_run` would refuse (nothing written)."""
    path = Path(folder) / "run.json"
    info = _parse_run(raw, path)
    write_json(path, raw)
    return info


def _parse_run(raw, path: Path) -> RunInfo:
    """The typed view of a decoded run.json, checked field by field."""
    if not isinstance(raw, dict):
        raise ModeconnError(f"{path} must hold a JSON object, got {type(raw).__name__}; "
                            "rerun the command that wrote it")
    kind = _field(raw, "kind", str, path)
    if kind not in ("network", "curve", "simplex"):
        raise ModeconnError(f"{path}: field 'kind' must be 'network', 'curve' or 'simplex', got {kind!r}")
    dataset = _field(raw, "dataset", str, path)
    model = _field(raw, "model", dict, path)
    shape = _field(model, "input_shape", list, path, "model.", optional=True)
    classes = _field(model, "num_classes", int, path, "model.", optional=True)
    spec = ModelSpec(_field(model, "name", str, path, "model."),
                     _field(model, "kwargs", dict, path, "model.", optional=True) or {},
                     tuple(shape) if shape is not None and all(isinstance(d, int) for d in shape) else None,
                     classes if shape is not None else None)
    config = _field(raw, "config", dict, path)
    wd = _field(config, "wd", float, path, "config.")
    for key, types in (("seed", int), ("epochs_trained", int), ("made_with", dict), ("test_err", float),
                       ("test_loss", float), ("train_err", float), ("train_loss", float)):
        value = _field(raw, key, types, path, optional=True)  # optional, but of its type where present
        if types is int and value is not None and value < 0:
            raise ModeconnError(f"{path}: field {key!r} must be >= 0, got {value}; rerun the command that wrote it")
    data_dir = raw.get("data_dir")
    if data_dir is not None and not isinstance(data_dir, str):
        raise ModeconnError(f"{path}: field 'data_dir' must be a string or null, got {type(data_dir).__name__}")
    if raw.get("task") is not None and not isinstance(raw["task"], str):
        raise ModeconnError(f"{path}: field 'task' must be a task's name or package.module:Name, got "
                            f"{type(raw['task']).__name__}")
    curve = None
    if kind == "curve":
        c = _field(raw, "curve", dict, path)
        curve = CurveSpec(_field(c, "kind", str, path, "curve."), _field(c, "bends", int, path, "curve."),
                          _field(c, "free_endpoints", bool, path, "curve."))
        if curve.kind not in FAMILIES or curve.bends < 0:
            raise ModeconnError(f"{path}: field 'curve' holds an unknown family {curve.kind!r} or bends "
                                f"{curve.bends} < 0; rerun `modeconn connect`")
    return RunInfo(path, kind, dataset, spec, wd, data_dir, curve, raw)


@dataclass(frozen=True)
class NetworkSource:
    """One network named on the command line: its weights file and what it is."""

    given: str
    weights: Path
    dataset: str
    model: ModelSpec
    info: RunInfo | None

    @property
    def wd(self) -> float:
        """The weight decay it was trained with (0 when unknown: train_objective is then plain loss)."""
        return self.info.wd if self.info else 0.0

    @property
    def task(self) -> str | None:
        """The task its run.json names (None: its data's own)."""
        return self.info.task if self.info else None


def describe_network(path, dataset: str | None = None, model: str | None = None,
                     fallback_model: str | None = None) -> NetworkSource:
    """A run folder or a weights file (.safetensors, .pt), with its run.json when there is one beside it.

    `dataset` and `model` override what run.json says; `fallback_model` is the architecture of a weights
    file without run.json when `model` is not given (the command's choice: the dataset's recipe's).
    Raises ModeconnError (one line) for a missing path, a run of another kind or an undescribed file.
    """
    path = Path(path)
    if not path.exists():
        raise ModeconnError(f"{path} does not exist: pass a run folder or a weights file")
    run_json = (path if path.is_dir() else path.parent) / "run.json"
    info = read_run(run_json) if run_json.exists() else None
    if info is not None and info.kind != "network":
        raise ModeconnError(f"{path} is a {info.kind} run, not a network: pass a folder written by `modeconn train`")
    if path.is_dir():
        weights = next((path / n for n in WEIGHT_NAMES if (path / n).exists()), None)
        if weights is None:
            raise ModeconnError(f"{path} holds no model.safetensors: point at a folder written by `modeconn train`")
    elif path.suffix not in (".safetensors", ".pt", ".pth"):
        raise ModeconnError(f"{path} is not a weights file (.safetensors or .pt) or a run folder")
    else:
        weights = path
    ds = dataset or (info.dataset if info else None)
    if ds is None:
        raise ModeconnError(f"{path} has no run.json beside it: pass {param('dataset')} (and {param('model')}) "
                            "to say what it is")
    named = model or (fallback_model if info is None else None)
    if named:
        spec = ModelSpec(named, {})
    elif info is not None:
        spec = info.model
    else:  # the default architecture is the command's to choose (the dataset's recipe), not storage's
        raise ModeconnError(f"{path} has no run.json beside it: pass {param('model')} to say which architecture "
                            "it holds")
    return NetworkSource(str(path), weights, ds, spec, info)


def load_network(source, data: DataSource, device="cpu", model: str | None = None) -> nn.Module:
    """Build a network (a NetworkSource, or a run folder or weights file of `data`) and load its weights safely.

    `model` names the architecture of a weights file without run.json (a registry name); a run folder's
    run.json says it. Raises ModeconnError (one line) for a file it cannot describe or load.
    """
    if not isinstance(source, NetworkSource):
        source = describe_network(source, dataset=data.name, model=model)
    net = source.model.build(data)
    load_state_into(net, load_tensors(source.weights), str(source.weights))
    return net.to(device)


@dataclass
class Endpoints:
    """Networks that share a dataset and an architecture, loaded on one device, with that dataset."""

    nets: list[nn.Module]
    sources: list[NetworkSource]
    data: DataSource
    data_dir: str | None

    @property
    def dataset(self) -> str:
        return self.sources[0].dataset

    @property
    def model(self) -> ModelSpec:
        return self.sources[0].model


def describe_endpoints(paths, dataset: str | None = None, model: str | None = None,
                       fallback_model: str | None = None) -> list[NetworkSource]:
    """Describe every network (as `describe_network`) and check they name one dataset and one model (before any
    loading)."""
    sources = [describe_network(p, dataset, model, fallback_model) for p in paths]
    first = sources[0]
    for other in sources[1:]:
        if other.dataset != first.dataset:
            raise ModeconnError(f"{first.given} was trained on {first.dataset} but {other.given} on {other.dataset}; "
                                f"pass networks of one dataset (or {param('dataset')} to choose one)")
        if other.task != first.task:
            raise ModeconnError(f"{first.given} was trained for {first.task or 'the task of its data'} but "
                                f"{other.given} for {other.task or 'the task of its data'}; pass networks of one task")
        if other.model.name != first.model.name:
            raise ModeconnError(f"{first.given} is a {first.model.name} but {other.given} a {other.model.name}: they "
                                "have different architectures; use networks built by the same model")
    return sources


def _record_of(source: NetworkSource):
    """The run.json a network's dataset and task were read from (None: given as options, or no run.json)."""
    recorded = source.info is not None and source.info.dataset == source.dataset
    return source.info.path if recorded and source.info is not None else None


def load_endpoints(sources: list[NetworkSource], data_dir: str | None = None, device="cpu") -> Endpoints:
    """Load described networks and their dataset once; refuses different architectures by parameter name."""
    first = sources[0]
    recorded = _record_of(first)  # the run's own dataset: its recorded folder applies (not to another dataset)
    data_dir = data_dir or (first.info.data_dir if first.info is not None and recorded is not None else None)
    data = load_dataset(first.dataset, data_dir, first.task, recorded).to(device)
    nets = [load_network(s, data, device) for s in sources]
    for s, net in zip(sources[1:], nets[1:]):
        check_same_architecture(nets[0].state_dict(), net.state_dict(), what=(first.given, s.given))
    return Endpoints(nets, sources, data, data_dir)


def trajectory_states(run_dir) -> list[tuple[int, Path]]:
    """A network run's kept epochs (OUT/epochN, `train --keep-epochs/--keep-every`) and its final state,
    as (epoch, folder) in training order."""
    run_dir = Path(run_dir)
    final = describe_network(run_dir)
    if not run_dir.is_dir() or final.info is None:
        raise ModeconnError(f"{run_dir} is not a network run folder: pass a folder written by `modeconn train`")
    kept = []
    for folder in run_dir.glob("epoch*"):
        if folder.name[5:].isdigit() and (folder / "run.json").exists():
            kept.append((int(folder.name[5:]), folder))
    epochs = final.info.raw.get("epochs_trained")
    return sorted(kept) + [(epochs if isinstance(epochs, int) else len(kept) + 1, run_dir)]


def read_curve_run(run_dir) -> RunInfo:
    """A curve run's run.json, refusing any other kind of folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ModeconnError(f"{run_dir} is not a folder: pass a curve run folder written by `modeconn connect`")
    info = read_run(run_dir)
    if info.kind != "curve":
        raise ModeconnError(f"{run_dir} is not a curve run (run.json kind is {info.kind!r}); "
                            "make one with `modeconn connect`")
    if not (run_dir / "curve.safetensors").exists():
        raise ModeconnError(f"{run_dir} has no curve.safetensors: the curve run did not finish; rerun connect")
    return info


def _data_and_template(info: RunInfo, data_dir: str | None, device, dataset: str | None = None
                       ) -> tuple[DataSource, nn.Module]:
    """A run's dataset, or `dataset` in its place (the same inputs and targets read another way, or a shifted test
    set), on `device`, and a freshly built network of its model, to load weights into."""
    if dataset is not None:
        data = load_dataset(dataset, data_dir, info.task).to(device)
    else:
        data = load_dataset(info.dataset, data_dir or info.data_dir, info.task, info.path).to(device)
    return data, info.model.build(data)


def load_curve(run_dir, device="cpu", data_dir: str | None = None, dataset: str | None = None
               ) -> tuple[Curve, RunInfo, DataSource]:
    """Load a curve run folder: the Curve, its run.json and its dataset, or `dataset` in its place (on `device`)."""
    info = read_curve_run(run_dir)
    data, template = _data_and_template(info, data_dir, device, dataset)
    c = info.curve
    assert c is not None  # read_curve_run refuses any run but a curve run, and read_run fills curve for those
    curve = Curve(template, template, kind=c.kind, bends=c.bends, free_endpoints=c.free_endpoints)
    file = Path(run_dir) / "curve.safetensors"
    load_state_into(curve, load_tensors(file), str(file))
    return curve.to(device), info, data


def read_simplex_run(run_dir) -> RunInfo:
    """Read a simplex run's run.json, refusing any other kind of run by name."""
    info = read_run(run_dir)
    if info.kind != "simplex":
        raise ModeconnError(f"{run_dir} is a {info.kind} run, not a simplex: "
                            "pass a folder written by `modeconn simplex`")
    if _field(info.raw, "vertices", int, info.path) < 2:
        raise ModeconnError(f"{info.path}: field 'vertices' must be >= 2; rerun `modeconn simplex`")
    if not (Path(run_dir) / "simplex.safetensors").exists():
        raise ModeconnError(f"{run_dir} has no simplex.safetensors: the simplex run did not finish; rerun simplex")
    return info


def load_simplex(run_dir, device="cpu", data_dir: str | None = None, dataset: str | None = None
                 ) -> tuple[Simplex, RunInfo, DataSource]:
    """Load a simplex run folder: the Simplex, its run.json and its dataset, or `dataset` in its place (on
    `device`)."""
    info = read_simplex_run(run_dir)
    data, template = _data_and_template(info, data_dir, device, dataset)
    file = Path(run_dir) / "simplex.safetensors"
    state = load_tensors(file)
    fixed = state.get("fixed_mask")
    if fixed is None or fixed.dtype != torch.bool or fixed.numel() != info.raw["vertices"]:
        raise ModeconnError(f"{file} does not hold a simplex of {info.raw['vertices']} vertices; "
                            "rerun `modeconn simplex`")
    faces = state.get("face_mask")
    if faces is None:  # written before complexes: one face of every vertex
        faces = state["face_mask"] = torch.ones(1, fixed.numel(), dtype=torch.bool, device="cpu")
    if faces.dtype != torch.bool:
        raise ModeconnError(f"{file}: face_mask holds {faces.dtype} values where a simplex file holds booleans; "
                            "rerun `modeconn simplex`")
    if faces.dim() != 2 or faces.shape[1] != fixed.numel():
        raise ModeconnError(f"{file} holds faces of shape {tuple(faces.shape)} for {fixed.numel()} vertices; "
                            "rerun `modeconn simplex`")
    try:
        shape = Simplex([template] * info.raw["vertices"], free=[not f for f in fixed.tolist()],
                        faces=[torch.nonzero(row).flatten().tolist() for row in faces])
    except ModeconnError as exc:  # an empty face, say: name the file that holds it
        raise ModeconnError(f"{file}: {exc}; rerun `modeconn simplex`") from None
    load_state_into(shape, state, str(file))
    return shape.to(device), info, data


def check_unfinished(out: Path, finished: str | None, resume: bool = False, settings: dict | None = None,
                     force: bool | None = None) -> None:
    """Refuse OUT when it holds a finished result (`finished`, a file name in OUT, replaced only with `force`;
    force None: the command offers no --force, as for runs) or an unfinished run without `resume`; check a
    resumed run's settings.

    Writes nothing: commands call it at the door to refuse early (a folder another process is using is
    refused as that, naming its pid), and `claim_output` checks again under the folder's lock, where it counts.
    """
    out = Path(out)
    owner = lock_owner(out)
    if owner is not None:
        raise folder_in_use(out, owner)
    _check_state(out, finished, resume, settings, force)


def _check_state(out: Path, finished: str | None, resume: bool, settings: dict | None, force: bool | None) -> None:
    if finished is not None and (out / finished).exists():
        if force is None:
            raise ModeconnError(f"{out} already holds a finished run ({finished}); choose another {param('out')}")
        if not force:
            raise ModeconnError(f"{out / finished} exists; pass {param('force')} to replace it or choose another "
                                f"{param('out')}")
    if (out / CHECKPOINT).exists():
        if not resume:
            raise ModeconnError(f"{out} holds an unfinished run: pass {param('resume')} to continue it, or choose "
                                f"another {param('out')}")
        if settings is not None:
            check_settings(out / CHECKPOINT, settings)


def _missing_folders(out: Path) -> list[Path]:
    """OUT and those of its parents that do not exist yet, deepest first: what creating OUT makes."""
    made = []
    while not out.exists() and out != out.parent:
        made.append(out)
        out = out.parent
    return made


def _tidy(made: list[Path], lock_made: bool, out: Path) -> None:
    """After a failed command, with its lock still held: remove the lock file it made and the folders it made
    that hold nothing else."""
    if lock_made:
        (out / LOCK_NAME).unlink(missing_ok=True)
    for folder in made:
        try:
            folder.rmdir()  # only if empty: anything the command kept (a checkpoint) keeps its folder
        except OSError:
            break


@contextlib.contextmanager
def claim_output(out: Path, finished: str | None, resume: bool = False, settings: dict | None = None,
                 force: bool | None = None, check: Callable[[Path], object] | None = None):
    """Create OUT, take its lock and check its state under the lock, then hold the lock while the block runs.

    `finished` is the file whose presence means OUT holds a finished result (None: OUT is a workspace
    the command continues step by step, as `demo` does); `check_unfinished` runs here, under the lock,
    then `check(out)`, the command's own checks of what OUT holds (a partial grid, a comparison's
    settings), which must write nothing. Two processes racing for one folder therefore cannot both
    pass: the second is refused at once, naming the first's pid. Nothing is written before the checks
    pass. If the block
    fails, the lock file this claim made and the folders it made are removed where nothing else is in
    them. Under torchrun rank 0 takes the lock and every rank learns whether it could.
    """
    out = Path(out)
    lock, error, made, lock_made = None, None, [], False
    if distributed.is_main():
        try:
            made = _missing_folders(out)
            out.mkdir(parents=True, exist_ok=True)
            lock_made = not (out / LOCK_NAME).exists()
            lock = FolderLock(out).acquire()
            _check_state(out, finished, resume, settings, force)
            if check is not None:
                check(out)
        except (ModeconnError, OSError) as exc:
            error = exc
    if not distributed.all_agree(error is None):
        if distributed.is_main():  # tidied while the lock is held, so no other process can be using the file
            _tidy(made, lock_made and lock is not None, out)
        if lock is not None:
            lock.release()
        if isinstance(error, OSError):
            raise ModeconnError(f"cannot write into {out}: {error.strerror or error}; "
                                f"choose another {param('out')}") from None
        raise error or ModeconnError(f"rank 0 could not claim {out} (see its message)")
    make_dir(out)  # the other ranks wait until it exists
    try:
        yield out
    except BaseException:
        if lock is not None:
            _tidy(made, lock_made, out)
        raise
    finally:
        if lock is not None:
            lock.release()

