"""Slices of the loss landscape: filter-normalised and PCA directions, exact centres, resume, bad input."""
import numpy as np
import pytest
import torch

from modeconn import ModeconnError, evaluate
from modeconn.commands import landscape, train
from modeconn.core.directions import pca_directions, random_directions
from modeconn.core.flat import parameter_space, parameters_vector
from modeconn.data import load_dataset
from modeconn.evaluation.pointwise import ROUND_POINTS, PointEvaluator
from modeconn.models import create_model
from modeconn.storage.files import load_tensors
from modeconn.storage.runfolder import load_curve, load_network

QUICK = dict(device="cpu", progress=False)


def _filter_norms(t: torch.Tensor) -> torch.Tensor:
    return t.double().flatten(1).norm(dim=1)


@pytest.mark.parametrize("name, shape", [("convbn", (1, 28, 28)), ("conv1d", (40,)), ("mlp", (40,))])
def test_each_filter_of_a_direction_has_the_networks_filter_norm(name, shape):
    torch.manual_seed(0)
    net = create_model(name, shape, 10)
    space, w = parameter_space(net), parameters_vector(net)
    d = random_directions(space, w, 2, seed=7)
    again = random_directions(space, w, 2, seed=7)
    torch.testing.assert_close(d, again, rtol=0, atol=0)  # the same seed, the same directions
    assert not torch.allclose(d, random_directions(space, w, 2, seed=8))
    assert not torch.allclose(d[0], d[1])
    with_bn = random_directions(space, w, 1, seed=7, bn_directions=True)[0]
    for k in range(2):
        views, weights, bn_views = space.unflatten(d[k]), space.unflatten(w), space.unflatten(with_bn)
        for slot in space.slots:
            if len(slot.shape) > 1:
                torch.testing.assert_close(_filter_norms(views[slot.name]), _filter_norms(weights[slot.name]),
                                           rtol=1e-6, atol=1e-6)
            else:  # biases and BatchNorm stay unless asked; asked, they move along the weights themselves
                assert torch.count_nonzero(views[slot.name]) == 0, slot.name
                torch.testing.assert_close(bn_views[slot.name], weights[slot.name])


def test_pca_of_a_trajectory_gives_unit_orthogonal_directions_and_exact_coordinates():
    torch.manual_seed(0)
    centre = torch.randn(300, dtype=torch.float64)
    states = centre + torch.randn(6, 2, dtype=torch.float64) @ torch.randn(2, 300, dtype=torch.float64)
    dirs, xy, explained = pca_directions(states, centre, 2)
    torch.testing.assert_close(dirs @ dirs.T, torch.eye(2, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(centre + xy @ dirs, states, atol=1e-9, rtol=0)  # states lie in the 2-D span
    assert sum(explained) == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ModeconnError, match="at least 3 kept states"):
        pca_directions(states[:2], centre, 2)


def test_the_slice_centre_is_the_network_and_the_curve_point(mnist1d_runs, tmp_path):
    """The middle of an odd grid is the network itself: its metrics match a direct evaluation; a curve's
    point at t = 0 is its start network."""
    data = load_dataset("mnist1d")
    net = load_network(mnist1d_runs["a"], data)
    direct = evaluate(net, data.test_batches(1000))
    one = landscape(tmp_path / "one", run=mnist1d_runs["a"], dims=1, grid=3, **QUICK)
    assert one.metrics["test_loss"][1] == pytest.approx(direct.loss, abs=1e-5)
    assert one.metrics["test_err"][1] == pytest.approx(direct.err, abs=1e-6)
    assert one.metrics["test_loss"][0] > direct.loss and one.metrics["test_loss"][2] > direct.loss
    assert one.summary["batchnorm"] == "none"  # conv1d has no BatchNorm: nothing is said to be recomputed
    saved = load_tensors(tmp_path / "one" / "directions.safetensors")
    torch.testing.assert_close(saved["centre"], parameters_vector(net))
    curve = landscape(tmp_path / "curve", curve=mnist1d_runs["ab"], t=0.0, dims=2, grid=3, **QUICK)
    assert curve.metrics["test_loss"][1, 1] == pytest.approx(direct.loss, abs=1e-5)
    assert curve.summary["centre"] == {"curve": str(mnist1d_runs["ab"]), "t": 0.0}
    path = load_curve(mnist1d_runs["ab"])[0]
    mid = landscape(tmp_path / "mid", curve=mnist1d_runs["ab"], dims=1, grid=3, **QUICK)
    torch.testing.assert_close(load_tensors(tmp_path / "mid" / "directions.safetensors")["centre"],
                               path.weights(0.5).detach())
    assert mid.summary["centre"]["t"] == 0.5


def test_pca_slice_of_a_kept_trajectory(tmp_path):
    train(tmp_path / "a", epochs=4, keep_every=1, **QUICK)
    assert sorted(p.name for p in (tmp_path / "a").glob("epoch*")) == ["epoch1", "epoch2", "epoch3"]
    r = landscape(tmp_path / "pca", run=tmp_path / "a", directions="pca", trajectory=tmp_path / "a", grid=3,
                  train_samples=500, **QUICK)
    xy = r.trajectory["trajectory_xy"]
    assert xy.shape == (4, 2) and r.trajectory["trajectory_epochs"].tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(xy[-1], 0, atol=1e-5)  # the centre is the trajectory's last state
    assert r.axes[0][-1] == pytest.approx(np.abs(xy[:, 0]).max())  # --span 1 covers the trajectory exactly
    assert (tmp_path / "pca" / "landscape.png").stat().st_size > 10_000
    train(tmp_path / "short", epochs=2, keep_every=1, **QUICK)
    with pytest.raises(ModeconnError, match="PCA needs at least 3"):
        landscape(tmp_path / "x", run=tmp_path / "short", directions="pca", trajectory=tmp_path / "short", **QUICK)
    assert not (tmp_path / "x").exists()


def test_killed_slice_resumes_to_the_same_arrays(tmp_path, mnist1d_runs, monkeypatch):
    kw = dict(run=mnist1d_runs["a"], grid=4, span=0.5, train_samples=1000, **QUICK)
    whole = landscape(tmp_path / "whole", **kw).arrays()
    real_many = PointEvaluator.many
    calls = {"n": 0}

    def dying_many(self, weights):
        calls["n"] += 1
        if calls["n"] > 1:  # killed in the second round: one round of points was saved
            raise KeyboardInterrupt
        return real_many(self, weights)

    monkeypatch.setattr(PointEvaluator, "many", dying_many)
    with pytest.raises(KeyboardInterrupt):
        landscape(tmp_path / "cut", **kw)
    assert (tmp_path / "cut/landscape.partial.npz").exists() and not (tmp_path / "cut/landscape.json").exists()
    with pytest.raises(ModeconnError, match="started with other settings"):
        landscape(tmp_path / "cut", **{**kw, "seed": 1})
    counted = {"n": 0}

    def counting_many(self, weights):
        counted["n"] += len(weights)
        return real_many(self, weights)

    monkeypatch.setattr(PointEvaluator, "many", counting_many)
    resumed = landscape(tmp_path / "cut", **kw).arrays()
    assert counted["n"] == 16 - ROUND_POINTS  # only the missing points
    for k, v in whole.items():
        np.testing.assert_array_equal(resumed[k], v, err_msg=k)
    assert not (tmp_path / "cut/landscape.partial.npz").exists()
    seeded = landscape(tmp_path / "seeded", **{**kw, "seed": 1})
    assert seeded.summary["settings"]["seed"] == 1  # the directions' seed, not the evaluation subset's
