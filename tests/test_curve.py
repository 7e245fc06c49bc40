import copy

import pytest
import torch
from torch import nn

from modeconn import Curve, ModeconnError
from modeconn.core.families import FAMILIES
from modeconn.models import create_model


class Nested(nn.Module):
    """Nested submodules, a registered buffer and a BatchNorm: the awkward cases."""

    def __init__(self):
        super().__init__()
        self.block = nn.ModuleDict({"inner": nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh())})
        self.head = nn.Linear(8, 3)
        self.register_buffer("scale", torch.tensor(1.5))

    def forward(self, x):
        return self.head(self.block["inner"](x)) * self.scale


def _pair(make, seed_a=1, seed_b=2):
    torch.manual_seed(seed_a)
    a = make()
    torch.manual_seed(seed_b)
    b = make()
    for m in (a, b):  # give BN non-trivial running statistics
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.running_mean.uniform_(-1, 1)
                mod.running_var.uniform_(0.5, 2)
        m.eval()
    return a, b


MODELS = {
    "mlp": (lambda: create_model("mlp", (10,), 4), (5, 10)),
    "convbn": (lambda: create_model("convbn", (1, 12, 12), 5, channels=4, hidden=8), (5, 1, 12, 12)),
    "nested": (Nested, (5, 6)),
}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("kind", ["bezier", "polychain"])
def test_curve_reproduces_endpoints_exactly(name, kind):
    make, shape = MODELS[name]
    a, b = _pair(make)
    x = torch.randn(shape)
    curve = Curve(a, b, kind=kind, bends=2).eval()
    with torch.no_grad():
        assert torch.equal(curve(x, 0.0), a(x))
        assert torch.equal(curve(x, 1.0), b(x))


@pytest.mark.parametrize("name", MODELS)
def test_model_at_agrees_with_curve_call(name):
    make, shape = MODELS[name]
    a, b = _pair(make)
    curve = Curve(a, b, kind="bezier", bends=1).eval()
    with torch.no_grad():
        curve.free_points.add_(0.1 * torch.randn_like(curve.free_points))
        x = torch.randn(shape)
        for t in (0.0, 0.3, 0.5, 1.0):
            model = curve.model_at(t)
            assert type(model) is type(a)
            torch.testing.assert_close(model(x), curve(x, t), rtol=0, atol=0)
        assert set(curve.model_at(0.0).state_dict()) == set(a.state_dict())


def test_bends_start_on_the_segment_and_line_is_zero_bends():
    a, b = _pair(MODELS["mlp"][0])
    curve = Curve(a, b, kind="bezier", bends=3)
    line = Curve(a, b, kind="polychain", bends=0)
    for t in (0.2, 0.5, 0.9):
        torch.testing.assert_close(curve.weights(t), line.weights(t), atol=1e-6, rtol=0)
    assert line.free_points.shape[0] == 0


def test_line_length_is_endpoint_distance():
    a, b = _pair(MODELS["mlp"][0])
    from modeconn.core.flat import parameters_vector

    dist = float((parameters_vector(a) - parameters_vector(b)).norm())
    for kind in ("bezier", "polychain"):
        assert Curve(a, b, kind=kind, bends=0).length() == pytest.approx(dist, rel=1e-6)
        # a bent curve is never shorter than the chord
        c = Curve(a, b, kind=kind, bends=1)
        with torch.no_grad():
            c.free_points.add_(torch.randn_like(c.free_points))
        assert c.length() > dist


def test_gradients_reach_only_free_control_points():
    a, b = _pair(MODELS["convbn"][0])
    curve = Curve(a, b, kind="bezier", bends=2).train()
    names = [n for n, p in curve.named_parameters()]
    assert names == ["free_points"]
    x = torch.randn(MODELS["convbn"][1])
    curve(x, 0.37).sum().backward()
    assert curve.free_points.grad is not None and curve.free_points.grad.abs().sum() > 0
    assert curve.fixed_points.grad is None
    for p in list(a.parameters()) + list(b.parameters()):
        assert p.grad is None


def test_free_endpoints_are_trainable():
    a, b = _pair(MODELS["mlp"][0])
    curve = Curve(a, b, kind="bezier", bends=1, free_endpoints=True)
    assert curve.free_points.shape[0] == 3 and curve.fixed_points.shape[0] == 0
    curve(torch.randn(4, 10), 0.0).sum().backward()
    assert curve.free_points.grad[0].abs().sum() > 0


def test_different_architectures_are_refused_naming_the_parameter():
    a = create_model("mlp", (10,), 4, hidden=16)
    b = create_model("mlp", (10,), 4, hidden=32)
    with pytest.raises(ModeconnError, match=r"'net.1.weight' has shape \(16, 10\)"):
        Curve(a, b)
    c = Nested()
    d = Nested()
    d.register_buffer("extra", torch.zeros(2))
    with pytest.raises(ModeconnError, match="'extra' is in end but not in start"):
        Curve(c, d)


def test_curve_does_not_touch_its_endpoints():
    a, b = _pair(MODELS["convbn"][0])
    before = copy.deepcopy(a.state_dict())
    curve = Curve(a, b).train()
    curve(torch.randn(MODELS["convbn"][1]), 0.0).sum().backward()
    for k, v in a.state_dict().items():
        assert torch.equal(v, before[k])


class Tied(nn.Module):
    """One weight used by two layers: both must see the curve's point."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 6)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


class Recurrent(nn.Module):
    """An RNN caches its weights in its own __setattr__: the curve must fall back to functional_call."""

    def __init__(self):
        super().__init__()
        self.rnn, self.head = nn.GRU(6, 5, batch_first=True), nn.Linear(5, 3)

    def forward(self, x):
        return self.head(self.rnn(x.view(len(x), 2, 3).repeat(1, 1, 2))[0][:, -1])


FAST = {**MODELS, "tied": (Tied, (5, 6)), "rnn": (Recurrent, (5, 6))}


@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("training", [True, False])
def test_the_curve_runs_its_network_as_functional_call_would(name, training):
    """Outputs, gradients and BatchNorm's running statistics equal torch.func.functional_call's on the same state."""
    make, shape = FAST[name]
    a, b = _pair(make)
    curve = Curve(a, b).train(training)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(3))
    results = []
    for run in (curve.run, lambda state, x: torch.func.functional_call(curve.net, state, (x,))):
        curve.free_points.grad = None
        w, state = curve.point(0.3, wd=1e-3)
        out = run(state, x)
        (out.square().sum() + 0.5e-3 * w.dot(w)).backward()
        stats = {k: v.detach().clone() for k, v in state.items() if "running" in k}
        results.append((out.detach(), curve.free_points.grad.clone(), stats))
    (out1, grad1, stats1), (out2, grad2, stats2) = results
    torch.testing.assert_close(out1, out2, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad1, grad2, rtol=1e-6, atol=1e-6)
    assert stats1.keys() == stats2.keys()
    for k in stats1:
        torch.testing.assert_close(stats1[k], stats2[k], rtol=1e-6, atol=1e-6, msg=k)
    assert (curve.__dict__["_binder"] is False) == (name == "rnn")
    # the template is left as it was: placeholders only, no tensor of the step
    assert all(t.device.type == "meta" for t in [*curve.net.parameters(), *curve.net.buffers()])


def test_tied_weights_stay_tied_in_the_curve_and_in_its_networks():
    a, b = _pair(Tied)
    curve = Curve(a, b).eval()
    x = torch.randn(4, 6)
    for model in (curve.model_at(0.3), curve.control_model(1)):
        assert model.a.weight is model.b.weight
    torch.testing.assert_close(curve.model_at(0.3)(x), curve(x, 0.3), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["bezier", "polychain", "simplex3", "simplex4"])
def test_the_lerp_to_the_free_point_equals_the_general_sum(kind):
    """lerp(base, F, c_F), base the fixed rows' normalised sum, is sum_k c_k theta_k (values and
    gradients) wherever one row is free and the coefficients sum to one: curves and SPRO steps."""
    from modeconn import Simplex

    a, b = _pair(MODELS["mlp"][0])
    if kind.startswith("simplex"):
        k = int(kind[-1])
        span = Simplex([a, b, *[_pair(MODELS["mlp"][0])[0] for _ in range(k - 2)]], free=[False] * (k - 1) + [True])
        draws = [span.sample_weights(torch.Generator().manual_seed(i)) for i in range(4)] + [[0.0] * (k - 1) + [1.0]]
    else:
        span = Curve(a, b, kind=kind)
        draws = [FAMILIES[kind](t, 3) for t in (0.0, 0.2, 0.5, 0.77, 1.0)]
    with torch.no_grad():
        span.free_points.add_(torch.randn_like(span.free_points))
    for c in draws:
        results = []
        for combine in (span._lerp_to_free, span._general_sum):
            span.free_points.grad = None
            w = combine(c)
            w.pow(2).sum().backward()
            results.append((w.detach(), span.free_points.grad.clone()))
        torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-6, atol=1e-6)
