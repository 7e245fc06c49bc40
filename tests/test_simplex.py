"""Simplexes of networks: exact at vertices and edges, uniform sampling, gradients, the volume term."""
import json
import math

import pytest
import torch
from torch import nn

from modeconn import Curve, ModeconnError, Simplex
from modeconn.models import create_model


def _nets(k, make=lambda: create_model("convbn", (1, 12, 12), 5, channels=4, hidden=8)):
    nets = []
    for seed in range(k):
        torch.manual_seed(seed)
        net = make()
        for m in net.modules():  # non-trivial BN statistics
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
        nets.append(net.eval())
    return nets


X = torch.randn(6, 1, 12, 12, generator=torch.Generator().manual_seed(9))


def test_a_1_simplex_is_the_straight_line():
    a, b = _nets(2)
    simplex, line = Simplex([a, b]).eval(), Curve(a, b, bends=0).eval()
    for t in (0.0, 0.3, 0.5, 1.0):
        torch.testing.assert_close(simplex(X, [1 - t, t]), line(X, t), rtol=1e-6, atol=1e-6)


def test_a_2_simplex_reproduces_its_vertices_exactly():
    nets = _nets(3)
    simplex = Simplex(nets, free=[False, True, True]).eval()
    for k, net in enumerate(nets):
        weights = [float(i == k) for i in range(3)]
        assert torch.equal(simplex(X, weights), net(X))
        for (name, got), want in zip(simplex.model_at(weights).state_dict().items(), net.state_dict().values()):
            assert torch.equal(got, want), name


def test_sampled_weights_are_uniform_over_the_simplex():
    """Dirichlet(1, 1, 1): mean 1/3, variance 1/18, covariance -1/36 (5000 draws: a few stderr)."""
    simplex = Simplex(_nets(3))
    gen = torch.Generator().manual_seed(0)
    a = torch.tensor([simplex.sample_weights(gen) for _ in range(5000)], dtype=torch.float64)
    assert (a >= 0).all() and torch.allclose(a.sum(1), torch.ones(5000, dtype=torch.float64))
    assert torch.allclose(a.mean(0), torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.01)
    cov = torch.cov(a.T)
    assert torch.allclose(cov.diagonal(), torch.full((3,), 1 / 18, dtype=torch.float64), atol=0.004)
    assert abs(float(cov[0, 1]) + 1 / 36) < 0.004


def test_gradients_reach_only_the_free_vertices():
    nets = _nets(3)
    simplex = Simplex(nets, free=[False, True, False]).train()
    simplex(X, [0.2, 0.5, 0.3], wd=1e-3).square().mean().backward()
    assert simplex.free_points.shape[0] == 1 and simplex.free_points.grad.abs().sum() > 0
    assert not simplex.fixed_points.requires_grad
    torch.testing.assert_close(simplex.control_points()[0], torch.cat([p.flatten() for p in nets[0].parameters()]))


def test_the_volume_and_its_gradient_agree_with_geometry_and_finite_differences():
    simplex = Simplex(_nets(3, lambda: nn.Linear(2, 2).double()), free=[False, True, True])  # float64: exact eps
    v = simplex.control_points().detach().double()
    a, b, c = v
    cos = torch.dot(b - a, c - a) / ((b - a).norm() * (c - a).norm())
    area = 0.5 * (b - a).norm() * (c - a).norm() * torch.sqrt(1 - cos ** 2)  # a triangle's area
    assert float(simplex.volume().detach()) == pytest.approx(float(area), rel=1e-9)
    log_vol = torch.log(simplex.volume() + 1e-4)
    grad, = torch.autograd.grad(log_vol, simplex.free_points)
    eps, free = 1e-6, simplex.free_points
    for i, j in [(0, 0), (0, 3), (1, 5)]:
        with torch.no_grad():
            free[i, j] += eps
            up = float(torch.log(simplex.volume() + 1e-4))
            free[i, j] -= 2 * eps
            down = float(torch.log(simplex.volume() + 1e-4))
            free[i, j] += eps
        assert float(grad[i, j]) == pytest.approx((up - down) / (2 * eps), rel=1e-4, abs=1e-6)


def test_a_grown_simplex_adds_a_free_vertex_at_the_centroid_with_no_volume_gradient_yet():
    simplex = Simplex(_nets(2), free=[False, True])
    grown = simplex.grown()
    assert grown.num_points == 3 and grown._free_rows == [2]
    torch.testing.assert_close(grown.control_points()[2], simplex.control_points().mean(0).detach())
    assert float(grown.volume().detach()) < 1e-6 * float(simplex.volume().detach())
    grad, = torch.autograd.grad(torch.log(grown.volume() + 1e-4), grown.free_points)
    assert torch.isfinite(grad).all()


def test_bad_simplexes_are_refused():
    with pytest.raises(ModeconnError, match="at least 2 vertices"):
        Simplex(_nets(1))
    with pytest.raises(ModeconnError, match="different architectures"):
        Simplex([create_model("mlp", (4,), 2), create_model("mlp", (5,), 2)])
    simplex = Simplex(_nets(3))
    for bad in ([0.5, 0.5], [0.5, 0.6, -0.1], [0.2, 0.2, 0.2], [math.nan, 0.5, 0.5]):
        with pytest.raises(ModeconnError, match="barycentric"):
            simplex.model_at(bad)


def test_spro_on_mnist1d_grows_a_simplex_whose_points_stay_near_the_networks_error(mnist1d_runs):
    """Benton et al.'s claim, on MNIST-1D. Measured (conv1d trained 50 epochs, seeds 0-2; 2 vertices of
    10 epochs, volume weight 0.01): volume 3.6-5.9, vertices 1.2-7.6 from the network; over 20
    sampled points the mean test error is 0.4-1.5 points above the network's (max 7.9% vs 3.9%)."""
    from modeconn.data import load_mnist1d
    from modeconn.evaluation.evaluate import split_metrics
    from modeconn.storage.runfolder import load_network
    from modeconn.training.spro import first_stage, grow_simplex
    from modeconn.training.train import TrainConfig

    data = load_mnist1d()
    net = load_network(mnist1d_runs["a"], data)
    own = split_metrics(net, data).test.err
    simplex = grow_simplex(first_stage([net]), data,
                           TrainConfig(epochs=10, lr=0.01, wd=5e-4, batch_size=64, seed=1), vertices=2,
                           volume_weight=0.01, progress=False)
    assert simplex.num_points == 3 and float(simplex.volume().detach()) > 1.0
    assert float(simplex.distances()[0, 1:].min()) > 0.5  # the vertices left the network
    gen = torch.Generator().manual_seed(5)
    errs = [split_metrics(simplex.model_at(simplex.sample_weights(gen)), data).test.err for _ in range(20)]
    assert sum(errs) / len(errs) <= own + 0.03, (own, errs)


def test_the_simplex_command_writes_its_run_and_resumes_a_killed_run(tmp_path, mnist1d_runs, kill_after_checkpoints):
    from modeconn.commands import simplex as simplex_command

    kw = dict(vertices=2, epochs=3, volume_weight=0.01, device="cpu", progress=False)
    whole = simplex_command(mnist1d_runs["a"], tmp_path / "whole", **kw)
    assert (sorted(p.name for p in (tmp_path / "whole").iterdir() if p.name[0] != ".")
            == ["run.json", "simplex.safetensors"])
    assert whole.raw["vertices"] == 3 and len(whole.raw["distances"]) == 3
    assert len(whole.raw["stage_train_loss"]) == 2
    assert whole.raw["made_with"]["device"] == "cpu" and whole.raw["made_with"]["torch"] == torch.__version__
    assert whole.raw["metrics"]["vertex0"]["test_err"] == pytest.approx(
        json.loads((mnist1d_runs["a"] / "run.json").read_text())["test_err"], abs=1e-9)
    from modeconn.commands import eval_simplex, report
    from modeconn.evaluation.evaluate import split_metrics
    from modeconn.storage.runfolder import load_simplex

    ev = eval_simplex(tmp_path / "whole", samples=4, device="cpu", progress=False)
    assert ev.summary["test_err"]["mean"] == pytest.approx(sum(ev.metrics["test_err"]) / 4, abs=1e-12)
    assert ev.batchnorm == "none"  # conv1d: no BatchNorm statistics to recompute
    assert json.loads((tmp_path / "whole" / "simplex_eval.json").read_text())["test_err"] == ev.metrics["test_err"]
    shape, _, data = load_simplex(tmp_path / "whole")
    own = split_metrics(shape.model_at(ev.weights[2]), data)  # the same point, built another way
    assert abs(own.test.err - ev.metrics["test_err"][2]) <= 2 / len(data.test_y)
    assert own.train.loss == pytest.approx(ev.metrics["train_loss"][2], rel=1e-4)

    from modeconn.commands import ensemble

    ens = ensemble(simplex=tmp_path / "whole", points=4, device="cpu", progress=False)  # the same seed: the same points
    assert [m["weights"] for m in ens.members] == ev.weights
    for member, err in zip(ens.members, ev.metrics["test_err"]):
        assert abs(member["test_err"] - err) <= 2 / len(data.test_y)
    assert ens.ensemble.nll <= sum(m["test_nll"] for m in ens.members) / 4 + 1e-9  # Jensen: never worse than the mean
    assert json.loads((tmp_path / "whole" / "ensemble.json").read_text())["simplex"] == str(tmp_path / "whole")

    page = report(tmp_path / "whole").read_text()
    assert (tmp_path / "whole" / "simplex_eval.png").exists()  # a triangle: its heat map, shown in the report
    assert ('alt="test error over whole"' in page
            and f"has mean <b>{100 * ev.summary['test_err']['mean']:.2f}%" in page)
    assert "<td>SPRO</td>" in page and f"{whole.raw['volume']:.4g}" in page
    undo = kill_after_checkpoints(4)  # stage 1: 3 epochs; stage 2: its first
    with pytest.raises(KeyboardInterrupt):
        simplex_command(mnist1d_runs["a"], tmp_path / "cut", **kw)
    undo()
    with pytest.raises(ModeconnError, match="pass --resume"):
        simplex_command(mnist1d_runs["a"], tmp_path / "cut", **kw)
    with pytest.raises(ModeconnError, match="volume_weight"):
        simplex_command(mnist1d_runs["a"], tmp_path / "cut", **{**kw, "volume_weight": 0.1}, resume=True)
    resumed = simplex_command(mnist1d_runs["a"], tmp_path / "cut", **kw, resume=True)
    assert resumed.raw["metrics"] == whole.raw["metrics"]
    assert resumed.raw["volume"] == pytest.approx(whole.raw["volume"], rel=1e-9)


def test_the_kept_fixed_block_gives_the_full_volume_and_follows_changed_fixed_points():
    def reference(s):
        v = s.control_points().detach().double()
        e = v[1:] - v[0]
        return float(torch.linalg.det(e @ e.T).sqrt()) / math.factorial(s.num_points - 1)

    simplex = Simplex(_nets(4, lambda: nn.Linear(3, 2).double()), free=[False, True, False, True])
    assert float(simplex.volume().detach()) == pytest.approx(reference(simplex), rel=1e-9)
    with torch.no_grad():
        simplex.fixed_points[1].mul_(2.0)  # e.g. load_state_dict: the kept block must not be reused
    assert float(simplex.volume().detach()) == pytest.approx(reference(simplex), rel=1e-9)


@pytest.mark.parametrize("faces, free", [([[0, 2, 3], [1, 2, 3]], [False, False, True, True]),  # connecting 2 networks
                                         ([[0, 1, 3], [1, 2, 3]], [False, False, False, True]),  # around a polychain
                                         ([[0, 1, 2], [0, 2, 3]], [False, True, False, False])])  # free row not in all
def test_a_complexs_volume_from_kept_fixed_blocks_equals_the_direct_one_with_its_gradient(faces, free):
    """Each face's fixed Gram block is kept as a single simplex's is; values and gradients equal the
    faces' Gram matrices formed directly from all control points in float64."""
    complex_ = Simplex(_nets(4, lambda: nn.Linear(3, 2).double()), free=free, faces=faces)
    with torch.no_grad():
        complex_.free_points.add_(torch.randn_like(complex_.free_points))
    results = []
    for direct in (False, True):
        complex_.free_points.grad = None
        if direct:
            v = complex_.control_points().double()
            volume = sum(torch.linalg.det(_gram_of(v[face])).sqrt() / math.factorial(len(face) - 1) for face in faces)
        else:
            volume = complex_.volume()
        volume.backward()
        results.append((float(volume.detach()), complex_.free_points.grad.clone()))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-9)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-6, atol=1e-9)
    assert complex_.volume().item() == pytest.approx(results[1][0], rel=1e-9)  # the kept blocks, reused


def _gram_of(v):
    e = v[1:] - v[0]
    return e @ e.T


def test_a_complex_draws_from_one_face_at_a_time_and_sums_its_faces_volumes():
    nets = _nets(4, lambda: nn.Linear(3, 2).double())
    complex_ = Simplex(nets, free=[False, False, True, True], faces=[[0, 2, 3], [1, 2, 3]])
    assert complex_.is_complex and not Simplex(nets).is_complex
    gen = torch.Generator().manual_seed(0)
    draws = torch.tensor([complex_.sample_weights(gen) for _ in range(4000)], dtype=torch.float64)
    on_first = draws[:, 1] == 0
    assert ((draws[:, 0] == 0) ^ on_first).all()  # never both networks 0 and 1: each draw lies on one face
    assert abs(float(on_first.double().mean()) - 0.5) < 0.03
    assert abs(float(draws[on_first, 0].mean()) - 1 / 3) < 0.02  # Dirichlet(1) within the face
    faces = [Simplex([nets[k] for k in face]) for face in ([0, 2, 3], [1, 2, 3])]
    assert float(complex_.volume().detach()) == pytest.approx(sum(float(f.volume().detach()) for f in faces), rel=1e-9)
    grown = complex_.grown()
    assert grown.faces == [[0, 2, 3, 4], [1, 2, 3, 4]] and grown.free_points.shape[0] == 1
    torch.testing.assert_close(grown.control_points()[4], complex_.control_points().mean(0))
    assert complex_.face_centres() == [[1 / 3, 0.0, 1 / 3, 1 / 3], [0.0, 1 / 3, 1 / 3, 1 / 3]]
    with pytest.raises(ModeconnError, match="face_centres"):
        complex_.centroid()  # a complex has no single centre
    assert Simplex(nets[:3]).centroid() == [1 / 3] * 3
    for bad in ([[0, 5]], [[0, 0, 1]], [[0, 1]], []):
        with pytest.raises(ModeconnError, match="faces"):
            Simplex(nets, faces=bad)


def test_a_complex_connects_two_networks_and_a_polychain_curve_extends_into_one(tmp_path, mnist1d_runs):
    """Benton et al.'s mode-connecting volumes on MNIST-1D (networks a and b, 2 shared vertices of 50
    epochs each from lr 0.05, volume weight 0.01). Measured: 30 drawn points at 4.5-6.4% test error
    (mean 5.4%; the networks 3.7% and 4.4%), where the line between the networks peaks near 80%. With
    Benton's 10 epochs from lr 0.01 a vertex, the complex was at 4.6-23% (mean 13.5%). A one-bend
    polychain curve grown by one vertex (10 epochs): 30 points at 4.8-9.1% (mean 5.9%)."""
    from modeconn.commands import connect, eval_simplex
    from modeconn.commands import simplex as simplex_command
    from modeconn.evaluation.evaluate import split_metrics
    from modeconn.storage.runfolder import load_curve, load_simplex

    kw = dict(volume_weight=0.01, device="cpu", progress=False)
    info = simplex_command([mnist1d_runs["a"], mnist1d_runs["b"]], tmp_path / "cx", vertices=2, **kw)
    assert info.raw["faces"] == [[0, 2, 3], [1, 2, 3]] and info.raw["config"]["epochs"] == 50
    assert "centroid" not in info.raw["metrics"] and len(info.raw["face_centres_test_err"]) == 2
    assert info.raw["face_centres_test_err"][1] == info.raw["metrics"]["face1_centre"]["test_err"] <= 0.15
    for k, run in enumerate(("a", "b")):
        assert info.raw["metrics"][f"vertex{k}"]["test_err"] == pytest.approx(
            json.loads((mnist1d_runs[run] / "run.json").read_text())["test_err"], abs=1e-9)
    ev = eval_simplex(tmp_path / "cx", samples=20, device="cpu", progress=False)
    assert all(w[0] == 0 or w[1] == 0 for w in ev.weights)
    assert ev.summary["test_err"]["max"] <= 0.15, ev.metrics["test_err"]
    shape, _, _ = load_simplex(tmp_path / "cx")
    assert shape.faces == info.raw["faces"]

    connect(mnist1d_runs["a"], mnist1d_runs["b"], tmp_path / "pc", curve="polychain", device="cpu", progress=False)
    grown = simplex_command(tmp_path / "pc", tmp_path / "pcx", vertices=1, **kw)
    assert grown.raw["faces"] == [[0, 1, 3], [1, 2, 3]] and grown.raw["vertices"] == 4
    assert grown.raw["volume"] > 1
    curve, _, data = load_curve(tmp_path / "pc")
    for k in range(3):  # the first three vertices are the curve's start, bend and end, unchanged
        assert grown.raw["metrics"][f"vertex{k}"]["test_err"] == pytest.approx(
            split_metrics(curve.control_model(k), data).test.err, abs=1e-9)
    ev = eval_simplex(tmp_path / "pcx", samples=20, device="cpu", progress=False)
    assert ev.summary["test_err"]["mean"] <= 0.10, ev.metrics["test_err"]
    from modeconn.commands import report  # the report names each face's centre of a complex
    page = report(tmp_path).read_text()
    for err in (*info.raw["face_centres_test_err"], *grown.raw["face_centres_test_err"]):
        assert f"{100 * err:.2f}%" in page


def test_spro_on_fashion_mnist_keeps_the_networks_error(fashion_mnist):
    """Benton et al.'s claim on Fashion-MNIST (MLP 2 x 256, 10 epochs; 2 vertices of 5 epochs from lr
    0.01, volume weight 0.01). Measured, seeds 0-2: volume 7.8-7.9, 20 drawn points' mean test error
    10.49/10.01/10.14% against the network's 10.49/10.02/10.22% (max 10.56%)."""
    from modeconn.evaluation.evaluate import split_metrics
    from modeconn.training.spro import first_stage, grow_simplex
    from modeconn.training.train import TrainConfig, train_network

    torch.manual_seed(0)
    net = create_model("mlp", fashion_mnist.input_shape, 10)
    train_network(net, fashion_mnist, TrainConfig(epochs=10, lr=0.05, batch_size=128), progress=False)
    own = split_metrics(net, fashion_mnist).test.err
    simplex = grow_simplex(first_stage([net]), fashion_mnist, TrainConfig(epochs=5, lr=0.01, batch_size=128, seed=1),
                           vertices=2, volume_weight=0.01, progress=False)
    assert float(simplex.volume().detach()) > 1.0
    gen = torch.Generator().manual_seed(5)
    errs = [split_metrics(simplex.model_at(simplex.sample_weights(gen)), fashion_mnist).test.err for _ in range(20)]
    assert sum(errs) / len(errs) <= own + 0.01, (own, errs)
