"""Shared fixtures: real MNIST-1D endpoints and a trained curve, built once per test session."""
import pytest
import torch

from modeconn.runs import connect_run, train_run


@pytest.fixture(scope="session")
def mnist1d_runs(tmp_path_factory):
    """Two MNIST-1D networks from different seeds and a Bezier curve between them (CLI defaults)."""
    root = tmp_path_factory.mktemp("mnist1d")
    torch.set_num_threads(2)
    a = train_run("mnist1d", root / "a", cfg=None, device="cpu", progress=False) and root / "a"
    b = root / "b"
    from modeconn.runs import TRAIN_DEFAULTS
    from dataclasses import replace
    train_run("mnist1d", b, cfg=replace(TRAIN_DEFAULTS["mnist1d"], seed=2), device="cpu", progress=False)
    connect_run(a, b, root / "ab", kind="bezier", bends=1, device="cpu", progress=False)
    return {"a": a, "b": b, "ab": root / "ab", "root": root}


@pytest.fixture
def kill_after_checkpoints(monkeypatch):
    """Make the training loop die (KeyboardInterrupt) right after its n-th checkpoint; returns the undo."""
    import modeconn.train as train_mod

    real = train_mod.save_tensors

    def arm(n: int):
        calls = {"n": 0}

        def dying(path, tensors, metadata=None):
            real(path, tensors, metadata)
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt

        monkeypatch.setattr(train_mod, "save_tensors", dying)
        return lambda: monkeypatch.setattr(train_mod, "save_tensors", real)

    return arm
