"""The model zoo (one sweep over the registry) and the CIFAR reader and augmentation."""
import pickle

import numpy as np
import pytest
import torch

from modeconn import Curve, ModeconnError
from modeconn.data import load_dataset
from modeconn.data.augment import CropFlip
from modeconn.data.cifar import load_cifar
from modeconn.models import MODELS, create_model

SHAPES = {"conv1d": (40,), "mlp": (1, 28, 28), "convbn": (1, 28, 28)}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_builds_runs_and_connects(name):
    shape = SHAPES.get(name, (3, 32, 32))
    torch.manual_seed(0)
    a, b = create_model(name, shape, 10).eval(), create_model(name, shape, 10).eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        out = a(x)
        assert out.shape == (2, 10) and torch.isfinite(out).all()
        curve = Curve(a, b, kind="bezier", bends=1).eval()
        assert torch.equal(curve(x, 0.0), out)


@pytest.mark.parametrize("name,published", [("preresnet164", 1.70e6), ("wrn28x10", 36.5e6), ("vgg16", 15.25e6)])
def test_parameter_counts_match_published(name, published):
    count = sum(p.numel() for p in create_model(name, (3, 32, 32), 10).parameters())
    assert abs(count - published) / published < 0.01


def _write_cifar10(root, n_per_batch=6):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, n_per_batch).tolist(),
             b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
             b"filenames": [f"{i}.png".encode() for i in range(n_per_batch)]}
        with open(folder / name, "wb") as fh:
            pickle.dump(d, fh, protocol=2)  # as the official archive
    return folder


def test_cifar_reader_on_a_folder_in_the_real_format(tmp_path):
    folder = _write_cifar10(tmp_path)
    for data_dir in (tmp_path, folder):  # torchvision's root or the folder itself
        d = load_cifar("cifar10", data_dir)
        assert d.train_x.shape == (30, 3, 32, 32) and d.test_x.shape == (6, 3, 32, 32) and d.num_classes == 10
    raw = pickle.load(open(folder / "data_batch_1", "rb"), encoding="bytes")
    first = torch.from_numpy(raw[b"data"][0].reshape(3, 32, 32)).float() / 255
    mean, std = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2023, 0.1994, 0.2010])
    torch.testing.assert_close(d.train_x[0], (first - mean[:, None, None]) / std[:, None, None])
    assert d.train_y[0] == raw[b"labels"][0]



def test_cifar_validation_split_holds_out_the_last_5000_training_images(tmp_path):
    _write_cifar10(tmp_path, n_per_batch=1001)
    full = load_cifar("cifar10", tmp_path)
    val = load_cifar("cifar10", tmp_path, validation=True)
    assert len(val.train_x) == 5 and len(val.test_x) == 5000
    assert torch.equal(val.train_x, full.train_x[:5]) and torch.equal(val.test_x, full.train_x[5:])
    assert torch.equal(val.test_y, full.train_y[5:])


def test_cifar_reader_refuses_wrong_folders_and_code_pickles(tmp_path):
    with pytest.raises(ModeconnError, match="no cifar-10-batches-py folder"):
        load_dataset("cifar10", str(tmp_path))
    folder = _write_cifar10(tmp_path)
    (folder / "test_batch").unlink()
    with pytest.raises(ModeconnError, match="lacks test_batch"):
        load_cifar("cifar10", tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("never",))

    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": Evil(), b"labels": []}, fh)
    with pytest.raises(ModeconnError, match="not a CIFAR python-version batch.*refusing to load builtins.print"):
        load_cifar("cifar10", tmp_path)


def test_crop_flip_matches_the_paper_transform_statistics():
    aug = CropFlip(pad=4, pad_value=torch.tensor([-1.0, -2.0, -3.0]))
    x = torch.arange(32.0).repeat(3, 32, 1).unsqueeze(0).repeat(4000, 1, 1, 1)  # column index as value
    out = aug(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    # Each image is its padded original shifted by (dy, dx) in [-4, 4], possibly flipped.
    row_pad = (out[:, 0] == -1).all(2)  # rows entirely padding
    assert row_pad.sum(1).max() == 4 and (row_pad.sum(1) == 0).float().mean() == pytest.approx(1 / 9, abs=0.02)
    inner = out[:, 0, 16]
    flipped = (inner[:, 1:] - inner[:, :-1]).clamp(-1, 1).sum(1) < 0
    assert flipped.float().mean() == pytest.approx(0.5, abs=0.03)
    assert torch.equal(out[:, 1][out[:, 0] == -1], torch.full_like(out[:, 1][out[:, 0] == -1], -2.0))


def test_training_batches_are_augmented_and_evaluation_batches_are_not(tmp_path):
    _write_cifar10(tmp_path)
    d = load_cifar("cifar10", tmp_path)
    x_eval, _ = next(iter(d.train_batches(30, shuffle=False)))
    assert torch.equal(x_eval, d.train_x)
    x_train, _ = next(iter(d.train_batches(30, shuffle=True)))
    assert not any(torch.equal(x_train[i], d.train_x[j]) for i in range(5) for j in range(30))
