"""Run folders, checkpoints and bad input: what train and connect write, and what they refuse."""
import json
import subprocess
import sys

import pytest
import torch

from modeconn import Curve, ModeconnError, evaluate
from modeconn.commands import train
from modeconn.data import load_mnist1d
from modeconn.evaluation.batchnorm import recompute_bn
from modeconn.storage.files import load_tensors
from modeconn.storage.runfolder import load_curve, load_network

QUICK = dict(epochs=2, lr=0.1, batch_size=256, seed=3, device="cpu", progress=False)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "modeconn", *map(str, args)], capture_output=True, text=True)


def test_train_writes_weights_and_run_json(mnist1d_runs):
    info = __import__("json").loads((mnist1d_runs["a"] / "run.json").read_text())
    for key in ("dataset", "model", "config", "seed", "train_loss", "train_err", "test_loss", "test_err"):
        assert key in info
    assert info["model"]["name"] == "conv1d" and 0 <= info["test_err"] <= 1
    assert info["test_err"] < 0.08, "the default MNIST-1D recipe should give a good network"
    assert (mnist1d_runs["a"] / "model.safetensors").exists()


def test_every_run_json_names_what_made_it(mnist1d_runs):
    """modeconn's, torch's and Python's versions and the device, for a network and a curve run; and --version."""
    import platform

    import modeconn

    made = {"modeconn": modeconn.__version__, "torch": torch.__version__, "python": platform.python_version(),
            "device": "cpu"}
    for run in ("a", "ab"):
        assert json.loads((mnist1d_runs[run] / "run.json").read_text())["made_with"] == made
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == (
        f"modeconn {modeconn.__version__} (torch {torch.__version__}, Python {platform.python_version()})")


def test_curve_midpoint_is_far_better_than_the_line_midpoint(mnist1d_runs):
    """The paper's claim on real data: the trained curve's midpoint keeps low error; the line's does not."""
    curve, info, data = load_curve(mnist1d_runs["ab"])
    a = load_network(mnist1d_runs["a"], data)
    b = load_network(mnist1d_runs["b"], data)
    line_mid = Curve(a, b, bends=0).model_at(0.5)
    curve_mid = curve.model_at(0.5)
    curve_err = evaluate(curve_mid, data.test_batches()).err
    line_err = evaluate(line_mid, data.test_batches()).err
    # Measured: curve ~0.06, line ~0.86; endpoints ~0.045.
    assert curve_err < 0.12
    assert line_err > 0.5
    assert line_err - curve_err > 0.4
    assert info.raw["midpoint_test_err"] == pytest.approx(curve_err)


def test_same_seed_gives_same_weights(tmp_path):
    train(tmp_path / "x", **QUICK)
    train(tmp_path / "y", **QUICK)
    wx, wy = load_tensors(tmp_path / "x/model.safetensors"), load_tensors(tmp_path / "y/model.safetensors")
    assert all(torch.equal(wx[k], wy[k]) for k in wx)


def test_killed_run_resumes_to_the_same_weights(tmp_path, kill_after_checkpoints):
    cfg = {**QUICK, "epochs": 3}
    train(tmp_path / "whole", **cfg)
    undo = kill_after_checkpoints(2)  # killed after two epochs were checkpointed
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "cut", **cfg)
    undo()
    assert not (tmp_path / "cut/run.json").exists()
    with pytest.raises(ModeconnError, match="--resume"):
        train(tmp_path / "cut", **cfg)
    train(tmp_path / "cut", **cfg, resume=True)
    wx, wy = load_tensors(tmp_path / "whole/model.safetensors"), load_tensors(tmp_path / "cut/model.safetensors")
    assert all(torch.equal(wx[k], wy[k]) for k in wx)
    assert not (tmp_path / "cut/checkpoint.safetensors").exists()


def test_nan_loss_stops_with_step_and_lr(tmp_path):
    with pytest.raises(ModeconnError, match=r"loss became (nan|inf).* at step \d+ .*learning rate 1e\+0?6"):
        train(tmp_path / "nan", **{**QUICK, "lr": 1e6})


def test_cli_refuses_different_architectures_and_writes_nothing(tmp_path, mnist1d_runs):
    r = cli("train", "--model", "mlp", "--epochs", "1", "--seed", "1", "--out", tmp_path / "m", "--quiet")
    assert r.returncode == 0, r.stderr
    r = cli("connect", "--start", mnist1d_runs["a"], "--end", tmp_path / "m", "--out", tmp_path / "bad", "--quiet")
    assert r.returncode == 2
    assert "different architectures" in r.stderr and "conv1d" in r.stderr and "mlp" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_cli_refuses_to_overwrite_a_finished_run(mnist1d_runs):
    before = (mnist1d_runs["a"] / "model.safetensors").read_bytes()
    r = cli("train", "--out", mnist1d_runs["a"], "--epochs", "1")
    assert r.returncode == 2 and "already holds a finished run" in r.stderr
    assert (mnist1d_runs["a"] / "model.safetensors").read_bytes() == before


def test_truncated_checkpoint_is_refused_by_name(tmp_path, mnist1d_runs):
    bad = tmp_path / "cut"
    bad.mkdir()
    (bad / "run.json").write_text((mnist1d_runs["a"] / "run.json").read_text())
    (bad / "model.safetensors").write_bytes((mnist1d_runs["a"] / "model.safetensors").read_bytes()[:300])
    r = cli("connect", "--start", bad, "--end", mnist1d_runs["b"], "--out", tmp_path / "o", "--quiet")
    assert r.returncode == 2 and "model.safetensors is truncated or corrupt" in r.stderr
    assert not (tmp_path / "o").exists()


def test_pt_state_dicts_load_with_weights_only(tmp_path, mnist1d_runs):
    state = load_tensors(mnist1d_runs["a"] / "model.safetensors")
    torch.save(state, tmp_path / "a.pt")
    data = load_mnist1d()
    net = load_network(tmp_path / "a.pt", data, model="conv1d")  # no run.json: the caller names the architecture
    assert torch.equal(net.head.weight, state["head.weight"])

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"w": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ModeconnError, match="evil.pt cannot be loaded as a plain state dict"):
        load_network(tmp_path / "evil.pt", data, model="conv1d")


def test_pt_endpoint_without_run_json_needs_dataset(tmp_path, mnist1d_runs):
    torch.save(load_tensors(mnist1d_runs["a"] / "model.safetensors"), tmp_path / "a.pt")
    r = cli("connect", "--start", tmp_path / "a.pt", "--end", mnist1d_runs["b"], "--out", tmp_path / "o", "--quiet")
    assert r.returncode == 2 and "pass --dataset" in r.stderr


def test_bn_recompute_is_skipped_for_a_network_without_batchnorm(mnist1d_runs):
    # conv1d has no BatchNorm: the BN pass must be skipped, not silently run.
    curve, _, data = load_curve(mnist1d_runs["ab"])
    assert recompute_bn(curve.model_at(0.0), data.bn_batches(500)) is False


def test_cli_speed_settings_reach_the_run_and_are_recorded(tmp_path):
    r = cli("train", "--out", tmp_path / "a", "--epochs", "1", "--amp", "bf16", "--channels-last", "--quiet")
    assert r.returncode == 0, r.stderr
    info = json.loads((tmp_path / "a" / "run.json").read_text())
    assert info["speed"] == {"amp": "bf16", "channels_last": True, "compile": False}
    assert info["processes"] == 1 and info["test_err"] < 0.9  # bf16 training still learns
    bad = cli("train", "--out", tmp_path / "b", "--amp", "fp8")
    assert bad.returncode == 2 and "--amp" in bad.stderr and not (tmp_path / "b").exists()


def test_a_weights_file_without_run_json_needs_its_architecture_named(tmp_path, mnist1d_runs):
    """The default architecture is a command's choice (the recipe's), not storage's: a Python caller names it."""
    torch.save(load_tensors(mnist1d_runs["a"] / "model.safetensors"), tmp_path / "a.pt")
    with pytest.raises(ModeconnError, match="has no run.json beside it: pass `model`"):
        load_network(tmp_path / "a.pt", load_mnist1d())
