"""GPU paths: the same results on CUDA as on the CPU. Skipped only where no GPU is present."""
import copy

import pytest
import torch

from modeconn.data.augment import CropFlip
from modeconn.core.curve import Curve
from modeconn.data import Dataset, load_mnist1d
from modeconn.models import create_model
from modeconn.evaluation.pointwise import EvalSettings, PointEvaluator
from modeconn.runtime.speed import Speed
from modeconn.training.train import TrainConfig, train_curve

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU on this machine")
CUDA = torch.device("cuda")


def _cifar_shaped(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)
    return Dataset("cifar-shaped", x[:192], y[:192], x[192:], y[192:], 10, train_transform=CropFlip())


def test_curve_training_on_gpu_matches_cpu():
    data = load_mnist1d().subset(1000, 500)
    torch.manual_seed(0)
    a, b = create_model("conv1d", data.input_shape, 10), create_model("conv1d", data.input_shape, 10)
    cfg = TrainConfig(epochs=2, lr=0.05, batch_size=64)
    cpu_curve, gpu_curve = Curve(a, b), Curve(a, b).to(CUDA)
    history_cpu, _ = train_curve(cpu_curve, data, cfg, progress=False)
    history_gpu, _ = train_curve(gpu_curve, data.to(CUDA), cfg, progress=False)
    assert history_gpu == pytest.approx(history_cpu, rel=1e-3)
    # TF32 and kernel choice change rounding; the curves stay close.
    diff = (gpu_curve.free_points.cpu() - cpu_curve.free_points).norm() / cpu_curve.free_points.norm()
    assert float(diff) < 1e-3


def test_point_evaluation_on_gpu_matches_cpu():
    data = _cifar_shaped()
    torch.manual_seed(0)
    net = create_model("preresnet110", data.input_shape, 10)
    weights = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    settings = EvalSettings(batch_size=64)
    cpu = PointEvaluator(copy.deepcopy(net), data, settings)(weights)
    gpu = PointEvaluator(copy.deepcopy(net).to(CUDA), data.to(CUDA), settings)(weights.to(CUDA))
    for key, value in cpu.items():
        assert gpu[key] == pytest.approx(value, rel=1e-3, abs=1e-3), key


def test_augmentation_runs_on_the_gpu_with_the_cpu_draws():
    data = _cifar_shaped()
    x_cpu, _ = next(iter(data.train_batches(64, shuffle=True, seed=3)))
    x_gpu, _ = next(iter(data.to(CUDA).train_batches(64, shuffle=True, seed=3)))
    assert x_gpu.device.type == "cuda"
    torch.testing.assert_close(x_gpu.cpu(), x_cpu)


@pytest.mark.parametrize("settings", [Speed(amp="bf16"), Speed(channels_last=True), Speed(amp="bf16", channels_last=True),
                                      Speed(compile=True)])
def test_speed_settings_train_a_vgg_curve_on_gpu(settings):
    data = _cifar_shaped().to(CUDA)
    torch.manual_seed(0)
    a, b = create_model("vgg16bn", data.input_shape, 10), create_model("vgg16bn", data.input_shape, 10)
    cfg = TrainConfig(epochs=2, lr=0.01, batch_size=64)
    reference = Curve(a, b).to(CUDA)
    history_ref, _ = train_curve(reference, data, cfg, progress=False)
    fast = Curve(a, b).to(CUDA)
    history, _ = train_curve(fast, data, cfg, progress=False, speed=settings)
    assert all(torch.isfinite(torch.tensor(history)))
    assert history[-1] == pytest.approx(history_ref[-1], rel=0.1)
