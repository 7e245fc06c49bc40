"""Run folders: train a network or a curve into a folder, and load either back."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from .checkpoint import (load_state_into, load_tensors, make_dir, optimizer_tensors, prepare_out_dir, read_json,
                         remove_file, save_tensors, write_json)
from . import distributed, speed
from .curve import Curve
from .data import Dataset, load_dataset
from .errors import ModeconnError
from .evaluate import evaluate, recompute_bn
from .models import DEFAULT_MODEL, create_model
from .pointwise import EvalSettings
from .train import TrainConfig, train_curve, train_network

# Defaults that give a good network in about a minute or less on 2 CPU cores.
TRAIN_DEFAULTS = {
    "mnist1d": TrainConfig(epochs=50, lr=0.1, wd=5e-4, batch_size=64),
    "fashion-mnist": TrainConfig(epochs=10, lr=0.05, wd=5e-4, batch_size=128),
}
CONNECT_DEFAULTS = {
    "mnist1d": TrainConfig(epochs=50, lr=0.05, wd=5e-4, batch_size=64),
    "fashion-mnist": TrainConfig(epochs=10, lr=0.03, wd=5e-4, batch_size=128),
}


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else the CPU; under torchrun, joins the process group too."""
    if name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif name.startswith("cuda") and not torch.cuda.is_available():
        raise ModeconnError(f"--device {name} asked for a GPU but none is visible; use --device cpu")
    else:
        device = torch.device(name)
    return distributed.setup(device)


def model_spec(name: str, data: Dataset, **kwargs) -> dict:
    """Everything needed to rebuild a model: registry name, constructor arguments, shapes."""
    return {"name": name, "kwargs": kwargs, "input_shape": list(data.input_shape), "num_classes": data.num_classes}


def build(spec: dict) -> nn.Module:
    """Rebuild a model from its spec."""
    return create_model(spec["name"], spec["input_shape"], spec["num_classes"], **spec.get("kwargs", {}))


def split_metrics(model, data: Dataset, bn_batch: int = 500) -> dict[str, float]:
    """train_loss, train_err, test_loss, test_err (train split without augmentation)."""
    tr = evaluate(model, data.train_batches(bn_batch, shuffle=False))
    te = evaluate(model, data.test_batches(bn_batch))
    return {"train_loss": tr["loss"], "train_err": tr["err"], "test_loss": te["loss"], "test_err": te["err"]}


def weights_file(path: Path) -> Path:
    """The weights inside a run folder, or the file itself."""
    if path.is_dir():
        for name in ("model.safetensors", "model.pt"):
            if (path / name).exists():
                return path / name
        raise ModeconnError(f"{path} holds no model.safetensors: point at a folder written by `modeconn train`")
    return path


def network_info(path, dataset: str | None = None, model: str | None = None) -> dict:
    """The run.json describing a network (folder or weights file), or one built from overrides."""
    path = Path(path)
    if not path.exists():
        raise ModeconnError(f"{path} does not exist: pass a run folder or a weights file")
    run_json = (path if path.is_dir() else path.parent) / "run.json"
    info = read_json(run_json) if run_json.exists() else {}
    if dataset:
        info["dataset"] = dataset
    if "dataset" not in info:
        raise ModeconnError(f"{path} has no run.json beside it: pass --dataset (and --model) to say what it is")
    if model or "model" not in info:
        info["model"] = {"name": model or DEFAULT_MODEL.get(info["dataset"], "mlp"), "kwargs": {}}
    return info


def load_network(path, data: Dataset, spec: dict, device="cpu") -> nn.Module:
    """Build the network described by `spec` and load its weights from `path` safely."""
    spec = {**spec, "input_shape": list(data.input_shape), "num_classes": data.num_classes}
    model = build(spec)
    file = weights_file(Path(path))
    load_state_into(model, load_tensors(file), str(file))
    return model.to(device)


def train_run(dataset: str, out, model: str | None = None, cfg: TrainConfig | None = None,
              data_dir: str | None = None, device="auto", resume: bool = False, progress: bool = True,
              keep_epochs: tuple[int, ...] = ()) -> dict:
    """Train one network into `out`: model.safetensors, optimizer.safetensors and run.json.

    Each epoch in `keep_epochs` is also kept as a run folder `out/epochN` (weights, optimizer
    state, run.json), e.g. the 0.8B state that FGE starts from in the paper.
    """
    device = resolve_device(device)
    cfg = cfg or TRAIN_DEFAULTS.get(dataset, TrainConfig())
    data = load_dataset(dataset, data_dir).to(device)
    name = model or DEFAULT_MODEL.get(dataset, "mlp")
    spec = model_spec(name, data)
    torch.manual_seed(cfg.seed)
    net = build(spec).to(device)
    for k in keep_epochs:
        if not 1 <= k <= cfg.epochs:
            raise ModeconnError(f"--keep-epochs {k} is outside 1..{cfg.epochs}")
    out = prepare_out_dir(out, resume)
    start = time.time()
    base = {"kind": "network", "dataset": dataset, "data_dir": data_dir, "model": spec, "config": cfg.to_dict(),
            "seed": cfg.seed, "speed": speed.current().to_dict(), "processes": distributed.world_size()}

    def save(folder: Path, optimizer, extra: dict) -> dict:
        info = {**base, **extra, **split_metrics(net, data)}
        save_tensors(folder / "model.safetensors", net.state_dict())
        save_tensors(folder / "optimizer.safetensors", optimizer_tensors(optimizer))
        write_json(folder / "run.json", info)  # last: a folder with run.json is complete
        return info

    def keep(epoch: int, optimizer) -> None:
        if epoch + 1 in keep_epochs:
            save(out / f"epoch{epoch + 1}", optimizer, {"epochs_trained": epoch + 1})

    history, optimizer = train_network(net, data, cfg, checkpoint=out / "checkpoint.safetensors",
                                       progress=progress, desc=f"train {out.name}", on_epoch_end=keep)
    info = save(out, optimizer, {"epoch_train_loss": history, "seconds": round(time.time() - start, 2)})
    remove_file(out / "checkpoint.safetensors")
    return info


def connect_run(start, end, out, kind: str = "bezier", bends: int = 1, free_endpoints: bool = False,
                cfg: TrainConfig | None = None, dataset: str | None = None, model: str | None = None,
                data_dir: str | None = None, device="auto", resume: bool = False, progress: bool = True) -> dict:
    """Fit a curve between two trained networks into `out`: curve.safetensors and run.json."""
    device = resolve_device(device)
    info_a = network_info(start, dataset, model)
    info_b = network_info(end, dataset, model)
    if info_a["dataset"] != info_b["dataset"]:
        raise ModeconnError(f"{start} was trained on {info_a['dataset']} but {end} on {info_b['dataset']}; "
                            "pass --dataset to choose one")
    ds = info_a["dataset"]
    data = load_dataset(ds, data_dir or info_a.get("data_dir")).to(device)
    net_a = load_network(start, data, info_a["model"], device)
    net_b = load_network(end, data, info_b["model"], device)
    curve = Curve(net_a, net_b, kind=kind, bends=bends, free_endpoints=free_endpoints).to(device)
    cfg = cfg or CONNECT_DEFAULTS.get(ds, TrainConfig())
    out = prepare_out_dir(out, resume)
    began = time.time()
    history, _ = train_curve(curve, data, cfg, checkpoint=out / "checkpoint.safetensors", progress=progress,
                             desc=f"connect {out.name}")
    mid = curve.model_at(0.5)
    recompute_bn(mid, data.train_batches(500, shuffle=False))
    spec = model_spec(info_a["model"]["name"], data, **info_a["model"].get("kwargs", {}))
    info = {"kind": "curve", "dataset": ds, "data_dir": data_dir or info_a.get("data_dir"), "model": spec,
            "curve": {"kind": kind, "bends": bends, "free_endpoints": free_endpoints},
            "start": str(start), "end": str(end), "config": cfg.to_dict(), "seed": cfg.seed,
            "speed": speed.current().to_dict(), "processes": distributed.world_size(),
            "epoch_train_loss": history, "seconds": round(time.time() - began, 2), "length": curve.length(),
            **{f"midpoint_{k}": v for k, v in split_metrics(mid, data).items()}}
    save_tensors(out / "curve.safetensors", curve.state_dict(),
                 metadata={"kind": kind, "bends": str(bends), "names": ",".join(curve.param_space.names)})
    write_json(out / "run.json", info)
    remove_file(out / "checkpoint.safetensors")
    return info


def load_curve(run_dir, device="cpu", data_dir: str | None = None) -> tuple[Curve, dict, Dataset]:
    """Load a curve run folder: the Curve, its run.json and its dataset (on `device`)."""
    run_dir = Path(run_dir)
    info = read_json(run_dir / "run.json")
    if info.get("kind") != "curve":
        raise ModeconnError(f"{run_dir} is not a curve run (run.json kind is {info.get('kind')!r}); "
                            "make one with `modeconn connect`")
    data = load_dataset(info["dataset"], data_dir or info.get("data_dir")).to(device)
    template = build(info["model"])
    c = info["curve"]
    curve = Curve(template, template, kind=c["kind"], bends=c["bends"], free_endpoints=c["free_endpoints"])
    state = load_tensors(run_dir / "curve.safetensors")
    load_state_into(curve, state, str(run_dir / "curve.safetensors"))
    return curve.to(device), info, data


def _settings_for(info: dict, bn_samples, train_samples, batch_size) -> EvalSettings:
    """Evaluation settings, with the weight decay the run was trained with (for train_objective)."""
    wd = info.get("config", {}).get("wd", 0.0)
    return EvalSettings(wd=wd, batch_size=batch_size, bn_samples=bn_samples, train_samples=train_samples)


def _refuse_existing(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise ModeconnError(f"{path} exists; pass --force to replace it or choose another --out")


def _write_eval(out: Path, result: dict, stem: str, title: str) -> None:
    from .plots import plot_along

    make_dir(out)
    plot_along(result, out / f"{stem}.png", title)
    write_json(out / f"{stem}.json", result)


def eval_curve_run(run_dir, points: int = 61, out=None, bn_samples: int | None = None,
                   train_samples: int | None = None, batch_size: int = 1000, device="auto",
                   force: bool = False, progress: bool = True) -> dict:
    """Evaluate a curve run and the line between its endpoints: curve_eval.json and curve_eval.png."""
    from .along import eval_path

    _check_points(points)
    device = resolve_device(device)
    curve, info, data = load_curve(run_dir, device)
    out = Path(out or run_dir)
    _refuse_existing(out / "curve_eval.json", force)
    settings = _settings_for(info, bn_samples, train_samples, batch_size)
    result = eval_path(curve, curve.model_at(0.0), curve.model_at(1.0), data, points, settings, progress)
    result["run"] = str(run_dir)
    _write_eval(out, result, "curve_eval", f"{info['curve']['kind']} curve vs line, {info['dataset']}")
    return result


def eval_line_run(start, end, out=None, points: int = 61, bn_samples: int | None = None,
                  train_samples: int | None = None, batch_size: int = 1000, dataset: str | None = None,
                  model: str | None = None, device="auto", force: bool = False, progress: bool = True) -> dict:
    """Linear mode connectivity of two networks: line_eval.json and line_eval.png."""
    from .along import eval_path

    _check_points(points)
    device = resolve_device(device)
    info_a, info_b = network_info(start, dataset, model), network_info(end, dataset, model)
    data = load_dataset(info_a["dataset"], info_a.get("data_dir")).to(device)
    net_a = load_network(start, data, info_a["model"], device)
    net_b = load_network(end, data, info_b["model"], device)
    from .flat import check_same_architecture

    check_same_architecture(net_a.state_dict(), net_b.state_dict(), what=(str(start), str(end)))
    out = Path(out or Path(start).parent / f"{Path(start).stem}-{Path(end).stem}-line")
    _refuse_existing(out / "line_eval.json", force)
    settings = _settings_for(info_a, bn_samples, train_samples, batch_size)
    result = eval_path(None, net_a, net_b, data, points, settings, progress)
    result.update(start=str(start), end=str(end))
    _write_eval(out, result, "line_eval", f"line between {start} and {end}, {info_a['dataset']}")
    result["out"] = str(out)
    return result


def ensemble_curve_run(run_dir, points: int = 5, out=None, device="auto", force: bool = False,
                       progress: bool = True) -> dict:
    """Ensemble of `points` networks along a curve run: ensemble.json (default in the run folder)."""
    from .ensemble import curve_ensemble

    if points < 1:
        raise ModeconnError(f"--points must be >= 1, got {points}")
    out = Path(out or Path(run_dir) / "ensemble.json")
    _refuse_existing(out, force)
    curve, _, data = load_curve(run_dir, resolve_device(device))
    result = curve_ensemble(curve, data, points, progress=progress)
    result.update(curve=str(run_dir), points=points, out=str(out))
    write_json(out, result)
    return result


def _check_points(points: int) -> None:
    if points < 2:
        raise ModeconnError(f"--points must be >= 2 (t = 0 and t = 1 at least), got {points}")
