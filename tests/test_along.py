"""Evaluation along curves and lines: exact BN, endpoints, barriers, files (issue: eval-curve/eval-line)."""
import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from modeconn import Curve, TrainConfig, evaluate, recompute_bn, train_network
from modeconn.data import load_dataset
from modeconn.evaluation.along import barrier, eval_path, line_between, metrics_along
from modeconn.evaluation.pointwise import METRICS, EvalSettings, PointEvaluator
from modeconn.models import create_model


@pytest.fixture(scope="module")
def fashion_small(fashion_mnist):
    """2000/500 real Fashion-MNIST images and two convbn nets (BatchNorm) trained for one epoch."""
    full = fashion_mnist
    data = full.subset(train=2000, test=500)
    nets = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        net = create_model("convbn", data.input_shape, 10, channels=8, hidden=32)
        train_network(net, data, TrainConfig(epochs=1, lr=0.05, batch_size=100, seed=seed), progress=False)
        nets.append(net)
    return data, nets


def _direct(net, data, settings):
    net = copy.deepcopy(net)
    recompute_bn(net, settings.bn_batches(data))
    return {"train": evaluate(net, settings.train_batches(data)),
            "test": evaluate(net, data.test_batches(settings.batch_size))}


def test_endpoints_match_direct_evaluation_with_bn(fashion_small):
    data, (a, b) = fashion_small
    curve = Curve(a, b, kind="bezier", bends=1)
    with torch.no_grad():
        curve.free_points.add_(0.05 * torch.randn_like(curve.free_points))  # a real bend
    settings = EvalSettings(wd=5e-4, batch_size=250)
    arrays = metrics_along(curve, [0.0, 0.5, 1.0], data, settings, progress=False)
    for i, net in ((0, a), (2, b)):
        d = _direct(net, data, settings)
        assert arrays["train_loss"][i] == pytest.approx(d["train"].loss, abs=1e-5)
        assert arrays["train_err"][i] == pytest.approx(d["train"].err, abs=1e-5)
        assert arrays["test_loss"][i] == pytest.approx(d["test"].loss, abs=1e-5)
        assert arrays["test_err"][i] == pytest.approx(d["test"].err, abs=1e-5)


def test_bn_pass_runs_per_point_only_for_bn_networks(fashion_small, mnist1d_runs):
    data, (a, b) = fashion_small
    ev = PointEvaluator(copy.deepcopy(a), data, EvalSettings(batch_size=500))
    curve = line_between(a, b)
    for t in (0.0, 0.5):
        ev(curve.weights(t).detach())
    assert ev.bn_passes == 2
    mnist = load_dataset("mnist1d")
    plain = create_model("conv1d", mnist.input_shape, 10)
    ev = PointEvaluator(plain, mnist, EvalSettings())
    calls = {"n": 0}
    hook = plain.register_forward_pre_hook(lambda m, i: calls.__setitem__("n", calls["n"] + 1))
    ev(torch.nn.utils.parameters_to_vector(plain.parameters()).detach())
    hook.remove()
    assert ev.bn_passes == 0
    n_eval_batches = len(ev.train_batches) + len(ev.test_batches)
    assert calls["n"] == n_eval_batches  # evaluation only: no extra pass over the training data


def test_bn_samples_uses_a_subset(fashion_small):
    data, (a, _) = fashion_small
    settings = EvalSettings(batch_size=100, bn_samples=300)
    assert sum(len(x) for x, _ in settings.bn_batches(data)) == 300


def test_line_from_a_model_to_itself_has_zero_barrier(fashion_small):
    data, (a, _) = fashion_small
    result = eval_path(None, a, a, data, points=5, settings=EvalSettings(batch_size=500), progress=False)
    for m in METRICS:
        assert result.stat("line", m, "barrier") == pytest.approx(0.0, abs=1e-9)
    assert result.summary["length"]["line"] == 0.0
    assert result.settings["batchnorm"] is True  # convbn: its statistics were recomputed, and the file says so


def test_barrier_definition():
    t = np.linspace(0, 1, 5)
    assert barrier([1, 2, 5, 2, 3], t) == pytest.approx(5 - 2)
    assert barrier([1, 1.5, 2, 2.5, 3], t) == pytest.approx(0.0)
    assert barrier([1, 0, 0, 0, 1], t) == pytest.approx(0.0)  # below the chord everywhere


def test_mnist1d_curve_vs_line_barriers(mnist1d_runs, tmp_path):
    """Real data: the line between two seeds has a large test-error barrier; the trained curve nearly none."""
    r = subprocess.run([sys.executable, "-m", "modeconn", "eval-curve", str(mnist1d_runs["ab"]), "--points", "21",
                        "--out", str(tmp_path), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "curve_eval.json").read_text())
    barriers = result["summary"]["barriers"]
    # Measured on this data: line ~0.82, curve ~0.02.
    assert barriers["line"]["test_err"] > 0.3
    assert barriers["curve"]["test_err"] < 0.05
    assert result["summary"]["length"]["curve"] > result["summary"]["length"]["line"] > 0


def test_eval_curve_json_keys_and_lengths_and_reads_nothing_back(mnist1d_runs, tmp_path):
    before = {p.name: p.read_bytes() for p in mnist1d_runs["ab"].iterdir() if p.is_file()}
    r = subprocess.run([sys.executable, "-m", "modeconn", "eval-curve", str(mnist1d_runs["ab"]), "--points", "7",
                        "--out", str(tmp_path), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "curve_eval.json").read_text())
    assert len(result["t"]) == 7
    for path in ("curve", "line"):
        for m in ("train_loss", "train_err", "test_loss", "test_err", "train_objective"):
            assert len(result[path][m]) == 7
            s = result["summary"][path][m]
            assert set(s) >= {"min", "max", "mean", "arc_mean", "barrier"}
            assert s["min"] <= s["arc_mean"] <= s["max"]
        obj = np.array(result[path]["train_objective"]) - np.array(result[path]["train_loss"])
        assert (obj > 0).all()  # the L2 term, kept separate from plain cross-entropy
    assert (tmp_path / "curve_eval.png").stat().st_size > 10_000
    after = {p.name: p.read_bytes() for p in mnist1d_runs["ab"].iterdir() if p.is_file()}
    assert after == before
    r = subprocess.run([sys.executable, "-m", "modeconn", "eval-curve", str(mnist1d_runs["ab"]), "--points", "7",
                        "--out", str(tmp_path), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 2 and "--force" in r.stderr


def test_eval_line_cli(mnist1d_runs, tmp_path):
    r = subprocess.run([sys.executable, "-m", "modeconn", "eval-line", str(mnist1d_runs["a"]), str(mnist1d_runs["b"]),
                        "--points", "5", "--out", str(tmp_path / "lmc"), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "lmc/line_eval.json").read_text())
    assert "curve" not in result and len(result["line"]["test_err"]) == 5
    assert result["summary"]["barriers"]["line"]["test_err"] > 0.3
