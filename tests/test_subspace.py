"""Subspaces trained from scratch (Wortsman et al. 2021): the line through free networks, the spread term,
the command's files, and the science on MNIST-1D."""
import json

import pytest
import torch

from modeconn import Curve, ModeconnError, Simplex
from modeconn.models import create_model
from modeconn.training.subspace import _RangedGram, matrix_ranges, squared_cosine


def _nets(k):
    nets = []
    for seed in range(k):
        torch.manual_seed(seed)
        nets.append(create_model("convbn", (1, 12, 12), 5, channels=4, hidden=8).eval())
    return nets


X = torch.randn(6, 1, 12, 12, generator=torch.Generator().manual_seed(9))


def test_a_curve_through_two_free_networks_is_their_line_and_trains_both():
    a, b = _nets(2)
    through, line = Curve.through([a, b]).eval(), Curve(a, b, bends=0).eval()
    assert through.fixed_points.shape[0] == 0 and through.free_points.shape[0] == 2
    for t in (0.0, 0.3, 1.0):
        torch.testing.assert_close(through(X, t), line(X, t), rtol=1e-6, atol=1e-6)
    through(X, 0.3).sum().backward()
    grad = through.free_points.grad
    assert grad[0].abs().sum() > 0 and grad[1].abs().sum() > 0
    # phi(0.3) = 0.7 a + 0.3 b: each row's gradient is its coefficient times phi's
    torch.testing.assert_close(grad[0] * 0.3, grad[1] * 0.7, rtol=1e-5, atol=1e-7)
    with pytest.raises(ModeconnError, match="different architectures"):
        Curve.through([a, create_model("mlp", (1, 12, 12), 5)])


def test_the_spread_term_is_the_mean_squared_cosine_of_the_weight_matrices():
    nets = _nets(3)
    simplex = Simplex(nets, free=[True] * 3).double()
    ranges = matrix_ranges(simplex)
    matrices = [name for name, p in nets[0].named_parameters() if p.dim() >= 2]
    covered = sum(stop - start for start, stop in ranges)
    assert covered == sum(p.numel() for name, p in nets[0].named_parameters() if name in matrices)
    assert 0 < covered < simplex.free_points.shape[1]  # biases and BN scales left out
    flat = [torch.cat([dict(n.named_parameters())[m].detach().double().reshape(-1) for m in matrices]) for n in nets]
    cos2 = [float(torch.dot(flat[i], flat[j]) ** 2 / (flat[i].dot(flat[i]) * flat[j].dot(flat[j])))
            for i in range(3) for j in range(3) if i != j]
    assert float(squared_cosine(simplex, ranges).detach()) == pytest.approx(sum(cos2) / 6, rel=1e-9)
    v = torch.randn(3, 40, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: _RangedGram.apply(v, [(2, 9), (15, 30)]), (v,))


def test_a_line_from_scratch_on_mnist1d_has_no_barrier_and_keeps_its_midpoint(tmp_path, mnist1d_runs):
    """Measured (conv1d, 50 epochs, seeds 0-3, spread 1): the trained line's test error stays at
    8-18% all along, where the line between two networks trained alone peaks at 78-89%. Wortsman et
    al.'s claim that the midpoint is at least as good as a network trained alone does NOT show here:
    the midpoints are at 7.1-15.2% against 3.7-5.0% (see docs/results.md); asserted is what holds."""
    from modeconn.commands import eval_curve, subspace
    from modeconn.evaluation.evaluate import split_metrics
    from modeconn.storage.runfolder import describe_network, load_endpoints

    out = tmp_path / "line"
    info = subspace(out, "mnist1d", shape="line", device="cpu", progress=False)
    assert info.raw["kind"] == "curve" and info.raw["curve"] == {"kind": "bezier", "bends": 0, "free_endpoints": True}
    assert info.raw["subspace"] == {"shape": "line", "spread": 1.0} and info.raw["squared_cosine"] < 0.05
    assert sorted(p.name for p in out.iterdir() if p.name[0] != ".") == ["curve.safetensors", "midpoint", "run.json"]
    along = eval_curve(out, points=11, device="cpu", progress=False)  # eval-curve reads a subspace
    assert along.stat("curve", "test_err", "max") <= 0.25, along.metrics["curve"]["test_err"]

    ends = load_endpoints([describe_network(mnist1d_runs["a"]), describe_network(mnist1d_runs["b"])])
    apart = split_metrics(Curve(*ends.nets, bends=0).model_at(0.5), ends.data).test.err
    assert apart >= 0.5  # two networks trained alone: a barrier the subspace does not have
    alone = json.loads((mnist1d_runs["a"] / "run.json").read_text())["test_err"]  # the same init as vertex 0
    mid = describe_network(out / "midpoint")
    assert mid.info.raw["test_err"] == info.raw["midpoint_test_err"] <= alone + 0.15


def test_a_simplex_from_scratch_is_a_simplex_run_and_a_resume_must_match(tmp_path, kill_after_checkpoints):
    from modeconn.commands import eval_simplex, report, subspace

    kw = dict(shape="simplex3", epochs=2, device="cpu", progress=False)
    whole = subspace(tmp_path / "whole", "mnist1d", **kw)
    assert whole.raw["kind"] == "simplex" and whole.raw["vertices"] == 3 and whole.raw["volume"] > 0
    assert whole.raw["centroid_test_err"] == whole.raw["metrics"]["midpoint"]["test_err"]
    ev = eval_simplex(tmp_path / "whole", samples=3, device="cpu", progress=False)
    assert len(ev.metrics["test_err"]) == 3
    page = report(tmp_path / "whole").read_text()
    assert "<td>from scratch</td>" in page

    undo = kill_after_checkpoints(1)
    with pytest.raises(KeyboardInterrupt):
        subspace(tmp_path / "cut", "mnist1d", **kw)
    undo()
    with pytest.raises(ModeconnError, match="spread"):
        subspace(tmp_path / "cut", "mnist1d", **kw, spread=0.5, resume=True)
    resumed = subspace(tmp_path / "cut", "mnist1d", **kw, resume=True)
    assert resumed.raw["metrics"] == whole.raw["metrics"]
    assert resumed.raw["volume"] == pytest.approx(whole.raw["volume"], rel=1e-9)


def test_subspace_shapes_are_checked():
    from modeconn.commands.subspace import vertex_count

    assert [vertex_count(s) for s in ("line", "curve", "simplex3", "simplex8")] == [2, 3, 3, 8]
    for bad in ("simplex", "simplex2", "simplex9", "plane"):
        with pytest.raises(ModeconnError, match="not a subspace shape"):
            vertex_count(bad)


def test_a_killed_line_resumes_to_the_uninterrupted_line(tmp_path, kill_after_checkpoints):
    from modeconn.commands import subspace
    from modeconn.storage.files import load_tensors

    kw = dict(shape="line", epochs=3, device="cpu", progress=False)
    whole = subspace(tmp_path / "whole", "mnist1d", **kw)
    undo = kill_after_checkpoints(2)
    with pytest.raises(KeyboardInterrupt):
        subspace(tmp_path / "cut", "mnist1d", **kw)
    undo()
    assert not (tmp_path / "cut" / "run.json").exists() and not (tmp_path / "cut" / "midpoint").exists()
    with pytest.raises(ModeconnError, match="pass --resume"):
        subspace(tmp_path / "cut", "mnist1d", **kw)
    resumed = subspace(tmp_path / "cut", "mnist1d", **kw, resume=True)
    assert resumed.raw["metrics"] == whole.raw["metrics"]
    assert resumed.raw["epoch_train_loss"] == whole.raw["epoch_train_loss"]
    assert torch.equal(load_tensors(tmp_path / "cut" / "curve.safetensors")["free_points"],
                       load_tensors(tmp_path / "whole" / "curve.safetensors")["free_points"])
