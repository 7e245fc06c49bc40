"""FGE: the cyclic schedule, snapshot timing, the running ensemble, and FGE against a single network."""
import json
import subprocess
import sys

import pytest
import torch

from modeconn import ModeconnError, evaluate
from modeconn.data import load_mnist1d
from modeconn.evaluation.ensemble import RunningEnsemble
from modeconn.models import create_model
from modeconn.storage.runfolder import load_network
from modeconn.tasks import expected_calibration_error
from modeconn.training.fge import FGEConfig, fast_geometric_ensemble, snapshot_epochs
from modeconn.training.schedule import check_cycle, fge_lr


def test_cyclic_schedule_at_start_quarter_middle_and_end():
    lr1, lr2 = 0.05, 0.0005
    assert fge_lr(lr1, lr2, 0.0) == pytest.approx(lr1)
    assert fge_lr(lr1, lr2, 0.25) == pytest.approx((lr1 + lr2) / 2)
    assert fge_lr(lr1, lr2, 0.5) == pytest.approx(lr2)
    assert fge_lr(lr1, lr2, 0.75) == pytest.approx((lr1 + lr2) / 2)
    assert fge_lr(lr1, lr2, 0.999999) == pytest.approx(lr1, rel=1e-4)


@pytest.mark.parametrize("cycle,epochs,expected", [(2, 8, [1, 3, 5, 7]), (4, 8, [2, 6]), (4, 10, [2, 6, 10])])
def test_snapshot_epochs(cycle, epochs, expected):
    assert snapshot_epochs(epochs, cycle) == expected


@pytest.mark.parametrize("cycle", [1, 3, 5, 0])
def test_odd_cycle_is_refused_with_the_reason(cycle):
    with pytest.raises(ModeconnError, match="even number of epochs.*midpoint"):
        check_cycle(cycle)


def test_cli_refuses_odd_cycle_and_writes_nothing(tmp_path, mnist1d_runs):
    r = subprocess.run([sys.executable, "-m", "modeconn", "fge", "--start", str(mnist1d_runs["a"]), "--cycle", "3",
                        "--out", str(tmp_path / "f")], capture_output=True, text=True)
    assert r.returncode == 2 and "even number of epochs" in r.stderr and not (tmp_path / "f").exists()


def test_fge_run_snapshot_count_timing_and_learning_rate(tmp_path, mnist1d_runs):
    r = subprocess.run([sys.executable, "-m", "modeconn", "fge", "--start", str(mnist1d_runs["a"]), "--epochs", "8",
                        "--cycle", "4", "--lr1", "0.05", "--lr2", "0.0005", "--out", str(tmp_path / "f"), "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "f/fge.json").read_text())
    snaps = result["snapshots"]
    assert [s["epoch"] for s in snaps] == [2, 6]
    for s in snaps:  # the last step before a snapshot runs at (nearly) lr2
        assert 0.0005 <= s["lr"] < 0.0005 + 0.05 * 2 / (4 * 32)
        assert set(s) >= {"test_err", "test_nll", "ensemble_test_err", "ensemble_test_nll", "ensemble_test_ece"}
    assert snaps[0]["ensemble_test_nll"] == pytest.approx(snaps[0]["test_nll"])
    assert result["optimizer_state_restored"] is True
    assert sorted(p.name for p in (tmp_path / "f/snapshots").iterdir()) == ["snapshot_001.safetensors",
                                                                           "snapshot_002.safetensors"]
    assert (tmp_path / "f/swa.safetensors").exists() and (tmp_path / "f/fge.png").stat().st_size > 10_000
    assert "swa" in result and 0 <= result["swa"]["test_err"] <= 1


def test_ensemble_of_one_equals_the_member_and_nll_never_exceeds_mean(mnist1d_runs):
    data = load_mnist1d()
    a = load_network(mnist1d_runs["a"], data)
    b = load_network(mnist1d_runs["b"], data)
    ens = RunningEnsemble(data.test_batches(300), 10)
    own_a = ens.add(a)
    direct = evaluate(a, data.test_batches(1000))
    assert list(own_a) == ["err", "nll"]  # a member's own metrics, named as fge.json and ensemble.json name them
    assert own_a["nll"] == pytest.approx(direct.loss, abs=1e-5) and own_a["err"] == pytest.approx(direct.err)
    one = ens.metrics()
    assert list(one) == ["err", "nll", "ece"]
    assert one.nll == pytest.approx(own_a["nll"], abs=1e-9) and one.err == own_a["err"]
    own_b = ens.add(b)
    two = ens.metrics()
    assert two.nll <= (own_a["nll"] + own_b["nll"]) / 2 + 1e-12  # Jensen: log is concave


def test_ece_of_a_calibrated_and_an_overconfident_predictor():
    labels = torch.tensor([0, 0, 0, 1])
    calibrated = torch.tensor([[0.75, 0.25]] * 4)  # 75% confident, 75% right
    assert expected_calibration_error(calibrated, labels) == pytest.approx(0.0, abs=1e-12)
    overconfident = torch.tensor([[0.99, 0.01]] * 4)
    assert expected_calibration_error(overconfident, labels) == pytest.approx(0.24)


def test_fge_resumes_to_the_same_records(tmp_path, mnist1d_runs, kill_after_checkpoints):
    data = load_mnist1d()
    cfg = FGEConfig(epochs=4, cycle=2, lr1=0.05, lr2=0.0005, batch_size=128)
    whole = fast_geometric_ensemble(load_network(mnist1d_runs["a"], data), data, cfg,
                                    checkpoint=tmp_path / "w.safetensors", progress=False)
    undo = kill_after_checkpoints(2)
    with pytest.raises(KeyboardInterrupt):
        fast_geometric_ensemble(load_network(mnist1d_runs["a"], data), data, cfg,
                                checkpoint=tmp_path / "c.safetensors", progress=False)
    undo()
    with pytest.raises(ModeconnError, match="pass `resume`"):  # a checkpoint is loaded only when asked
        fast_geometric_ensemble(load_network(mnist1d_runs["a"], data), data, cfg,
                                checkpoint=tmp_path / "c.safetensors", progress=False)
    resumed = fast_geometric_ensemble(load_network(mnist1d_runs["a"], data), data, cfg,
                                      checkpoint=tmp_path / "c.safetensors", resume=True, progress=False)
    assert resumed.snapshots == whole.snapshots


@pytest.mark.slow
def test_fge_beats_a_single_network_at_equal_budget_on_fashion_mnist(fashion_mnist):
    """The paper's claim in miniature, on real data: FGE at 1B beats one network trained for 1B.

    Default Fashion-MNIST model on the first 10k training images (all 10k test images), B = 40 epochs,
    FGE from the 0.8B state with 2-epoch cycles, lr1 = 0.1, lr2 = 0.0005, three seeds.
    Measured (seeds 0, 1, 2): NLL 0.345, 0.329, 0.354 vs 0.525, 0.533, 0.548; error 10.71, 10.56, 10.71%
    vs 11.22, 11.13, 10.90%. With lr1 = 0.05 the snapshots barely leave the minimum (NLL 0.518 vs 0.525).
    """
    from modeconn.training.budget import budget_seed
    from modeconn.training.train import TrainConfig

    full = fashion_mnist
    data = full.subset(train=10000)
    cfg = TrainConfig(epochs=40, lr=0.05, wd=5e-4, batch_size=128)
    rows = [budget_seed(lambda: create_model("convbn", data.input_shape, 10), data, cfg, cycle=2, lr1=0.1,
                        lr2=0.0005, seed=seed, progress=False, two_budgets=False) for seed in (0, 1, 2)]
    for r in rows:
        assert r["fge@1B"]["snapshots"] == 4
        assert r["fge@1B"]["nll"] < r["single@1B"]["nll"] - 0.05
    mean = lambda method, key: sum(r[method][key] for r in rows) / len(rows)  # noqa: E731
    assert mean("fge@1B", "err") < mean("single@1B", "err")


def test_budget_with_espro_adds_a_simplex_ensemble_at_2b(tmp_path):
    """ESPRO's row: a 2-vertex SPRO simplex around each seed's network, B/2 epochs a vertex, ensembled
    over 10 drawn points. The science (MNIST-1D, B = 50, seeds 0-2, volume weight 0.01) is in
    docs/results.md: there ESPRO at 2B (4.47% error, NLL 0.126) did not beat one network at 1B (4.00%, 0.119)."""
    from modeconn.commands import budget
    from modeconn.errors import ModeconnError

    kw = dict(epochs=10, dataset="mnist1d", seeds=[0], device="cpu", progress=False)
    state = budget(tmp_path / "b", method="espro", volume_weight=0.01, **kw)
    row = state.per_seed["0"]["espro@2B"]
    assert row["samples"] == 10 and row["volume"] > 0 and 0 < row["err"] < 0.5
    assert set(state.per_seed["0"]) == {"single@1B", "independent@2B", "fge@1B", "fge@2B", "espro@2B"}
    assert "| espro (10 points of a 2-vertex simplex) | 2B |" in (tmp_path / "b" / "budget.md").read_text()
    with pytest.raises(ModeconnError, match="other settings"):  # the same folder, another method
        budget(tmp_path / "b", **kw)
