"""Your own model, data and task through the command line: `--model`, `--dataset` and `--task` take
package.module:name references, imported from the Python path; runs record them, and every command that reads a
run builds the same model, data and task again."""
import json
import sys
import textwrap

import pytest

from modeconn.cli import main
from modeconn.commands import connect, ensemble, eval_curve, eval_line, fge, report, train

QUICK = dict(device="cpu", progress=False)

LAB = '''
import math

import torch
from torch import nn
from torch.utils.data import TensorDataset

import modeconn as mc


def _toy(n, seed):
    """y = sin of a fixed projection of x, plus noise."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(8, generator=torch.Generator().manual_seed(123))
    x = torch.randn(n, 8, generator=g)
    return TensorDataset(x, torch.sin(x @ w) + 0.05 * torch.randn(n, generator=g))


def pairs():
    """(train, test), read as the task says: --task regression."""
    return _toy(512, 0), _toy(256, 1)


def with_task():
    """A mapping that names its own task."""
    return {"train": _toy(512, 0), "test": _toy(256, 1), "task": mc.regression(), "num_classes": 1}


def junk():
    return 42


def raises():
    raise OSError("the files are not there")


def empty_test():
    return {"train": _toy(64, 0), "test": [], "task": "regression"}


def named_task():
    return {"train": _toy(512, 0), "test": _toy(256, 1), "task": "regression"}


def builder_raises(input_shape, num_classes):
    raise ValueError("boom inside the builder")


def small(input_shape, num_classes, width=32):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.ReLU(),
                         nn.Linear(width, num_classes))


def takes_nothing():
    return nn.Linear(8, 1)


def not_a_module(input_shape, num_classes):
    return "a string"


class Huber(mc.Task):
    name, metrics = "huber", ("loss", "mae")

    def loss(self, outputs, targets):
        return torch.nn.functional.huber_loss(outputs.reshape(targets.shape), targets)

    def sums(self, outputs, targets):
        diff = outputs.reshape(targets.shape).double() - targets.double()
        huber = torch.where(diff.abs() < 1, 0.5 * diff.square(), diff.abs() - 0.5)
        return torch.stack([huber.sum(), diff.abs().sum()])


NOT_A_TASK = object()
'''


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A user's module, importable as `yourlab` (a folder on the Python path, as PYTHONPATH puts it there)."""
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "yourlab.py").write_text(textwrap.dedent(LAB))
    monkeypatch.syspath_prepend(str(folder))
    return tmp_path


def test_your_model_data_and_task_train_connect_and_are_measured_by_every_command(lab):
    a, b, ab = lab / "a", lab / "b", lab / "ab"
    for out, seed in ((a, 0), (b, 1)):
        train(out, "yourlab:pairs", model="yourlab:small", task="regression", epochs=4, seed=seed, **QUICK)
    run = json.loads((a / "run.json").read_text())
    assert run["dataset"] == "yourlab:pairs" and run["task"] == "regression" and run["model"]["name"] == "yourlab:small"
    assert "test_mae" in run and "test_err" not in run
    line = eval_line(a, b, lab / "line", points=5, **QUICK)
    assert set(line.line) == {"train_loss", "train_mae", "test_loss", "test_mae", "train_objective"}
    connect(a, b, ab, curve="bezier", bends=1, epochs=3, **QUICK)
    curve_run = json.loads((ab / "run.json").read_text())
    assert curve_run["task"] == "regression" and "midpoint_test_mae" in curve_run
    members = ensemble(ab, 3, out=lab / "ensemble.json", **QUICK)
    assert set(members.ensemble) == {"loss", "mae"}
    snapshots = fge(a, lab / "fge", epochs=2, cycle=2, **QUICK)
    assert "ensemble_test_mae" in snapshots.snapshots[-1] and "test_mae" in snapshots.swa
    eval_curve(ab, points=5, **QUICK)
    page = report(lab).read_text()  # the report leads with the test loss where a task has no error
    assert "test error" not in page and "the test loss climbs to" in page and "ensemble test MAE" in page


def test_data_that_names_its_own_task_needs_no_task_option_and_a_task_class_is_built(lab):
    train(lab / "own", "yourlab:with_task", model="yourlab:small", epochs=1, **QUICK)
    run = json.loads((lab / "own" / "run.json").read_text())
    assert "task" not in run and "test_mae" in run  # the data's own task, found again by calling the data
    train(lab / "huber", "yourlab:pairs", model="yourlab:small", task="yourlab:Huber", epochs=1, **QUICK)
    run = json.loads((lab / "huber" / "run.json").read_text())
    assert run["task"] == "yourlab:Huber" and "test_mae" in run
    line = eval_line(lab / "huber", lab / "huber", lab / "line", points=3, **QUICK)
    assert line.settings["task"] == "huber"


def test_a_data_mapping_may_name_its_task_and_a_reference_read_from_a_run_names_the_run(lab, capsys, monkeypatch):
    train(lab / "a", "yourlab:named_task", model="yourlab:small", epochs=1, **QUICK)
    assert "test_mae" in json.loads((lab / "a" / "run.json").read_text())
    (lab / "code" / "yourlab.py").unlink()  # the module moved away: the run cannot find its data again
    monkeypatch.delitem(sys.modules, "yourlab")  # as a new process would find it
    code = main(["eval-line", str(lab / "a"), str(lab / "a"), "--out", str(lab / "line"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "run.json's dataset yourlab:named_task" in err, err
    assert "keep its module where it was" in err and not (lab / "line").exists()


def test_a_builder_gets_only_the_arguments_its_signature_takes(lab):
    train(lab / "n", "yourlab:pairs", model="yourlab:takes_nothing", task="regression", epochs=1, **QUICK)
    assert json.loads((lab / "n" / "run.json").read_text())["model"]["name"] == "yourlab:takes_nothing"


@pytest.mark.parametrize("args, message", [
    (["--model", "nosuchmodule:net"], "cannot import nosuchmodule"),
    (["--model", "code/yourlab.py:small"], "not a file: put its folder on PYTHONPATH"),
    (["--model", "yourlab:missing"], "yourlab has no 'missing'"),
    (["--model", "yourlab:not_a_module"], "returned a str, not an nn.Module"),
    (["--task", "yourlab:NOT_A_TASK"], "is a object, not a modeconn.Task"),
    (["--task", "huber"], "choose classification or regression"),
    (["--dataset", "yourlab:junk"], "returned a int: return a Dataset"),
    (["--dataset", "yourlab:pairs", "--data-dir", "."], "takes no data_dir argument"),
    (["--dataset", "yourlab:pairs", "--model", "yourlab:small"], "classification needs class indices"),
    (["--dataset", "yourlab:raises"], "yourlab:raises: calling it failed: OSError: the files are not there"),
    (["--dataset", "yourlab:empty_test"], "the test split holds no examples"),
    (["--model", "yourlab:builder_raises"], "building it failed: ValueError: boom inside the builder"),
    (["--model", "yourlab:Huber.loss"], "building it failed: TypeError"),
])
def test_bad_references_are_refused_in_one_line_and_nothing_is_written(lab, capsys, args, message):
    base = {"--dataset": "yourlab:pairs", "--model": "yourlab:small", "--task": "regression"}
    given = dict(zip(args[::2], args[1::2]))
    if args == ["--dataset", "yourlab:pairs", "--model", "yourlab:small"]:
        base.pop("--task")  # float targets read as class labels: the task is missing
    merged = [x for k, v in {**base, **given}.items() for x in (k, v)]
    code = main(["train", "--out", str(lab / "out"), "--epochs", "1", "--device", "cpu", "--quiet", *merged])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (lab / "out").exists()
