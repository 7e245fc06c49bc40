"""GPU paths: built on the GPU as the CLI builds them, and the same results as on the CPU.

Skipped only where no GPU is present (so far no session had one: see docs/benchmarks.md).
Comparisons say what they compare: TF32 is turned off where values are compared to the CPU's,
and errors are compared to within a few images (one flipped argmax moves an error by 1/N).
"""
import copy

import pytest
import torch

from modeconn.commands import connect, ensemble, eval_curve, fge, plane, train
from modeconn.core.curve import Curve
from modeconn.core.simplex import Simplex
from modeconn.data import Dataset, load_mnist1d
from modeconn.data.augment import CropFlip
from modeconn.evaluation.batchnorm import recompute_bn
from modeconn.evaluation.pointwise import EvalSettings, PointEvaluator
from modeconn.models import create_model
from modeconn.runtime.speed import Speed
from modeconn.training.subspace import train_subspace
from modeconn.training.train import TrainConfig, train_curve, train_simplex

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU on this machine")
CUDA = torch.device("cuda")


@pytest.fixture
def no_tf32():
    """fp32 matmuls and convolutions in full precision, as on the CPU (TF32 is cuDNN's default on Ampere+)."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _cifar_shaped(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)
    return Dataset("cifar-shaped", x[:192], y[:192], x[192:], y[192:], 10, train_transform=CropFlip())


def test_the_commands_run_end_to_end_on_the_gpu(tmp_path):
    """train, connect, eval-curve, plane, ensemble and fge with --device cuda: networks loaded onto the GPU first."""
    gpu = dict(device="cuda", progress=False)
    train(tmp_path / "a", epochs=2, keep_epochs=(1,), **gpu)
    train(tmp_path / "b", epochs=2, seed=1, **gpu)
    info = connect(tmp_path / "a", tmp_path / "b", tmp_path / "ab", epochs=1, **gpu)
    assert 0 <= info.raw["midpoint_test_err"] <= 1
    along = eval_curve(tmp_path / "ab", points=3, **gpu)
    assert len(along.curve["test_err"]) == 3
    grid = plane(tmp_path / "p", curve=tmp_path / "ab", grid=3, **gpu)
    assert grid.metrics["test_err"].shape == (3, 3)
    assert ensemble(tmp_path / "ab", points=2, **gpu).ensemble.err <= 1
    assert fge(tmp_path / "a" / "epoch1", tmp_path / "f", epochs=2, cycle=2, **gpu).snapshots


def test_curve_training_on_gpu_matches_cpu(no_tf32):
    data = load_mnist1d().subset(1000, 500)
    torch.manual_seed(0)
    a, b = create_model("conv1d", data.input_shape, 10), create_model("conv1d", data.input_shape, 10)
    cfg = TrainConfig(epochs=2, lr=0.05, batch_size=64)
    cpu_curve = Curve(a, b)
    gpu_curve = Curve(copy.deepcopy(a).to(CUDA), copy.deepcopy(b).to(CUDA))  # as connect builds it
    history_cpu, _ = train_curve(cpu_curve, data, cfg, progress=False)
    history_gpu, _ = train_curve(gpu_curve, data.to(CUDA), cfg, progress=False)
    assert history_gpu == pytest.approx(history_cpu, rel=1e-3)
    diff = (gpu_curve.free_points.cpu() - cpu_curve.free_points).norm() / cpu_curve.free_points.norm()
    assert float(diff) < 1e-3  # kernel choice changes rounding; the curves stay close


def test_point_evaluation_on_gpu_matches_cpu(no_tf32):
    data = _cifar_shaped()
    torch.manual_seed(0)
    net = create_model("preresnet110", data.input_shape, 10)
    weights = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    settings = EvalSettings(batch_size=64)
    cpu = PointEvaluator(copy.deepcopy(net), data, settings)(weights)
    gpu = PointEvaluator(copy.deepcopy(net).to(CUDA), data.to(CUDA), settings)(weights.to(CUDA))
    assert gpu.train.loss == pytest.approx(cpu.train.loss, rel=1e-4)
    assert gpu.test.loss == pytest.approx(cpu.test.loss, rel=1e-4)
    assert abs(gpu.train.err - cpu.train.err) <= 2 / len(data.train_y)  # at most two images flip
    assert abs(gpu.test.err - cpu.test.err) <= 2 / len(data.test_y)


def test_bn_recomputation_on_gpu_never_syncs():
    data = _cifar_shaped().to(CUDA)
    net = create_model("preresnet110", data.input_shape, 10).to(CUDA)
    batches = list(data.train_batches(64, shuffle=False))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        recompute_bn(net, batches)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_augmentation_runs_on_the_gpu_with_the_cpu_draws():
    data = _cifar_shaped()
    x_cpu, _ = next(iter(data.train_batches(64, shuffle=True, seed=3)))
    x_gpu, _ = next(iter(data.to(CUDA).train_batches(64, shuffle=True, seed=3)))
    assert x_gpu.device.type == "cuda"
    torch.testing.assert_close(x_gpu.cpu(), x_cpu)


@pytest.mark.parametrize("settings", [Speed(amp="bf16"), Speed(channels_last=True),
                                      Speed(amp="bf16", channels_last=True),
                                      Speed(compile=True)])
def test_speed_settings_train_a_vgg_curve_on_gpu(settings):
    data = _cifar_shaped().to(CUDA)
    torch.manual_seed(0)
    a = create_model("vgg16bn", data.input_shape, 10).to(CUDA)
    b = create_model("vgg16bn", data.input_shape, 10).to(CUDA)
    cfg = TrainConfig(epochs=2, lr=0.01, batch_size=64)
    history_ref, _ = train_curve(Curve(a, b), data, cfg, progress=False)
    history, _ = train_curve(Curve(a, b), data, cfg, progress=False, speed=settings)
    assert all(torch.isfinite(torch.tensor(history)))
    assert history[-1] == pytest.approx(history_ref[-1], rel=0.1)


@pytest.mark.parametrize("kind", ["network", "curve", "simplex", "subspace"])
def test_training_steps_never_sync_between_loss_reads(monkeypatch, kind):
    """Only the loss window's read (every CHECK_EVERY steps) may wait for the GPU; steps never do."""
    from modeconn.training import train as train_mod

    real_read = train_mod._LossWindow.read

    def read_allowed(self, *args):
        torch.cuda.set_sync_debug_mode("default")
        try:
            return real_read(self, *args)
        finally:
            torch.cuda.set_sync_debug_mode("error")

    monkeypatch.setattr(train_mod._LossWindow, "read", read_allowed)
    data = _cifar_shaped().to(CUDA)
    cfg = TrainConfig(epochs=1, lr=0.05, batch_size=32)
    torch.manual_seed(0)
    nets = [create_model("convfc", data.input_shape, 10).to(CUDA) for _ in range(3)]
    spro = Simplex(nets, free=[False, False, True])  # a SPRO step: a Dirichlet draw and the volume term
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        if kind == "network":
            train_mod.train_network(nets[0], data, cfg, progress=False)
        elif kind == "curve":
            train_curve(Curve(*nets[:2]), data, cfg, progress=False)
        elif kind == "simplex":
            train_simplex(spro, data, cfg, volume_weight=0.01, progress=False)
        else:
            train_subspace(Curve.through(nets[:2]), data, cfg, progress=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
