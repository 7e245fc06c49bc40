"""Curvature: Lanczos and Hutch++ on Hessian-vector products, against exact Hessians and along curves."""
import json
import sys

import pytest
import torch
from torch import nn

from modeconn import ModeconnError
from modeconn.commands import curvature
from modeconn.data import load_dataset
from modeconn.evaluation.curvature import (
    Curvature,
    HessianOperator,
    curvature_at,
    hutchinson_trace,
    lanczos_top,
    measure_curvature_shared,
)
from modeconn.evaluation.pointwise import EvalSettings
from modeconn.runtime import distributed
from modeconn.storage.runfolder import load_network

QUICK = dict(device="cpu", progress=False)


def report_text(folder) -> str:
    from modeconn.commands import report
    return report(folder).read_text()


def _mlp_and_batches():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3))
    x, y = torch.randn(200, 6), torch.randint(0, 3, (200,))
    return net, [(x[:120], y[:120]), (x[120:], y[120:])]


def test_top_eigenvalues_and_trace_agree_with_the_exact_hessian_of_a_small_mlp():
    net, batches = _mlp_and_batches()
    exact_op = HessianOperator(net.double(), [(x.double(), y) for x, y in batches])
    hessian = torch.func.hessian(lambda w: sum(exact_op.loss_sum(w, x, y) for x, y in exact_op.batches) / 200)(
        exact_op.weights)
    exact = torch.linalg.eigvalsh(hessian).flip(0)
    got = curvature_at(net.float(), batches, [], top=3, trace=True)  # float32, the default probes
    assert got.eigenvalues == pytest.approx(exact[:3].tolist(), rel=1e-3)
    true_trace = float(hessian.trace())
    assert got.trace == pytest.approx(true_trace, rel=0.05)
    assert abs(got.trace - true_trace) < 4 * got.trace_stderr + 1e-3 * true_trace  # the error bar is honest


def test_a_quadratic_with_known_spectrum_gives_its_eigenvalues_exactly():
    torch.manual_seed(1)
    spectrum = torch.tensor([9.0, 7.5, 4.0, 2.0, 1.0, 0.5, 0.1, -0.3, -1.0, -2.0], dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(10, 10, dtype=torch.float64))
    a = q @ torch.diag(spectrum) @ q.T
    values, used, converged = lanczos_top(lambda v: a @ v, 10, 3, steps=50, dtype=torch.float64)
    assert values == pytest.approx([9.0, 7.5, 4.0], abs=1e-9) and converged
    assert used <= 10  # the Krylov space is exhausted after at most dim products
    values, used, converged = lanczos_top(lambda v: a @ v, 10, 3, steps=3, dtype=torch.float64)
    assert used == 3 and not converged  # stopped by the step limit: estimates, and said so
    assert values[0] < 9.0 - 1e-6  # a Ritz value from 3 steps is below the top eigenvalue
    trace, _ = hutchinson_trace(lambda v: a @ v, 10, probes=30, dtype=torch.float64)
    assert trace == pytest.approx(float(spectrum.sum()), abs=1e-9)  # a sketch of rank 10 spans it all


def test_curvature_along_a_curve_starts_at_the_start_networks_own(mnist1d_runs, tmp_path):
    result = curvature(mnist1d_runs["ab"], out=tmp_path / "c", points=3, top=2, trace=True, probes=9,
                       train_samples=500, bn_samples=500, **QUICK)
    saved = json.loads((tmp_path / "c" / "curvature.json").read_text())
    assert saved["t"] == [0.0, 0.5, 1.0] and set(saved["paths"]) == {"curve", "line"}
    assert (tmp_path / "c" / "curvature.png").stat().st_size > 10_000
    settings = EvalSettings(batch_size=1000, bn_samples=500, train_samples=500)
    data = load_dataset("mnist1d")
    for t, name in ((0, "a"), (2, "b")):
        own = curvature_at(load_network(mnist1d_runs[name], data), list(settings.train_batches(data)),
                           list(settings.bn_batches(data)), top=2, trace=True, probes=9)
        for path in ("curve", "line"):
            got = result.paths[path][t]
            assert got["eigenvalues"] == pytest.approx(own.eigenvalues, rel=1e-4)
            assert got["trace"] == pytest.approx(own.trace, rel=1e-4)
            assert got["train_loss"] == pytest.approx(own.train_loss, rel=1e-5)
    assert all(r["eigenvalues"][0] >= r["eigenvalues"][1] for rows in result.paths.values() for r in rows)


def test_curvature_of_one_network_and_a_killed_run_resumes(mnist1d_runs, tmp_path, monkeypatch):
    single = curvature(mnist1d_runs["a"], out=tmp_path / "one", top=2, train_samples=500, **QUICK)
    assert single.run_kind == "network" and len(single.paths["network"][0]["eigenvalues"]) == 2
    capped = curvature(mnist1d_runs["a"], out=tmp_path / "capped", top=2, steps=3, train_samples=500, **QUICK)
    point, full = capped.paths["network"][0], single.paths["network"][0]
    assert full["converged"] and not point["converged"] and point["lanczos_steps"] == 3  # the cap is said
    assert point["eigenvalues"][0] <= full["eigenvalues"][0] * (1 + 1e-4)  # Ritz values lie below the top
    assert "estimates" in report_text(tmp_path / "capped")
    command = sys.modules["modeconn.evaluation.curvature"]  # where the points are measured
    real, calls = command.curvature_at, {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    kw = dict(out=tmp_path / "cut", points=2, top=1, train_samples=300, **QUICK)
    monkeypatch.setattr(command, "curvature_at", dying)
    with pytest.raises(KeyboardInterrupt):
        curvature(mnist1d_runs["ab"], **kw)
    assert (tmp_path / "cut" / "curvature.partial.npz").exists()
    with pytest.raises(ModeconnError, match="started with other settings"):
        curvature(mnist1d_runs["ab"], **{**kw, "top": 2})
    counted = {"n": 0}

    def counting(*args, **kwargs):
        counted["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(command, "curvature_at", counting)
    resumed = curvature(mnist1d_runs["ab"], **kw)
    assert counted["n"] == 2  # 4 points, 2 measured before the kill
    monkeypatch.setattr(command, "curvature_at", real)
    whole = curvature(mnist1d_runs["ab"], **{**kw, "out": tmp_path / "whole"})
    assert resumed.paths == whole.paths
    assert not (tmp_path / "cut" / "curvature.partial.npz").exists()


def test_each_rank_measures_its_share_of_points_and_every_rank_gets_them_all_exactly(monkeypatch):
    """Two ranks simulated: rank r measures points r, r+2, ...; the rows summed across ranks unpack
    to every result as measured (fewer eigenvalues than asked, no trace, extreme values included)."""
    results = [Curvature([3.0, 1.5], 7.25, 0.5, 0.1234567891234, 12, True), Curvature([2.0], None, None, 0.5, 1, True),
               Curvature([4.0, -1e-300], 1e300, float("inf"), 1e-9, 30, False)]
    shares = []
    for r in (0, 1):
        monkeypatch.setattr(distributed, "my_indices", lambda n, r=r: list(range(r, n, 2)))
        monkeypatch.setattr(distributed, "combine_rows", lambda rows: shares.append(rows.clone()) or rows)
        measured = []
        measure_curvature_shared(3, lambda i, measured=measured: measured.append(i) or results[i], 2, "cpu")
        assert measured == list(range(r, 3, 2))
    monkeypatch.setattr(distributed, "my_indices", lambda n: [])
    monkeypatch.setattr(distributed, "combine_rows", lambda rows: rows + shares[0] + shares[1])
    assert measure_curvature_shared(3, lambda i: pytest.fail("measured again"), 2, "cpu") == results
