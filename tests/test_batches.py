"""Batches as users hand them over: (x, y, extras) triples and lists work everywhere a batch is read, a bare
tensor is refused rather than split, and a model whose forward reads a value is not mistaken for a misfit."""
import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from modeconn import ModeconnError, TrainConfig, create_model, evaluate, recompute_bn, train_network
from modeconn.data.datasets import Dataset, from_torch
from modeconn.evaluation.curvature import HessianOperator
from modeconn.evaluation.ensemble import RunningEnsemble
from modeconn.models import MODELS
from modeconn.tasks import CLASSIFICATION


def _xy(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_triples_and_lists_give_what_pairs_give():
    torch.manual_seed(0)
    net = create_model("convbn", (1, 8, 8), 3, channels=4, hidden=8)
    x, y = _xy()
    pairs = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    triples = [(xb, yb, torch.arange(len(yb))) for xb, yb in pairs]  # (x, y, index), as some datasets give
    lists = [[xb, yb] for xb, yb in pairs]
    assert evaluate(net, triples) == evaluate(net, pairs) == evaluate(net, lists)
    a, b = copy.deepcopy(net), copy.deepcopy(net)
    recompute_bn(a, pairs)
    recompute_bn(b, triples)
    for u, v in zip(a.buffers(), b.buffers()):
        assert torch.equal(u, v)
    hvp = HessianOperator(net, triples)
    assert hvp.count == 64
    ens = RunningEnsemble(lists, 3)
    assert torch.equal(ens.targets, y)


def test_a_batch_that_is_not_a_pair_is_refused_in_one_line():
    x, y = _xy()
    net = create_model("mlp", (1, 8, 8), 3)
    for batch, got in [(x, "got a Tensor"), ((x,), "got a tuple of 1")]:
        with pytest.raises(ModeconnError, match=f"a batch must be a tuple or list .*{got}"):
            evaluate(net, [batch])
        with pytest.raises(ModeconnError, match=got):
            CLASSIFICATION.split(batch)
    with pytest.raises(ModeconnError, match=r"dict batch \(keys x, y\) needs the task to name its entries"):
        evaluate(net, [{"x": x, "y": y}])


def test_from_torch_reads_triples_and_refuses_single_tensor_items():
    x, y = _xy()
    triples = TensorDataset(x, y, torch.arange(64))
    data = from_torch("mine", triples, DataLoader(TensorDataset(x[:16], y[:16]), batch_size=5), num_classes=3)
    assert torch.equal(data.train_x, x) and torch.equal(data.train_y, y) and torch.equal(data.test_y, y[:16])
    # Items that are single tensors used to become x = their first element and y = their second, as labels.
    with pytest.raises(ModeconnError, match="got a Tensor"):
        from_torch("bare", list(torch.randn(64, 2)), TensorDataset(x[:4], y[:4]))
    with pytest.raises(ModeconnError, match="no examples"):
        from_torch("empty", [], TensorDataset(x[:4], y[:4]))


def test_training_reads_triples_like_pairs():
    x, y = _xy(seed=1)
    data = Dataset("triples", x, y, x[:16], y[:16], 3)
    cfg = TrainConfig(epochs=1, lr=0.05, batch_size=16, seed=0)
    torch.manual_seed(0)
    net = create_model("mlp", (1, 8, 8), 3, hidden=8)
    plain = copy.deepcopy(net)
    train_network(plain, data, cfg, progress=False)

    class Triples:  # the same batches with an index added, as a dataset with indices would give
        def __init__(self, batches):
            self.batches = batches

        def set_epoch(self, epoch):
            self.batches.set_epoch(epoch)

        def __len__(self):
            return len(self.batches)

        def __iter__(self):
            return ((xb, yb, torch.zeros(len(yb))) for xb, yb in self.batches)

    class TripleData(Dataset):
        def train_batches(self, *args, **kwargs):
            return Triples(super().train_batches(*args, **kwargs))

    train_network(net, TripleData("triples", x, y, x[:16], y[:16], 3), cfg, progress=False)
    for u, v in zip(net.parameters(), plain.parameters()):
        assert torch.equal(u, v)


class _ReadsAValue(nn.Module):
    """A forward with an `if` on a tensor's value: it cannot run on the meta device."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.head = nn.Linear(input_shape[-1], num_classes)

    def forward(self, x):
        if x.abs().sum() > 1e9:  # a value read: meta tensors have none
            x = x / 2
        return self.head(x.flatten(1))


def test_a_model_that_reads_a_value_is_checked_with_a_real_forward(monkeypatch):
    monkeypatch.setitem(MODELS, "reads-a-value", _ReadsAValue)
    net = create_model("reads-a-value", (40,), 10)  # was refused: "cannot take inputs of shape (40,)"
    assert net(torch.zeros(3, 40)).shape == (3, 10)
    with pytest.raises(ModeconnError, match=r"cannot take inputs of shape \(1, 8, 8\) \(mat1 and mat2"):
        create_model("reads-a-value", (1, 8, 8), 10)  # a real misfit is still refused, with the real reason
