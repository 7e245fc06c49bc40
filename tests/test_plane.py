"""Planes through three networks: basis, exactness at the anchors, resume, bad input, batched grids."""
import copy
import subprocess
import sys

import numpy as np
import pytest
import torch

from modeconn import ModeconnError, TrainConfig, evaluate, train_network
from modeconn.commands import plane
from modeconn.core.flat import parameters_vector
from modeconn.core.plane import grid_axes, plane_basis
from modeconn.data import load_dataset
from modeconn.evaluation.pointwise import ROUND_POINTS, EvalSettings, PointEvaluator
from modeconn.models import create_model
from modeconn.storage.runfolder import load_network


def test_basis_is_orthonormal_and_reproduces_the_three_points():
    torch.manual_seed(0)
    w1, w2, w3 = torch.randn(3, 500, dtype=torch.float64)
    b = plane_basis(w1, w2, w3)
    assert b.orthogonality_error() < 1e-12
    xy, dist = b.project(torch.stack([w1, w2, w3]))
    assert np.allclose(dist, 0, atol=1e-10)
    assert xy[0].tolist() == [0.0, 0.0] and xy[1][1] == pytest.approx(0, abs=1e-12) and xy[2][1] > 0
    for w, (x, y) in zip((w1, w2, w3), xy):
        torch.testing.assert_close(b.point(x, y), w, atol=1e-10, rtol=0)
    assert b.u_norm == pytest.approx(float((w2 - w1).norm()))


def test_barycentric_coefficients_reproduce_the_plane_points():
    """point(x, y) = a w1 + b w2 + c w3 with a + b + c = 1; the anchors get the unit vectors."""
    torch.manual_seed(0)
    w = torch.randn(3, 200, dtype=torch.float64)
    basis = plane_basis(*w)
    anchors_xy = basis.anchor_coords(w[2])
    np.testing.assert_allclose(basis.barycentric(anchors_xy, anchors_xy), np.eye(3), atol=1e-12)
    coords = np.random.default_rng(0).uniform(-3, 10, size=(20, 2))
    coef = basis.barycentric(coords, anchors_xy)
    np.testing.assert_allclose(coef.sum(1), 1, atol=1e-12)
    torch.testing.assert_close(torch.as_tensor(coef) @ w, basis.points(coords), atol=1e-10, rtol=0)


def test_degenerate_points_are_refused():
    w = torch.randn(50)
    d = torch.randn(50)
    with pytest.raises(ModeconnError, match="identical"):
        plane_basis(w, w, d)
    with pytest.raises(ModeconnError, match="collinear"):
        plane_basis(w, w + d, w + 2.5 * d)
    with pytest.raises(ModeconnError, match="different sizes"):
        plane_basis(w, d, torch.randn(49))
    with pytest.raises(ModeconnError, match="`grid` must be >= 2"):
        grid_axes(np.zeros((3, 2)), 1, 0.2)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "modeconn", *map(str, args)], capture_output=True, text=True)


def test_cli_degenerate_inputs_write_nothing(tmp_path, mnist1d_runs):
    a, b = mnist1d_runs["a"], mnist1d_runs["b"]
    r = _cli("train", "--model", "mlp", "--epochs", "1", "--out", tmp_path / "mlp", "--quiet")
    assert r.returncode == 0, r.stderr
    cases = {
        "identical": (["--points", a, a, b], "identical"),
        "collinear": (["--points", a, b, a], "collinear"),
        "architectures": (["--points", a, b, tmp_path / "mlp"], "different architectures"),
        "grid": (["--curve", mnist1d_runs["ab"], "--grid", "1"], "--grid must be >= 2"),
    }
    for name, (args, message) in cases.items():
        r = _cli("plane", *args, "--out", tmp_path / name, "--quiet")
        assert r.returncode == 2, name
        assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / name).exists(), name


def test_grid_point_on_w1_equals_direct_evaluation(tmp_path, mnist1d_runs):
    r = plane(tmp_path / "p", curve=mnist1d_runs["ab"], grid=4, margin=0.0, device="cpu", progress=False)
    a = r.arrays()
    assert a["xs"][0] == 0.0 and a["ys"][0] == 0.0
    data = load_dataset("mnist1d")
    net = load_network(mnist1d_runs["a"], data)
    direct_test = evaluate(net, data.test_batches(1000))
    direct_train = evaluate(net, data.train_batches(1000, shuffle=False))
    assert a["test_loss"][0, 0] == pytest.approx(direct_test.loss, abs=1e-5)
    assert a["test_err"][0, 0] == pytest.approx(direct_test.err, abs=1e-5)
    assert a["train_loss"][0, 0] == pytest.approx(direct_train.loss, abs=1e-5)
    s = r.summary
    assert len(s["curve_distance_to_plane"]) == 61 and s["curve_distance_to_plane"][0] == pytest.approx(0, abs=1e-4)
    assert s["bends_distance_to_plane"][0] == pytest.approx(0, abs=1e-4)  # the bend spans the plane
    assert a["curve_xy"].shape == (61, 2) and a["bends_xy"].shape == (1, 2)
    assert (tmp_path / "p/plane.png").stat().st_size > 10_000


def test_killed_grid_resumes_to_the_same_arrays(tmp_path, mnist1d_runs, monkeypatch):
    kw = dict(curve=mnist1d_runs["ab"], grid=5, margin=0.2, device="cpu", progress=False)
    whole = plane(tmp_path / "whole", **kw).arrays()
    real_many = PointEvaluator.many
    calls = {"n": 0}

    def dying_many(self, weights):
        calls["n"] += 1
        if calls["n"] > 2:  # killed in the third round: two rounds of points were saved
            raise KeyboardInterrupt
        return real_many(self, weights)

    monkeypatch.setattr(PointEvaluator, "many", dying_many)
    with pytest.raises(KeyboardInterrupt):
        plane(tmp_path / "cut", **kw)
    assert (tmp_path / "cut/plane.partial.npz").exists() and not (tmp_path / "cut/plane.json").exists()
    counted = {"n": 0}

    def counting_many(self, weights):
        counted["n"] += len(weights)
        return real_many(self, weights)

    monkeypatch.setattr(PointEvaluator, "many", counting_many)
    resumed = plane(tmp_path / "cut", **kw).arrays()
    assert counted["n"] == 25 - 2 * ROUND_POINTS  # only the missing points
    for k in ("train_loss", "train_err", "test_loss", "test_err", "train_objective", "xs", "ys"):
        np.testing.assert_array_equal(resumed[k], whole[k])
    assert not (tmp_path / "cut/plane.partial.npz").exists()
    with pytest.raises(ModeconnError, match="plane.json exists; pass --force"):
        plane(tmp_path / "cut", **kw)


def test_batched_and_one_at_a_time_agree_with_batchnorm(fashion_mnist):
    full = fashion_mnist
    data = full.subset(train=1500, test=500)
    torch.manual_seed(0)
    nets = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        net = create_model("convbn", data.input_shape, 10, channels=8, hidden=32)
        train_network(net, data, TrainConfig(epochs=1, lr=0.05, batch_size=100, seed=seed), progress=False)
        nets.append(net)
    basis = plane_basis(*(parameters_vector(n) for n in nets))
    coords = np.array([(x, y) for x in np.linspace(-2, 10, 3) for y in np.linspace(-2, 8, 2)])
    weights = basis.points(coords)
    settings = EvalSettings(wd=5e-4, batch_size=250)
    one = PointEvaluator(copy.deepcopy(nets[0]), data, settings, chunk=1).many(weights)
    batched_ev = PointEvaluator(copy.deepcopy(nets[0]), data, settings, chunk=4)
    batched = batched_ev.many(weights)
    assert batched_ev.bn_passes == len(coords)
    for r1, r2 in zip(one, batched):
        for k, v in r1.to_dict().items():
            assert r2.to_dict()[k] == pytest.approx(v, abs=1e-5), k
    assert len({round(r.test.loss, 6) for r in one}) == len(coords)  # the points really differ
