"""The training loop: losses read back once per window, not per step; a NaN named at its exact step."""
import math

import pytest
import torch
from torch.nn.functional import cross_entropy

from modeconn import Curve, ModeconnError
from modeconn.data import Dataset
from modeconn.models import create_model
from modeconn.training.schedule import paper_lr
from modeconn.training.train import CHECK_EVERY, Hooks, TrainConfig, fit, train_curve, train_network

STEPS = 60  # steps per epoch: two full windows and a short one


def _data(batch: int = 16) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x, xt = torch.randn(STEPS * batch, 12, generator=g), torch.randn(32, 12, generator=g)
    return Dataset("toy", x, (x[:, 0] > 0).long(), xt, (xt[:, 0] > 0).long(), 2)


CFG = TrainConfig(epochs=2, lr=0.05, batch_size=16)
WINDOWS = CFG.epochs * math.ceil(STEPS / CHECK_EVERY)


def test_plain_training_reads_the_loss_back_once_per_window_not_per_step(host_reads):
    torch.manual_seed(0)
    net, data = create_model("mlp", (12,), 2), _data()  # a Dataset checks its values once, where they enter
    host_reads["n"], host_reads["log"] = 0, []
    history, _ = train_network(net, data, CFG, progress=False)
    assert CFG.epochs * STEPS >= 4 * WINDOWS  # the check below would tell per-step reads apart
    assert host_reads["n"] == WINDOWS, host_reads["log"]
    assert len(history) == 2 and all(math.isfinite(v) for v in history)


def test_curve_training_reads_only_its_cpu_drawn_t_per_step(host_reads):
    torch.manual_seed(0)
    curve, data = Curve(create_model("mlp", (12,), 2), create_model("mlp", (12,), 2)), _data()
    host_reads["n"], host_reads["log"] = 0, []
    train_curve(curve, data, CFG, progress=False)
    t_draws = [r for r in host_reads["log"] if r[1] == "sample_t"]
    assert len(t_draws) == CFG.epochs * STEPS and {d for d, _ in t_draws} == {"cpu"}  # t ~ U(0, 1), CPU generator
    assert host_reads["n"] - len(t_draws) == WINDOWS, host_reads["log"]


@pytest.mark.parametrize("bad_step", [37, STEPS, 2 * STEPS - 1])
def test_a_non_finite_loss_stops_the_run_naming_its_exact_step_and_learning_rate(bad_step):
    torch.manual_seed(0)
    net = create_model("mlp", (12,), 2)
    calls = {"n": 0}

    def step_loss(forward, x, y, _gen):
        loss = cross_entropy(forward(x), y)
        calls["n"] += 1
        return loss * float("nan") if calls["n"] - 1 == bad_step else loss

    lr = paper_lr(CFG.lr, bad_step / (CFG.epochs * STEPS))
    epoch = bad_step // STEPS + 1
    with pytest.raises(ModeconnError, match=rf"loss became nan at step {bad_step} \(epoch {epoch}\) with "
                                            rf"learning rate {lr:.4g};"):
        fit(net, list(net.parameters()), step_loss, _data(), CFG, hooks=Hooks(progress=False))
