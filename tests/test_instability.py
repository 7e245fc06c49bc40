"""Instability analysis: copies spawned from a shared prefix, their barriers, resume and identical copies."""
import json

import pytest
import torch

from modeconn import ModeconnError
from modeconn.commands import instability
from modeconn.storage.files import load_tensors

QUICK = dict(device="cpu", progress=False)


def test_copies_with_the_same_data_order_are_identical_and_have_no_barrier(tmp_path):
    result = instability(tmp_path / "same", spawn=[0, 3], epochs=5, points=3, same_order=True, **QUICK)
    for k in (0, 3):
        a, b = (load_tensors(tmp_path / "same" / f"k{k}" / f"copy{i}" / "model.safetensors") for i in (0, 1))
        for name in a:
            assert torch.equal(a[name], b[name]), (k, name)
    for row in result.per_spawn:
        assert row["test_err_barrier"] == 0 and row["train_loss_barrier"] == pytest.approx(0, abs=1e-6)
        assert row["stable"]


def test_on_mnist1d_copies_spawned_late_are_linearly_connected_and_early_ones_are_not(tmp_path):
    """Frankle et al.'s finding on MNIST-1D. Measured (20 epochs, 5 points, seeds 0-3): spawned at epoch 0
    the test-error barrier is 5.2-10.7% and the train-loss barrier 0.20-0.31; at epoch 10, under 0.3% and
    0.001."""
    result = instability(tmp_path / "inst", spawn=[0, 10], epochs=20, points=5, **QUICK)
    early, late = result.per_spawn
    assert early["test_err_barrier"] > 0.03 and not early["stable"]
    assert late["test_err_barrier"] < 0.01 and late["stable"]
    assert early["train_loss_barrier"] > 10 * max(late["train_loss_barrier"], 1e-3)
    assert result.first_stable_spawn == 10
    saved = json.loads((tmp_path / "inst" / "instability.json").read_text())
    assert saved["per_spawn"] == result.per_spawn
    assert (tmp_path / "inst" / "instability.png").stat().st_size > 10_000
    # the shared prefix was trained once: one state per spawn epoch, none left unfinished
    assert sorted(p.name for p in (tmp_path / "inst" / "spawn").iterdir()) == ["epoch0.safetensors",
                                                                               "epoch10.safetensors"]
    assert not list((tmp_path / "inst").rglob("checkpoint.safetensors"))


def test_a_killed_analysis_resumes_to_the_same_result_and_refuses_other_settings(tmp_path, kill_after_checkpoints):
    kw = dict(spawn=[0, 2], epochs=4, points=3, **QUICK)
    whole = instability(tmp_path / "whole", **kw)
    undo = kill_after_checkpoints(5)  # parent: 2 epochs; spawn 0's first copy: 3 of its 4 epochs
    with pytest.raises(KeyboardInterrupt):
        instability(tmp_path / "cut", **kw)
    undo()
    with pytest.raises(ModeconnError, match="pass --resume"):
        instability(tmp_path / "cut", **kw)
    with pytest.raises(ModeconnError, match="spawn"):
        instability(tmp_path / "cut", **{**kw, "spawn": [0, 1]}, resume=True)
    resumed = instability(tmp_path / "cut", **kw, resume=True)
    assert resumed.per_spawn == whole.per_spawn
    with pytest.raises(ModeconnError, match="already holds a finished run"):
        instability(tmp_path / "cut", **kw, resume=True)


def test_the_report_renders_landscapes_curvature_and_instability(tmp_path, mnist1d_runs):
    from modeconn.commands import curvature, landscape
    from modeconn.reporting.report import render_report

    instability(tmp_path / "inst", spawn=[0, 1], epochs=2, points=2, **QUICK)
    landscape(tmp_path / "slice", run=mnist1d_runs["a"], dims=1, grid=3, train_samples=300, **QUICK)
    curvature(mnist1d_runs["a"], out=tmp_path / "curv", top=2, train_samples=300, **QUICK)
    page = render_report(tmp_path).read_text()
    for heading in ("Slices of the loss landscape", "Curvature along paths", "instability analysis"):
        assert heading in page
    assert "The trained networks" not in page and "Curves against the straight line" not in page  # copies stay inside
    assert page.count("<img") == 3
