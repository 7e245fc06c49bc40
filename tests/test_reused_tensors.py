"""Tensors the forward reaches more than once: each axis in one group, function kept, counted once.

The kind (issue "Silent errors from the field", item 1): a module called twice, a weight tied between
two modules, a module registered under two names, a weight used both through its module and directly,
a BatchNorm applied twice, a layer applied first to the input and then to hidden units.
"""

import pytest
import torch
from torch import nn

from modeconn import Curve, ModeconnError
from modeconn.alignment.matching import align
from modeconn.alignment.repair import repairable_layers
from modeconn.alignment.spec import permutation_spec, permute, random_permutation
from modeconn.core.flat import parameters_vector


class Twice(nn.Module):
    """The issue's example: one square layer applied twice (forces P W P^T)."""

    def __init__(self):
        super().__init__()
        self.a, self.h, self.o = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 2)

    def forward(self, x):
        return self.o(self.h(torch.relu(self.h(self.a(x)))))


class TiedAcrossModules(nn.Module):
    """Two modules holding one weight (bias apart)."""

    def __init__(self):
        super().__init__()
        self.a, self.h1, self.h2, self.o = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 2)
        self.h2.weight = self.h1.weight

    def forward(self, x):
        return self.o(torch.relu(self.h2(torch.relu(self.h1(torch.relu(self.a(x)))))))


class RegisteredTwice(nn.Module):
    """One module under two names, called once under each."""

    def __init__(self):
        super().__init__()
        self.a, self.h1, self.o = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 2)
        self.h2 = self.h1

    def forward(self, x):
        return self.o(torch.relu(self.h2(torch.relu(self.h1(torch.relu(self.a(x)))))))


class BatchNormTwice(nn.Module):
    """One BatchNorm normalising two different layers' units."""

    def __init__(self):
        super().__init__()
        self.a, self.bn, self.h, self.o = nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 6), nn.Linear(6, 2)

    def forward(self, x):
        return self.o(self.bn(torch.relu(self.h(self.bn(torch.relu(self.a(x)))))))


class InputThenHidden(nn.Module):
    """A layer applied to the input (which never moves) and then to hidden units: it must stay fixed."""

    def __init__(self):
        super().__init__()
        self.a, self.h, self.o = nn.Linear(4, 6), nn.Linear(4, 4), nn.Linear(4, 2)
        self.other = nn.Linear(6, 4)

    def forward(self, x):
        return self.o(self.h(torch.relu(self.h(x)))) + self.o(torch.relu(self.other(torch.relu(self.a(x)))))


class ModuleAndDirect(nn.Module):
    """A weight used through its module and again directly (F.linear on the parameter)."""

    def __init__(self):
        super().__init__()
        self.a, self.h, self.o = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 2)

    def forward(self, x):
        y = torch.relu(self.h(torch.relu(self.a(x))))
        return self.o(torch.relu(nn.functional.linear(y, self.h.weight)))


KIND = [Twice, TiedAcrossModules, RegisteredTwice, BatchNormTwice, InputThenHidden, ModuleAndDirect]


def _net(cls, seed=0):
    torch.manual_seed(seed)
    net = cls().eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm1d):  # statistics that matter, so a wrong permutation shows
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
            m.bias.data.normal_()
    return net


@pytest.mark.parametrize("cls", KIND, ids=lambda c: c.__name__)
def test_random_permutations_keep_the_function(cls):
    net, x = _net(cls), torch.randn(32, 4)
    spec = permutation_spec(net, x[:2])
    for seed in range(5):
        permuted = permute(net, spec, random_permutation(spec, seed))
        with torch.no_grad():
            assert torch.allclose(net(x), permuted(x), atol=1e-6), (cls.__name__, seed)
        # tied tensors stay one tensor: the permuted copy shares them as the original does
        for name, tensor in net.state_dict(keep_vars=True).items():
            for other, t2 in net.state_dict(keep_vars=True).items():
                if tensor is t2 and name != other:
                    assert permuted.get_parameter(name) is permuted.get_parameter(other)


def test_each_axis_belongs_to_one_group_and_reuse_is_named():
    spec = permutation_spec(_net(Twice), torch.randn(2, 4))
    assert len(spec.groups) == 1  # a's rows, h's rows and columns, o's columns: one group
    assert len({(a.name, a.dim) for a in spec.axes}) == len(spec.axes)
    assert {"h.weight", "h.bias"} <= set(spec.reused)
    permuted_axes = {(a.name, a.dim) for a in spec.axes}
    assert {("a.weight", 0), ("h.weight", 0), ("h.weight", 1), ("o.weight", 1)} <= permuted_axes
    fixed = permutation_spec(_net(InputThenHidden), torch.randn(2, 4))
    assert not any(a.name.startswith("h.") for a in fixed.axes)
    assert any(f.startswith("h.weight: reached 2 times") for f in fixed.fixed)
    assert "a" in fixed.groups  # what the fixed layer does not touch still moves


@pytest.mark.parametrize("cls", [c for c in KIND if c not in (InputThenHidden, ModuleAndDirect)],
                         ids=lambda c: c.__name__)
@pytest.mark.parametrize("method", ["weights", "activations"])
def test_both_alignment_methods_recover_a_permuted_copy_and_keep_b_s_function(cls, method):
    net, x = _net(cls), torch.randn(256, 4)
    spec = permutation_spec(net, x[:2])
    b = permute(net, spec, random_permutation(spec, 3))
    aligned, info = align(net, b, method=method, batches=[(x, None)], example_input=x[:2])
    with torch.no_grad():
        assert torch.allclose(aligned(x), b(x), atol=1e-6)  # alignment never changes b's function
    for (name, want), got in zip(net.state_dict().items(), aligned.state_dict().values()):
        assert torch.allclose(want, got, atol=1e-6), name  # and finds the permutation exactly


@pytest.mark.parametrize("cls", [TiedAcrossModules, RegisteredTwice], ids=lambda c: c.__name__)
def test_the_curve_and_the_flat_vector_count_a_shared_tensor_once(cls):
    a, b = _net(cls, 0), _net(cls, 1)
    unique = sum(p.numel() for p in a.parameters())  # parameters() yields a shared tensor once
    assert unique < sum(t.numel() for t in a.state_dict().values())
    assert parameters_vector(a).numel() == unique
    curve = Curve(a, b, bends=1)
    x = torch.randn(8, 4)
    mid = curve.model_at(0.5)
    if isinstance(a, TiedAcrossModules):
        assert mid.h1.weight is mid.h2.weight
    with torch.no_grad():
        assert torch.allclose(curve(x, 0.0), a(x), atol=1e-6)


def test_repair_refuses_a_layer_reached_twice():
    with pytest.raises(ModeconnError, match="reached more than once"):
        repairable_layers(_net(Twice), torch.randn(2, 4))
    with pytest.raises(ModeconnError, match="reached more than once"):
        repairable_layers(_net(TiedAcrossModules), torch.randn(2, 4))


# Ops that return several tensors, and parametrized layers: the tracer cannot follow their units, so what
# they touch stays fixed and is named (before: chunk/split dropped every later layer from the spec, and
# permute changed the function by up to 1.5 with nothing in spec.fixed).
class Gated(nn.Module):
    def __init__(self, op):
        super().__init__()
        self.op, self.inp, self.hid, self.out = op, nn.Linear(8, 32), nn.Linear(16, 16), nn.Linear(16, 3)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        if self.op == "chunk":
            a, b = h.chunk(2, dim=1)
        elif self.op == "split":
            a, b = torch.split(h, 16, dim=1)
        elif self.op == "unbind":
            a, b = torch.stack(h.unbind(0)).chunk(2, dim=1)
        else:  # sort over the batch: values and indices
            a, b = torch.sort(h, dim=0)[0].chunk(2, dim=1)
        return self.out(torch.relu(self.hid(a * b)))


@pytest.mark.parametrize("op", ["chunk", "split", "unbind", "sort"])
def test_an_op_returning_several_tensors_is_fixed_and_named_and_the_function_kept(op):
    net, x = _net(lambda: Gated(op)), torch.randn(16, 8)
    spec = permutation_spec(net, x[:2])
    assert any("returns several tensors" in f for f in spec.fixed), spec.fixed
    for seed in range(3):
        with torch.no_grad():
            assert torch.allclose(net(x), permute(net, spec, random_permutation(spec, seed))(x), atol=1e-6)
    if spec.groups:  # what the op does not touch may still move, and alignment keeps b's function
        aligned, _ = align(net, permute(net, spec, random_permutation(spec, 1)), method="weights", example_input=x[:2])
        with torch.no_grad():
            assert torch.allclose(aligned(x), net(x), atol=1e-6)


@pytest.mark.parametrize("wrap", [nn.utils.parametrizations.weight_norm, nn.utils.parametrizations.spectral_norm])
def test_a_parametrized_layer_stays_fixed_and_permute_keeps_the_function(wrap):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), wrap(nn.Linear(16, 16)), nn.ReLU(), nn.Linear(16, 3)).eval()
    x = torch.randn(16, 8)
    spec = permutation_spec(net, x[:2])
    assert any("a parametrized layer" in f for f in spec.fixed), spec.fixed
    with torch.no_grad():
        want = net(x)
        assert torch.allclose(permute(net, spec, random_permutation(spec, 0))(x), want, atol=1e-6)
