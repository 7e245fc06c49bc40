"""Bad input across every command: exit status 2, one line on stderr, no traceback, nothing written.

Each case runs the real CLI entry point in this process (fast: the data is generated once) and
compares a listing of every file under the inputs and the output location before and after.
"""
import gzip
import importlib.util
import json
import os
import shutil
import sys

import pytest
import torch

from modeconn.cli import main
from modeconn.commands import connect, simplex, train
from modeconn.data import FORTUNES_DIR
from modeconn.models.huggingface import SHIPPED
from modeconn.storage.files import load_tensors, save_npz, save_tensors

QUICK = dict(epochs=1, device="cpu", progress=False)


def _write_idx(path, data: bytes, dims):
    header = bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    with gzip.open(path, "wb") as fh:
        fh.write(header + data)


def _idx_folder(folder, train_labels: bytes):
    folder.mkdir()
    _write_idx(folder / "train-images-idx3-ubyte.gz", bytes(3 * 28 * 28), [3, 28, 28])
    _write_idx(folder / "train-labels-idx1-ubyte.gz", train_labels, [len(train_labels)])
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", bytes(28 * 28), [1, 28, 28])
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", bytes([1]), [1])


def _variant(src, dst, edit=None, weights=None, file="model.safetensors"):
    """A copy of run folder `src` with its run.json edited and/or its weights (`file`) replaced."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("epoch*", ".modeconn.lock", "*.png", "*_eval.json"))
    if edit is not None:
        info = json.loads((dst / "run.json").read_text())
        edit(info)
        (dst / "run.json").write_text(json.dumps(info))
    if weights is not None:
        save_tensors(dst / file, weights(load_tensors(dst / file)))
    return dst


BADLAB = """
import torch
from torch.utils.data import IterableDataset, TensorDataset

x, y = torch.randn(8, 40), torch.randint(0, 10, (8,))


def wide():
    \"\"\"Inputs of 12 values, where the networks take 40.\"\"\"
    return {"train": TensorDataset(torch.randn(8, 12), y), "test": TensorDataset(torch.randn(8, 12), y),
            "num_classes": 10}


def iterator():
    return iter([(x, y)]), [(x, y)]


def no_classes():
    return TensorDataset(x, y), TensorDataset(x, y)


def bare():
    return TensorDataset(x), TensorDataset(x)


class Unsized(IterableDataset):
    def __iter__(self):
        yield x, y


def unsized():
    return {"train": Unsized(), "test": [(x, y)], "num_classes": 10}


def nine():
    return {"train": TensorDataset(torch.randn(9, 40), torch.randint(0, 10, (9,))), "test": TensorDataset(x, y),
            "num_classes": 10}


def bn(input_shape, num_classes):
    return torch.nn.Sequential(torch.nn.Linear(40, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, num_classes))
"""


@pytest.fixture(scope="module")
def bad(mnist1d_runs, tmp_path_factory):
    """Inputs that must be refused, built once: wrong-type run.json fields, corrupt files, foreign networks."""
    root = tmp_path_factory.mktemp("bad")
    a, ab = mnist1d_runs["a"], mnist1d_runs["ab"]
    (root / "file.txt").write_text("not a folder")
    (root / "empty").mkdir()
    train(root / "mlp", model="mlp", **QUICK)
    connect(a, mnist1d_runs["b"], root / "line", bends=0, **QUICK)
    p = {"root": root, "file": root / "file.txt", "empty": root / "empty", "mlp": root / "mlp", "line": root / "line",
         "a": a, "b": mnist1d_runs["b"], "ab": ab, "missing": root / "missing"}
    p["model_number"] = _variant(a, root / "model_number", lambda i: i.update(model=3))
    (root / "json_dir" / "run.json").mkdir(parents=True)  # a folder where run.json should be
    p["json_dir"] = root / "json_dir"
    p["kwargs_list"] = _variant(a, root / "kwargs_list", lambda i: i["model"].update(kwargs=[1, 2]))
    p["kwargs_unknown"] = _variant(a, root / "kwargs_unknown", lambda i: i["model"].update(kwargs={"widht": 8}))
    p["config_string"] = _variant(a, root / "config_string", lambda i: i.update(config="lr=0.1"))
    p["no_dataset"] = _variant(a, root / "no_dataset", lambda i: i.pop("dataset"))
    p["dataset_number"] = _variant(a, root / "dataset_number", lambda i: i.update(dataset=7))
    p["kind_list"] = _variant(a, root / "kind_list", lambda i: i.update(kind=["network"]))
    p["fashion_b"] = _variant(mnist1d_runs["b"], root / "fashion_b", lambda i: i.update(dataset="fashion-mnist"))
    p["bends_string"] = _variant(ab, root / "bends_string", lambda i: i["curve"].update(bends="1"))
    p["no_curve"] = _variant(ab, root / "no_curve", lambda i: i.pop("curve"))
    p["ab_poly"] = _variant(ab, root / "ab_poly", lambda i: i["curve"].update(kind="polychain"))
    p["free_string"] = _variant(ab, root / "free_string", lambda i: i["curve"].update(free_endpoints="no"))
    p["nan"] = _variant(a, root / "nan", weights=lambda s: {k: v.fill_(float("nan")) if k == "head.bias" else v
                                                               for k, v in s.items()})
    p["cut"] = _variant(a, root / "cut")
    (p["cut"] / "model.safetensors").write_bytes((a / "model.safetensors").read_bytes()[:300])
    (root / "ints").mkdir()
    torch.save({k: v.long() for k, v in load_tensors(a / "model.safetensors").items()}, root / "ints" / "a.pt")
    p["ints"] = root / "ints" / "a.pt"
    (root / "report").mkdir()
    (root / "report" / "x").mkdir()
    (root / "report" / "x" / "run.json").write_text('{"kind": "network", "dataset": ')
    p["report"] = root / "report"
    (root / "ens.json").write_text("{}")
    p["ens_json"] = root / "ens.json"
    simplex(a, root / "sx", vertices=1, **QUICK)
    p["sx"] = root / "sx"
    p["sx_empty_face"] = _variant(root / "sx", root / "sx_empty_face", weights=lambda s: {
        **s, "face_mask": torch.cat([s["face_mask"], torch.zeros_like(s["face_mask"])])}, file="simplex.safetensors")
    p["sx_int_faces"] = _variant(root / "sx", root / "sx_int_faces", weights=lambda s: {
        **s, "face_mask": s["face_mask"].long()}, file="simplex.safetensors")
    # Folders a killed run left: partial results that are corrupt or were started with other settings
    for name, partial in [("land", "landscape.partial.npz"), ("plane", "plane.partial.npz"),
                          ("sxe", "simplex_eval.partial.npz"), ("curv", "curvature.partial.npz")]:
        (root / f"{name}_corrupt").mkdir()
        (root / f"{name}_corrupt" / partial).write_bytes(os.urandom(512))
        (root / f"{name}_other").mkdir()
        save_npz(root / f"{name}_other" / partial, {"done": torch.zeros(3, dtype=torch.bool).numpy(),
                                                    "fingerprint": json.dumps({"seed": 99})})
        p[f"{name}_corrupt"], p[f"{name}_other"] = root / f"{name}_corrupt", root / f"{name}_other"
    (root / "ckpt_other").mkdir()
    save_tensors(root / "ckpt_other" / "checkpoint.safetensors", {"x": torch.zeros(1)},
                 metadata={"settings": json.dumps({"seed": 99})})
    (root / "ckpt_corrupt").mkdir()
    (root / "ckpt_corrupt" / "checkpoint.safetensors").write_bytes(os.urandom(512))
    (root / "stage_other").mkdir()
    save_tensors(root / "stage_other" / "stage1.safetensors", {"x": torch.zeros(1)},
                 metadata={"history": "[]", "settings": json.dumps({"seed": 99})})
    p.update(ckpt_other=root / "ckpt_other", ckpt_corrupt=root / "ckpt_corrupt", stage_other=root / "stage_other")
    (root / "lab").mkdir()  # data a user's module returns, on the Python path for the module's tests
    (root / "lab" / "badlab.py").write_text(BADLAB)
    sys.path.insert(0, str(root / "lab"))
    _idx_folder(root / "fashion_count", bytes([1, 2]))
    _idx_folder(root / "fashion_range", bytes([1, 2, 12]))
    p["fashion_count"], p["fashion_range"] = root / "fashion_count", root / "fashion_range"
    gpt = json.loads((SHIPPED / "gpt2-tiny.json").read_text())
    for name, change in (("alien", {"model_type": "alien", "architectures": ["AlienModel"]}),
                         ("remote", {"auto_map": {"AutoModelForCausalLM": "alien.AlienModel"}}),
                         ("short_vocab", {"vocab_size": 100}), ("short_positions", {"n_positions": 64}),
                         ("corrupt", {})):
        (root / name).mkdir()
        (root / name / "config.json").write_text(json.dumps({**gpt, **change}))
        p[f"{name}_config"] = root / name
    (root / "corrupt" / "model.safetensors").write_bytes(os.urandom(64))
    return p


NO_GPU = not torch.cuda.is_available()
needs_vision = pytest.mark.skipif(importlib.util.find_spec("torchvision") is None
                                  or importlib.util.find_spec("timm") is None,
                                  reason="torchvision and timm are not installed (make test installs them)")
needs_hf = pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                              reason="transformers is not installed (make test installs it)")
needs_fortunes = pytest.mark.skipif(not os.path.isfile(os.path.join(FORTUNES_DIR, "science")),
                                    reason=f"the fortunes text is not at {FORTUNES_DIR} (make test installs it)")
# (command line with {placeholders}, a fragment the one-line message must hold). {out} is a fresh
# path that must still not exist afterwards.
CASES = [
    # train
    pytest.param("train --out {out} --dataset fortunes --model hf:{missing}", "no config.json there",
                 marks=[needs_hf, needs_fortunes]),
    pytest.param("train --out {out} --dataset fortunes --model hf:{alien_config}", "does not know model_type 'alien'",
                 marks=[needs_hf, needs_fortunes]),
    pytest.param("train --out {out} --dataset fortunes --model hf:{remote_config}", "never runs remote code",
                 marks=[needs_hf, needs_fortunes]),
    pytest.param("train --out {out} --dataset fortunes --model hf:bert-tiny", "but the lm task reads (128, 256)",
                 marks=[needs_hf, needs_fortunes]),
    pytest.param("train --out {out} --dataset fortunes/only=pratchett", "shorter than one block",
                 marks=needs_fortunes),
    pytest.param("train --out {out} --dataset fortunes/block=64/block=32", "gives block= twice", marks=needs_fortunes),
    pytest.param("train --out {out} --model hf:gpt2-tiny", "cannot take this data's inputs", marks=needs_hf),
    pytest.param("train --out {out} --dataset fortunes --model hf:{short_vocab_config}",
                 "cannot take this data's inputs", marks=[needs_hf, needs_fortunes]),
    pytest.param("train --out {out} --dataset fortunes --model hf:{short_positions_config}",
                 "cannot take this data's inputs", marks=[needs_hf, needs_fortunes]),
    pytest.param("train --out {out} --dataset fortunes --model hf:{corrupt_config}", "could not build",
                 marks=[needs_hf, needs_fortunes]),
    ("train --out {out} --init {ab}", "is a curve run, not a network"),
    ("train --out {out} --init {a} --model mlp", "holds a conv1d network, --model names mlp"),
    ("train --out {out} --epochs 0", "--epochs must be a positive integer"),
    pytest.param("train --out {out} --model torchvision:no_such_net", "torchvision has no classifier 'no_such_net'",
                 marks=needs_vision),
    pytest.param("train --out {out} --model timm:no_such_net", "timm has no classifier 'no_such_net'",
                 marks=needs_vision),
    ("train --out {out} --dataset badlab:iterator", "an iterator, which can be read only once"),
    ("train --out {out} --dataset badlab:no_classes", "give num_classes for streamed classification data"),
    ("train --out {out} --dataset badlab:bare", "a batch must be a tuple or list (inputs, targets, ...) or a dict"),
    ("train --out {out} --dataset badlab:unsized", "a data source without len() cannot be trained on"),
    ("train --out {out} --dataset badlab:nine --model badlab:bn --batch-size 8", "9 training examples in batches of "
     "8 leave a last batch of one example, which BatchNorm cannot normalise in training; choose another --batch-size"),
    ("train --out {out} --epochs -1", "--epochs must be a positive integer"),
    ("train --out {out} --epochs x", "invalid int value"),
    ("train --out {out} --lr 0", "--lr must be a positive number"),
    ("train --out {out} --lr -0.1", "--lr must be a positive number"),
    ("train --out {out} --lr nan", "--lr must be a finite number"),
    ("train --out {out} --lr inf", "--lr must be a finite number"),
    ("train --out {out} --wd -1", "--wd must be a number >= 0"),
    ("train --out {out} --wd nan", "--wd must be a finite number"),
    ("train --out {out} --batch-size 0", "--batch-size must be a positive integer"),
    ("train --out {out} --batch-size -5", "--batch-size must be a positive integer"),
    ("train --out {out} --seed -1", "--seed must be an integer >= 0"),
    ("train --out {out} --seed 99999999999999999999999", "--seed must be below 2**63"),
    ("train --out {out} --keep-epochs 0", "--keep-epochs must be a positive integer"),
    ("train --out {out} --epochs 5 --keep-epochs 9", "--keep-epochs 9 is outside 1..5"),
    ("train --out {out} --model nosuch", "unknown model 'nosuch'"),
    ("train --out {out} --model convbn", "model 'convbn' cannot take inputs of shape (40,)"),
    ("train --out {out} --dataset nosuch", "unknown dataset 'nosuch'"),
    ("train --out {out} --dataset fashion-mnist --data-dir {missing}", "--data-dir"),
    ("train --out {out} --data-dir {empty}", "mnist1d is generated in memory"),
    ("train --out {out} --dataset fashion-mnist --data-dir {fashion_count}", "3 images but"),
    ("train --out {out} --dataset fashion-mnist --data-dir {fashion_range}", "label 12, outside 0..9"),
    ("train --out ", "--out must name a folder"),
    ("train --out {file}", "is a file, not a folder"),
    ("train --out {file}/sub", "is a file, not a folder"),
    ("train --out {a}", "already holds a finished run"),
    ("train --out {out} --device tpu9", "--device must be auto, cpu, cuda, cuda:N or mps"),
    ("train --out {out} --device meta", "--device must be auto, cpu, cuda, cuda:N or mps"),
    ("train --out {out} --device cuda:x", "the GPU index must be a number"),
    pytest.param("train --out {out} --device mps", "Apple's GPU",
                 marks=pytest.mark.skipif(getattr(torch.backends, "mps", None) is not None
                                          and torch.backends.mps.is_available(), reason="this machine has MPS")),
    pytest.param("train --out {out} --device cuda", "asked for a GPU",
                 marks=pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")),
    ("train --out {out} --amp fp8", "invalid choice: 'fp8'"),
    ("train --out {out} --optimizer adam", "invalid choice: 'adam'"),
    ("train --out {out} --schedule step", "invalid choice: 'step'"),
    ("train --out {out} --bogus", "unrecognized arguments: --bogus"),
    # connect
    ("connect --start {a} --end {b} --out {out} --bends -1", "--bends must be an integer >= 0"),
    ("connect --start {missing} --end {b} --out {out}", "does not exist"),
    ("connect --start {a} --end {mlp} --out {out}", "different architectures"),
    ("connect --start {a} --end {cut} --out {out}", "model.safetensors is truncated or corrupt"),
    ("connect --start {a} --end {nan} --out {out}", "'head.bias' holds NaN or infinite values"),
    ("connect --start {a} --end {ints} --dataset mnist1d --out {out}", "holds torch.int64 values"),
    ("connect --start {a} --end {file} --out {out}", "is not a weights file"),
    ("connect --start {a} --end {b} --out {out} --epochs 0", "--epochs must be a positive integer"),
    ("connect --start {a} --end {b} --out {out} --lr nan", "--lr must be a finite number"),
    ("connect --start {ab} --end {b} --out {out}", "is a curve run, not a network"),
    ("connect --start {a} --end {fashion_b} --out {out}", "was trained on mnist1d but"),
    ("connect --start {a} --end {b} --dataset nosuch --out {out}", "unknown dataset"),
    ("connect --start {model_number} --end {b} --out {out}", "field 'model' must be an object"),
    ("connect --start {kwargs_list} --end {b} --out {out}", "field 'model.kwargs' must be an object"),
    ("connect --start {config_string} --end {b} --out {out}", "field 'config' must be an object"),
    ("connect --start {kwargs_unknown} --end {kwargs_unknown} --out {out}", "cannot be built with kwargs"),
    ("connect --start {no_dataset} --end {b} --out {out}", "field 'dataset' is missing"),
    ("connect --start {dataset_number} --end {b} --out {out}", "field 'dataset' must be a string"),
    ("connect --start {kind_list} --end {b} --out {out}", "field 'kind' must be a string"),
    ("connect --start {a} --end {b} --out {out} --curve spline", "invalid choice: 'spline'"),
    ("connect --start {a} --end {b} --out {a}", "already holds a finished run"),
    # eval-curve
    ("eval-curve {ab} --out {out} --points 1", "--points must be an integer >= 2"),
    ("eval-curve {ab} --out {out} --dataset badlab:wide", "but the network was made for (40,) with num_classes 10"),
    ("eval-curve {ab} --out {out} --dataset no-such-data", "unknown dataset 'no-such-data'"),
    ("eval-curve {ab} --out {out} --points 0", "--points must be an integer >= 2"),
    ("eval-curve {ab} --out {out} --bn-samples -5", "--bn-samples must be a positive integer"),
    ("eval-curve {ab} --out {out} --bn-samples 0", "--bn-samples must be a positive integer"),
    ("eval-curve {ab} --out {out} --train-samples 0", "--train-samples must be a positive integer"),
    ("eval-curve {ab} --out {out} --batch-size 0", "--batch-size must be a positive integer"),
    ("eval-curve {a} --out {out}", "is not a curve run"),
    ("eval-curve {missing} --out {out}", "is not a folder"),
    ("eval-curve {bends_string} --out {out}", "field 'curve.bends' must be an integer"),
    ("eval-curve {no_curve} --out {out}", "field 'curve' is missing"),
    ("eval-curve {free_string} --out {out}", "field 'curve.free_endpoints' must be true or false"),
    ("eval-curve {ab} --out {file}", "is a file, not a folder"),
    ("eval-curve {ab} --out {out} --data-dir {missing}", "--data-dir"),
    ("eval-curve {ab} --out {out} --device tpu9", "--device must be"),
    # eval-line
    ("eval-line {a} {fashion_b} --out {out}", "was trained on mnist1d but"),
    ("eval-line {a} {b} --dataset badlab:wide --out {out}", "gives inputs of shape (12,) with num_classes 10 (the "
     "output width), but the network was made for (40,) with num_classes 10"),
    ("eval-line {a} {mlp} --out {out}", "different architectures"),
    ("eval-line {a} {b} --out {out} --points 1", "--points must be an integer >= 2"),
    ("eval-line {a} {missing} --out {out}", "does not exist"),
    ("eval-line {a} {nan} --out {out}", "NaN or infinite"),
    # landscape
    ("landscape {a} --out {out} --dims 3", "--dims must be 1 or 2"),
    ("landscape {a} --out {out} --dataset badlab:wide", "but the network was made for (40,) with num_classes 10"),
    ("landscape --out {out}", "give either a network run"),
    ("landscape {a} --curve {ab} --out {out}", "give either a network run"),
    ("landscape {a} --t 0.5 --out {out}", "--t chooses a point of a curve"),
    ("landscape --curve {ab} --t 1.5 --out {out}", "--t must be between 0 and 1"),
    ("landscape --curve {ab} --t nan --out {out}", "--t must be a finite number"),
    ("landscape --curve {a} --out {out}", "is not a curve run"),
    ("landscape {ab} --out {out}", "is a curve run, not a network"),
    ("landscape {a} --grid 1 --out {out}", "--grid must be >= 2"),
    ("landscape {a} --span 0 --out {out}", "--span must be a positive number"),
    ("landscape {a} --seed -1 --out {out}", "--seed must be an integer >= 0"),
    ("landscape {a} --directions magic --out {out}", "invalid choice: 'magic'"),
    ("landscape {a} --directions pca --out {out}", "--directions pca takes its directions from --trajectory"),
    ("landscape {a} --trajectory {a} --out {out}", "--directions pca takes its directions from --trajectory"),
    ("landscape {a} --directions pca --trajectory {a} --out {out}", "PCA needs at least 3"),
    ("landscape {a} --directions pca --trajectory {ab} --out {out}", "is a curve run, not a network"),
    ("landscape {a} --directions pca --trajectory {a} --bn-directions --out {out}", "--bn-directions applies"),
    ("landscape {a} --out {file}", "is a file, not a folder"),
    ("landscape {a} --out {out} --train-samples 0", "--train-samples must be a positive integer"),
    ("train --out {out} --keep-every 0", "--keep-every must be a positive integer"),
    # instability
    ("instability --out {out} --spawn 0 50 --epochs 50", "--spawn 50 is not before --epochs 50"),
    ("instability --out {out} --spawn -1", "--spawn must be an integer >= 0"),
    ("instability --out {out} --spawn", "expected at least one argument"),
    ("instability --out {out} --points 1", "--points must be an integer >= 2"),
    ("instability --out {out} --dataset nope", "unknown dataset"),
    ("instability --out {out} --epochs 0", "--epochs must be a positive integer"),
    ("instability --out {out} --train-samples 0", "--train-samples must be a positive integer"),
    ("instability --out {file}", "is a file, not a folder"),
    # simplex
    ("simplex --start {a} --out {out} --vertices 9", "--vertices 9 is too many"),
    ("simplex --start {a} --out {out} --schedule cosine", "--schedule: vertices grown around one network"),
    ("simplex --start {a} --out {out} --vertices 0", "--vertices must be a positive integer"),
    ("simplex --start {a} --out {out} --volume-weight -1", "--volume-weight must be a number >= 0"),
    ("simplex --start {a} --out {out} --volume-weight nan", "--volume-weight must be a finite number"),
    ("simplex --start {ab} --out {out}", "bezier curve of 1 bend(s) cannot be extended into a simplex"),
    ("simplex --start {a} {a} --out {out}", "names the same network twice"),
    ("simplex --start {ab_poly} --model mlp --out {out}", "a curve run records its own"),
    ("simplex --start {line} --out {out}", "bezier curve of 0 bend(s) cannot be extended"),
    ("simplex --start {a} {mlp} --out {out}", "different architectures"),
    ("simplex --start {a} {fashion_b} --out {out}", "was trained on mnist1d but"),
    ("simplex --start {nan} --out {out}", "NaN or infinite"),
    ("simplex --start {missing} --out {out}", "does not exist"),
    ("simplex --start {a} --out {file}", "is a file, not a folder"),
    # subspace
    ("subspace --out {out} --shape triangle", "--shape 'triangle' is not a subspace shape"),
    ("subspace --out {out} --shape simplex9", "--shape 'simplex9' is not a subspace shape"),
    ("subspace --out {out} --shape simplex2", "--shape 'simplex2' is not a subspace shape"),
    ("subspace --out {out} --spread -1", "--spread must be a number >= 0"),
    ("subspace --out {out} --spread inf", "--spread must be a finite number"),
    ("subspace --out {out} --dataset nope", "unknown dataset"),
    ("subspace --out {out} --model nope", "unknown model"),
    ("subspace --out {out} --epochs 0", "--epochs must be a positive integer"),
    ("subspace --out {out} --model vgg16", "model 'vgg16' cannot take inputs of shape (40,)"),
    ("subspace --out {file}", "is a file, not a folder"),
    # eval-simplex
    ("eval-simplex {a} --out {out}", "is a network run, not a simplex"),
    ("eval-simplex {ab} --out {out}", "is a curve run, not a simplex"),
    ("eval-simplex {missing} --out {out}", "does not exist"),
    ("eval-simplex {a} --samples 0 --out {out}", "--samples must be a positive integer"),
    ("eval-simplex {a} --seed -1 --out {out}", "--seed must be an integer >= 0"),
    # curvature
    ("curvature {ab} --top 0 --out {out}", "--top must be a positive integer"),
    ("curvature {ab} --out {out} --dataset badlab:wide", "but the network was made for (40,) with num_classes 10"),
    ("curvature {ab} --points 1 --out {out}", "--points must be an integer >= 2"),
    ("curvature {ab} --trace --probes 2 --out {out}", "--probes must be >= 3"),
    ("curvature {ab} --steps 0 --out {out}", "--steps must be a positive integer"),
    ("curvature {ab} --seed -2 --out {out}", "--seed must be an integer >= 0"),
    ("curvature {ab} --top 4 --steps 3 --out {out}", "--top 4 needs --steps >= 4"),
    ("curvature {a} --top 9000 --steps 9000 --out {out}", "more eigenvalues than the network has parameters (8010)"),
    ("curvature {ab} --top 9000 --steps 9000 --out {out}", "more eigenvalues than the network has parameters (8010)"),
    ("curvature {missing} --out {out}", "does not exist"),
    ("curvature {a} --out {file}", "is a file, not a folder"),
    ("curvature {nan} --out {out}", "NaN or infinite"),
    # plane
    ("plane --curve {ab} --out {out} --grid 1", "--grid must be >= 2"),
    ("plane --curve {ab} --out {out} --dataset badlab:wide", "but the network was made for (40,) with num_classes 10"),
    ("plane --curve {ab} --out {out} --grid 0", "--grid must be a positive integer"),
    ("plane --curve {ab} --out {out} --margin nan", "--margin must be a finite number"),
    ("plane --curve {ab} --out {out} --margin inf", "--margin must be a finite number"),
    ("plane --curve {ab} --out {out} --margin -1", "--margin must be a number >= 0"),
    ("plane --curve {ab} --out {out} --chunk -1", "--chunk must be a positive integer"),
    ("plane --curve {ab} --out {out} --chunk 0", "--chunk must be a positive integer"),
    ("plane --curve {ab} --out {out} --bend 5", "--bend must be between 1 and 1"),
    ("plane --curve {ab} --out {out} --bend 0", "--bend must be a positive integer"),
    ("plane --curve {line} --out {out}", "0 bends"),
    ("plane --points {a} {a} {b} --out {out}", "identical"),
    ("plane --points {a} {b} {fashion_b} --out {out}", "was trained on mnist1d but"),
    ("plane --points {a} {b} {mlp} --out {out}", "different architectures"),
    ("plane --points {a} {b} {ab} --out {out} --bend 1", "--bend chooses a curve's bend"),
    ("plane --curve {ab} --out {file}", "is a file, not a folder"),
    # fge
    ("fge --start {a} --out {out} --epochs 0", "--epochs must be a positive integer"),
    ("fge --start {a} --out {out} --cycle 3", "even number of epochs"),
    ("fge --start {a} --out {out} --cycle 0", "--cycle must be a positive integer"),
    ("fge --start {a} --out {out} --lr1 -0.05", "--lr1 must be a positive number"),
    ("fge --start {a} --out {out} --lr2 nan", "--lr2 must be a finite number"),
    ("fge --start {a} --out {out} --wd -1", "--wd must be a number >= 0"),
    ("fge --start {a} --out {out} --batch-size 0", "--batch-size must be a positive integer"),
    ("fge --start {a} --out {out} --epochs 1 --cycle 4", "takes no snapshot"),
    ("fge --start {ab} --out {out}", "is a curve run, not a network"),
    ("fge --start {missing} --out {out}", "does not exist"),
    ("fge --start {ints} --out {out}", "no run.json"),
    # ensemble
    ("ensemble --curve {ab} --points 0 --out {out}/e.json", "--points must be a positive integer"),
    ("ensemble --curve {ab} --out {empty}", "is a folder; name the JSON file"),
    ("ensemble --curve {ab} --out {empty} --force", "is a folder; name the JSON file"),
    ("ensemble --curve {ab} --out {ens_json}", "exists; pass --force"),
    ("ensemble --curve {a} --out {out}/e.json", "is not a curve run"),
    ("ensemble --out {out}/e.json", "give either --curve RUN or --simplex RUN"),
    ("ensemble --curve {ab} --simplex {ab} --out {out}/e.json", "give either --curve RUN or --simplex RUN"),
    ("ensemble --simplex {ab} --out {out}/e.json", "is a curve run, not a simplex"),
    ("ensemble --simplex {a} --seed -1 --out {out}/e.json", "--seed must be an integer >= 0"),
    # budget
    ("budget --epochs 3 --dataset mnist1d --out {out}", "leaves 0.2B"),
    ("budget --epochs 0 --dataset mnist1d --out {out}", "--epochs must be a positive integer"),
    ("budget --epochs 10 --cycle 3 --dataset mnist1d --out {out}", "even number of epochs"),
    ("budget --epochs 10 --lr1 0 --dataset mnist1d --out {out}", "--lr1 must be a positive number"),
    ("budget --epochs 10 --train-samples 0 --dataset mnist1d --out {out}", "--train-samples must be a positive"),
    ("budget --epochs 10 --seeds -1 --dataset mnist1d --out {out}", "--seeds must be an integer >= 0"),
    ("budget --epochs 10 --seeds 1 1 --dataset mnist1d --out {out}", "distinct seeds"),
    ("budget --epochs 10 --dataset nosuch --out {out}", "unknown dataset"),
    ("budget --epochs 10 --dataset mnist1d --method swag --out {out}", "--method 'swag' is not known"),
    ("budget --epochs 10 --dataset mnist1d --volume-weight 0.1 --out {out}", "use it with --method espro"),
    ("budget --epochs 10 --dataset mnist1d --method espro --volume-weight -1 --out {out}", "--volume-weight must be"),
    # align
    ("align --start {a} --end {mlp} --out {out}", "different architectures"),
    ("align --start {a} --end {fashion_b} --out {out}", "was trained on mnist1d but"),
    ("align --start {a} --end {b} --out {out} --method magic", "invalid choice: 'magic'"),
    ("align --start {a} --end {b} --out {out} --seed -1", "--seed must be an integer >= 0"),
    ("align --start {a} --end {b} --out {out} --train-samples 0", "--train-samples must be a positive integer"),
    ("align --start {a} --end {nan} --out {out}", "NaN or infinite"),
    ("align --start {ab} --end {b} --out {out}", "is a curve run, not a network"),
    ("align --start {a} --end {b} --out {a}", "already holds a finished run"),
    # connectivity
    ("connectivity {a} {b} --out {out} --points 1", "--points must be an integer >= 2"),
    ("connectivity {a} {b} --out {out} --curve spline", "invalid choice: 'spline'"),
    ("connectivity {a} {mlp} --out {out}", "different architectures"),
    ("connectivity {a} {b} --out {out} --curve bezier --epochs 0", "--epochs must be a positive integer"),
    ("connectivity {a} {b} --out {out} --bn-samples -1", "--bn-samples must be a positive integer"),
    ("connectivity {a} {b} --out {file}", "is a file, not a folder"),
    # report and demo
    ("report {missing}", "is not a folder"),
    ("report {file}", "is not a folder"),
    ("report {empty}", "holds no modeconn results"),
    ("report {report}", "run.json is truncated or corrupt"),
    ("demo --out {file}", "is a file, not a folder"),
    # info
    ("info {missing}", "does not exist"),
    ("info {empty}", "is not a run folder (it holds no run.json)"),
    ("info {json_dir}", "cannot read"),
    ("info {file}", "is a file, not a run folder"),
    ("info {report}/x", "run.json is truncated or corrupt"),
    ("demo --out {out} --device tpu9", "--device must be"),
    # Resumable commands: a corrupt partial result, or one started with other settings, is refused before
    # anything is written (the listing assertion covers every file, directions.safetensors included).
    ("landscape {a} --dims 1 --grid 3 --out {land_corrupt}", "landscape.partial.npz is truncated or corrupt"),
    ("landscape {a} --dims 1 --grid 3 --out {land_other}", "was started with other settings"),
    ("plane --curve {ab} --grid 3 --out {plane_corrupt}", "plane.partial.npz is truncated or corrupt"),
    ("plane --curve {ab} --grid 3 --out {plane_other}", "was started with other settings"),
    ("eval-simplex {sx} --samples 3 --out {sxe_corrupt}", "simplex_eval.partial.npz is truncated or corrupt"),
    ("eval-simplex {sx} --samples 3 --out {out} --dataset badlab:wide", "but the network was made for (40,)"),
    ("eval-simplex {sx} --samples 3 --out {sxe_other}", "was started with other settings"),
    ("curvature {a} --top 1 --steps 3 --out {curv_corrupt}", "curvature.partial.npz is truncated or corrupt"),
    ("curvature {a} --top 1 --steps 3 --out {curv_other}", "was started with other settings"),
    ("train --out {ckpt_other} --epochs 1 --resume", "--resume needs the same settings"),
    ("train --out {ckpt_corrupt} --epochs 1 --resume", "checkpoint.safetensors is truncated or corrupt"),
    ("connect --start {a} --end {b} --out {ckpt_other} --resume", "--resume needs the same settings"),
    ("connect --start {a} --end {b} --out {ckpt_corrupt} --resume", "checkpoint.safetensors is truncated or corrupt"),
    ("simplex --start {a} --out {ckpt_other} --resume", "--resume needs the same settings"),
    ("simplex --start {a} --out {stage_other} --resume", "--resume needs the same settings"),
    ("simplex --start {a} --out {stage_other}", "holds an unfinished simplex (stage1.safetensors): pass --resume"),
    ("subspace --out {ckpt_other} --resume", "--resume needs the same settings"),
    ("subspace --out {ckpt_corrupt} --resume", "checkpoint.safetensors is truncated or corrupt"),
    ("fge --start {a} --out {ckpt_other} --resume", "--resume needs the same settings"),
    ("instability --out {ckpt_other} --resume", "--resume needs the same settings"),
    ("instability --out {ckpt_corrupt} --resume", "checkpoint.safetensors is truncated or corrupt"),
    # Options that would have no effect in the combination given
    ("connectivity {a} {b} --out {out} --epochs 5 --lr 0.3", "without --curve nothing is trained"),
    ("ensemble --curve {ab} --seed 5 --out {out}/e.json", "--seed draws a simplex's members"),
    ("curvature {ab} --probes 9 --out {out}", "--probes sets the trace's Hessian-vector products: add --trace"),
    ("curvature {a} --points 5 --out {out}", "a network run is measured at itself"),
    # Messages that name the real cause and the file
    ("curvature {a}/model.safetensors --out {out}", "model.safetensors is a file, not a run folder"),
    ("eval-simplex {sx_empty_face} --out {out}", "sx_empty_face/simplex.safetensors: faces"),
    ("eval-simplex {sx_int_faces} --out {out}", "face_mask holds torch.int64 values"),
]


def _line(case) -> str:
    return case.values[0] if hasattr(case, "values") else case[0]  # a pytest.param or a plain pair


def _listing(*roots) -> dict:
    """Every file under the roots with its size and modification time."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for r in roots for p in sorted(r.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("line,message", CASES, ids=[_line(c) for c in CASES])
def test_bad_input_is_refused_in_one_line_and_writes_nothing(line, message, bad, mnist1d_runs, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [part.format(out=out, **bad) for part in line.split(" ")]
    before = _listing(bad["root"], mnist1d_runs["root"], tmp_path)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not out.exists(), f"{out} was created"
    assert _listing(bad["root"], mnist1d_runs["root"], tmp_path) == before


def test_the_table_covers_every_command_with_at_least_sixty_cases():
    from modeconn.commands import COMMANDS

    assert {_line(c).split(" ")[0] for c in CASES} == set(COMMANDS)
    assert len(CASES) >= 60


@pytest.mark.parametrize("error", [MemoryError("Unable to allocate 745. GiB for an array with shape (100000000000,)"),
                                   torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB"),
                                   MemoryError()])
def test_running_out_of_memory_is_one_line_that_says_what_to_lower(error, mnist1d_runs, tmp_path, capsys, monkeypatch):
    """Host or GPU memory running out mid-command (e.g. `--points 100000000000`): exit 2, one line, no traceback."""
    def exhausted(*args, **kwargs):
        raise error

    monkeypatch.setattr(sys.modules["modeconn.commands.eval_curve"], "eval_path", exhausted)
    code = main(["eval-curve", str(mnist1d_runs["ab"]), "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "out of memory" in err and "--points" in err and (str(error).split(" for")[0] or "MemoryError") in err
    assert not (tmp_path / "e" / "curve_eval.json").exists()
