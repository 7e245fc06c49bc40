"""Shared fixtures: real MNIST-1D endpoints and a trained curve, built once per test session."""
import os
import sys

import pytest
import torch

from modeconn.commands import connect, train
from modeconn.data import FASHION_MNIST_DIR, FORTUNES_DIR


@pytest.fixture(scope="session")
def fashion_mnist():
    """Real Fashion-MNIST, or a skip whose reason pytest prints (-rs) where it is not installed.

    `make test` installs Debian's dataset-fashion-mnist where it can (root with apt-get).
    """
    if not os.path.isdir(FASHION_MNIST_DIR):
        pytest.skip(f"Fashion-MNIST is not at {FASHION_MNIST_DIR}: apt-get install dataset-fashion-mnist "
                    "(make test does, as root)")
    from modeconn.data import load_dataset

    return load_dataset("fashion-mnist")


@pytest.fixture(scope="session")
def fortunes_text():
    """The fortunes corpus's folder, or a skip whose reason pytest prints (-rs) where it is not installed.

    `make test` installs Debian's fortunes where it can (root with apt-get).
    """
    if not os.path.isfile(os.path.join(FORTUNES_DIR, "science")):
        pytest.skip(f"the fortunes text is not at {FORTUNES_DIR}: apt-get install fortunes (make test does, as root)")
    return FORTUNES_DIR


@pytest.fixture(scope="session")
def mnist1d_runs(tmp_path_factory):
    """Two MNIST-1D networks from different seeds and a Bezier curve between them (CLI defaults)."""
    root = tmp_path_factory.mktemp("mnist1d")
    torch.set_num_threads(2)
    a, b = root / "a", root / "b"
    train(a, "mnist1d", device="cpu", progress=False)
    train(b, "mnist1d", seed=2, device="cpu", progress=False)
    connect(a, b, root / "ab", curve="bezier", bends=1, device="cpu", progress=False)
    return {"a": a, "b": b, "ab": root / "ab", "root": root}


@pytest.fixture
def kill_after_checkpoints(monkeypatch):
    """Make the training loop die (KeyboardInterrupt) right after its n-th checkpoint; returns the undo."""
    import modeconn.training.train as train_mod

    real = train_mod.save_checkpoint

    def arm(n: int):
        calls = {"n": 0}

        def dying(path, ckpt):
            real(path, ckpt)
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt

        monkeypatch.setattr(train_mod, "save_checkpoint", dying)
        return lambda: monkeypatch.setattr(train_mod, "save_checkpoint", real)

    return arm


@pytest.fixture
def host_reads(monkeypatch):
    """Counts every read of a tensor's value back to Python (a host sync on a GPU).

    `n` counts them all; `log` keeps (device type, calling function) of each read.
    """
    count = {"n": 0, "log": []}
    for name in ("item", "__float__", "__int__", "__bool__", "tolist"):
        real = getattr(torch.Tensor, name)

        def counting(self, *args, _real=real, **kwargs):
            count["n"] += 1
            count["log"].append((self.device.type, sys._getframe(1).f_code.co_name))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    return count
