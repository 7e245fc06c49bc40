import gzip

import pytest
import torch

from modeconn.data import Batches, from_torch, load_dataset, load_fashion_mnist, load_mnist1d
from modeconn.errors import ModeconnError


def test_mnist1d_standard_split_is_deterministic():
    d = load_mnist1d()
    assert d.train_x.shape == (4000, 40) and d.test_x.shape == (1000, 40)
    assert set(d.train_y.unique().tolist()) == set(range(10))
    assert torch.equal(d.train_x, load_mnist1d().train_x)


def test_fashion_mnist_reads_the_debian_files(fashion_mnist):
    d = fashion_mnist
    assert d.train_x.shape == (60000, 1, 28, 28) and d.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(d.test_y).tolist() == [1000] * 10
    assert abs(float(d.train_x.mean())) < 0.05 and abs(float(d.train_x.std()) - 1) < 0.05


def test_fashion_32_pads_with_black_and_augments_training_batches(fashion_mnist):
    d = load_dataset("fashion-mnist-32")
    plain = fashion_mnist
    assert d.train_x.shape == (60000, 1, 32, 32) and d.test_x.shape == (10000, 1, 32, 32)
    torch.testing.assert_close(d.test_x[:, :, 2:30, 2:30], plain.test_x)
    black = float(plain.train_x.min())  # the darkest pixel is a raw 0
    assert torch.all(d.train_x[:, :, :2] == black) and torch.all(d.train_x[:, :, :, 30:] == black)
    x, _ = next(iter(d.train_batches(256, shuffle=True)))
    x_eval, _ = next(iter(d.train_batches(256, shuffle=False)))
    assert x.shape == (256, 1, 32, 32)
    assert torch.equal(x_eval, d.train_x[:256])  # evaluation batches are not augmented
    from modeconn.models import create_model
    from modeconn.recipes import RECIPES

    net = create_model(RECIPES["fashion-mnist-32"].model, d.input_shape, 10).eval()  # VGG16BN needs 32x32
    assert net(x[:8]).shape == (8, 10)


def _write_idx(path, data: bytes, dims, gz=False):
    header = bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    (gzip.open if gz else open)(path, "wb").write(header + data)


def test_fashion_reader_takes_plain_and_gzipped_idx(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte", bytes(range(2 * 4 * 4)), [2, 4, 4])
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", bytes([3, 7]), [2], gz=True)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", bytes(16), [1, 4, 4], gz=True)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", bytes([1]), [1])
    d = load_fashion_mnist(tmp_path)
    assert d.train_x.shape == (2, 1, 4, 4) and d.train_y.tolist() == [3, 7] and d.test_y.tolist() == [1]


def test_truncated_idx_file_is_refused_by_name(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte", bytes(10), [2, 4, 4])
    for stem in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        _write_idx(tmp_path / stem, bytes(2), [2])
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", bytes(32), [2, 4, 4])
    with pytest.raises(ModeconnError, match="train-images-idx3-ubyte is truncated"):
        load_fashion_mnist(tmp_path)


def test_missing_fashion_folder_says_where_and_how(tmp_path):
    with pytest.raises(ModeconnError,
                       match=r"no Fashion-MNIST folder at .*nowhere.*apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "nowhere")


def test_any_torch_dataset_or_dataloader_becomes_a_dataset():
    xs, ys = torch.randn(20, 3), torch.arange(20) % 4
    ds = torch.utils.data.TensorDataset(xs, ys)
    loader = torch.utils.data.DataLoader(ds, batch_size=6)
    d = from_torch("toy", ds, loader)
    assert torch.equal(d.train_x, xs) and torch.equal(d.test_y, ys) and d.num_classes == 4


def test_batches_cover_each_example_once_per_epoch_and_reshuffle():
    x = torch.arange(10).float().unsqueeze(1)
    b = Batches(x, torch.arange(10), 3, shuffle=True, seed=5)
    first = torch.cat([xb for xb, _ in b]).flatten()
    second = torch.cat([xb for xb, _ in b]).flatten()
    assert sorted(first.tolist()) == list(range(10)) and not torch.equal(first, second)
    b.set_epoch(0)
    assert torch.equal(torch.cat([xb for xb, _ in b]).flatten(), first)
