"""Speed settings (bf16 autocast, channels_last, torch.compile) give the same science on the CPU."""
import copy

import pytest
import torch

from modeconn.core.curve import Curve
from modeconn.data import Dataset, load_mnist1d
from modeconn.errors import ModeconnError
from modeconn.evaluation.batchnorm import recompute_bn
from modeconn.evaluation.evaluate import evaluate
from modeconn.models import create_model
from modeconn.runtime.speed import Speed
from modeconn.training.train import TrainConfig, train_curve, train_network


def _images(n=512, seed=0):
    """A small image dataset whose classes a conv net learns in one epoch (class = brightest quadrant)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 16, 16, generator=g) * 0.5
    y = torch.randint(0, 4, (n,), generator=g)
    for k in range(4):
        r, c = divmod(k, 2)
        x[y == k, :, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] += 1.0
    return Dataset("quadrants", x[: n - 128], y[: n - 128], x[n - 128:], y[n - 128:], 4)


def _train_without_and_with(settings, make, train, data, cfg):
    """Train two fresh copies of one start (`make()`), plain and under `settings`: (plain, its history, fast,
    its history)."""
    plain, fast = make(), make()
    history_plain, _ = train(plain, data, cfg, progress=False)
    history_fast, _ = train(fast, data, cfg, progress=False, speed=settings)
    return plain, history_plain, fast, history_fast


def _two_conv1d(data):
    torch.manual_seed(0)
    return create_model("conv1d", data.input_shape, 10), create_model("conv1d", data.input_shape, 10)


def test_bad_amp_is_refused():
    with pytest.raises(ModeconnError, match="`amp` must be one of"):
        Speed(amp="fp8")


def test_channels_last_gives_the_same_metrics_and_training():
    data = _images()
    torch.manual_seed(0)
    net = create_model("convbn", data.input_shape, 4)
    cfg = TrainConfig(epochs=1, lr=0.05, batch_size=64)
    plain, history_plain, nhwc, history_nhwc = _train_without_and_with(
        Speed(channels_last=True), lambda: copy.deepcopy(net), train_network, data, cfg)
    nhwc_speed = Speed(channels_last=True)
    assert nhwc.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    seen = []  # the layout of what the network receives
    hook = nhwc.register_forward_pre_hook(lambda m, i: seen.append(
        i[0].is_contiguous(memory_format=torch.channels_last) and not i[0].is_contiguous()))
    recompute_bn(nhwc, data.bn_batches(128), nhwc_speed)
    got = evaluate(nhwc, data.test_batches(64), nhwc_speed)
    hook.remove()
    assert seen and all(seen)
    recompute_bn(plain, data.bn_batches(128))
    want = evaluate(plain, data.test_batches(64))
    assert history_nhwc == pytest.approx(history_plain, rel=1e-4)
    # a test loss of 0.04 after an epoch of float32 training in another memory order: measured up to 1.2e-4
    # relative (seed 0 of 4, torch 2.13 on 2 x86 cores); a layout mix-up is off by far more
    assert got.loss == pytest.approx(want.loss, rel=1e-3)


def test_bf16_autocast_trains_a_curve_to_nearly_the_same_loss():
    data = load_mnist1d().subset(1000, 500)
    a, b = _two_conv1d(data)
    cfg = TrainConfig(epochs=3, lr=0.05, batch_size=64)
    full, history_fp32, half, history_bf16 = _train_without_and_with(
        Speed(amp="bf16"), lambda: Curve(a, b), train_curve, data, cfg)
    bf16 = Speed(amp="bf16")
    mid_bf16 = evaluate(half.model_at(0.5), data.test_batches(250), bf16)
    x, _ = next(iter(data.test_batches(250)))
    with bf16.autocast(x.device):
        assert half.model_at(0.5)(x).dtype == torch.bfloat16  # autocast really ran in bf16
    mid_fp32 = evaluate(full.model_at(0.5), data.test_batches(250))
    # bf16 has an 8-bit mantissa: the same training lands close, not bit-equal.
    assert history_bf16[-1] == pytest.approx(history_fp32[-1], rel=0.05)
    assert abs(mid_bf16.err - mid_fp32.err) < 0.03
    assert history_bf16 != history_fp32


def test_compile_trains_like_eager(monkeypatch):
    data = load_mnist1d().subset(512, 256)
    torch.manual_seed(0)
    net = create_model("mlp", data.input_shape, 10)
    cfg = TrainConfig(epochs=1, lr=0.05, batch_size=128)
    compiled_fns, real_compile = [], torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compiled_fns.append(fn) or real_compile(fn, **kw))
    eager, history_eager, compiled, history_compiled = _train_without_and_with(
        Speed(compile=True), lambda: copy.deepcopy(net), train_network, data, cfg)
    assert compiled_fns == [compiled]  # the training step really called the compiled network
    assert history_compiled == pytest.approx(history_eager, rel=1e-4)
    for p, q in zip(compiled.parameters(), eager.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_compiled_curve_network_trains_like_eager():
    data = load_mnist1d().subset(512, 256)
    a, b = _two_conv1d(data)
    cfg = TrainConfig(epochs=2, lr=0.05, batch_size=128)
    eager, history_eager, compiled, history_compiled = _train_without_and_with(
        Speed(compile=True), lambda: Curve(a, b), train_curve, data, cfg)
    assert hasattr(compiled, "_compiled_run")  # the network run really went through torch.compile
    assert history_compiled == pytest.approx(history_eager, rel=1e-4)
    torch.testing.assert_close(compiled.free_points.detach(), eager.free_points.detach(), rtol=1e-4, atol=1e-5)
