"""The task protocol: how batches are read, metrics reduced, and analyses run for tasks other than classification."""
import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

import modeconn as mc
from modeconn.core.flat import parameter_space, parameters_vector
from modeconn.data import from_torch
from modeconn.evaluation.curvature import HessianOperator
from modeconn.evaluation.ensemble import RunningEnsemble
from modeconn.evaluation.evaluate import evaluate
from modeconn.evaluation.pointwise import PointEvaluator
from modeconn.reporting.plots import _panels, plot_along


def _batches(x, y, size):
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]


# ----------------------------------------------------------------------------------------------- reading batches

def test_a_task_reads_tuples_lists_triples_and_named_dict_entries():
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    task = mc.classification()
    for batch in ((x, y), [x, y], (x, y, torch.arange(4))):
        got = task.split(batch)
        assert got[0] is x and got[1] is y
    named = mc.classification(input_key="image", target_key="label")
    assert named.split({"image": x, "label": y, "index": 0}) == (x, y)


@pytest.mark.parametrize("batch, message", [
    (torch.randn(4, 3), "a batch must be a tuple or list .* got a Tensor"),
    ((torch.randn(4, 3),), "got a tuple of 1"),
    ({"image": torch.randn(4, 3), "label": torch.zeros(4)}, r"a dict batch \(keys image, label\) needs the task to "
                                                            "name its entries"),
])
def test_a_batch_the_task_cannot_read_is_refused_in_one_line(batch, message):
    with pytest.raises(mc.ModeconnError, match=message) as err:
        mc.classification().split(batch)
    assert "\n" not in str(err.value)


def test_a_dict_batch_without_the_named_entry_is_refused():
    task = mc.regression(input_key="x", target_key="target")
    with pytest.raises(mc.ModeconnError, match=r"has no 'target' entry \(it has x, y\)"):
        task.split({"x": torch.zeros(2, 1), "y": torch.zeros(2)})


def test_a_single_tensor_dataset_is_refused_not_split_into_inputs_and_targets():
    single = torch.utils.data.TensorDataset(torch.randn(8, 3))
    with pytest.raises(mc.ModeconnError, match="a batch must be a tuple or list"):
        from_torch("single", single, single)


def test_a_dataset_refuses_something_that_is_not_a_task():
    data = mc.load_dataset("mnist1d")
    with pytest.raises(mc.ModeconnError, match="a task must be a modeconn.Task"):
        data.with_task("regression")


# ----------------------------------------------------------------------------------------- reduction from sums

@pytest.mark.parametrize("task", [mc.classification(), mc.regression()], ids=lambda t: t.name)
def test_metrics_do_not_depend_on_how_a_split_is_cut_into_batches(task):
    torch.manual_seed(0)
    x = torch.randn(1003, 5)
    y = torch.randint(0, 3, (1003,)) if task.name == "classification" else torch.randn(1003, 3)
    model = nn.Linear(5, 3)
    whole = evaluate(model, [(x, y)], task=task)
    for size in (1, 7, 128):
        cut = evaluate(model, _batches(x, y, size), task=task)
        assert list(cut) == list(task.metrics)
        for name in task.metrics:  # the reduction is exact; float32 outputs of other batch shapes round apart
            assert cut[name] == pytest.approx(whole[name], rel=1e-6, abs=1e-9), (size, name)
    out = model(x)
    if task.name == "regression":  # per target element, as torch's mse_loss and l1_loss reduce
        assert whole.loss == pytest.approx(F.mse_loss(out, y).item(), rel=1e-5)
        assert whole.mae == pytest.approx(F.l1_loss(out, y).item(), rel=1e-5)
    else:
        assert whole.loss == pytest.approx(F.cross_entropy(out, y).item(), rel=1e-5)
        assert whole.err == pytest.approx((out.argmax(1) != y).double().mean().item(), abs=1e-12)


class Huber(mc.Task):
    """A user's task: Huber loss, and the fraction of predictions more than 1 off."""

    name = "huber"
    metrics = ("loss", "miss")

    def loss(self, outputs, targets):
        return F.huber_loss(outputs.reshape(targets.shape), targets)

    def sums(self, outputs, targets):
        out = outputs.reshape(targets.shape).double()
        return torch.stack([F.huber_loss(out, targets.double(), reduction="sum"),
                            ((out - targets).abs() > 1).sum().double()])


def _regression_data(n_train=512, n_test=256, task=None):
    """y = sin of a fixed projection of x, plus noise: a smooth target a small MLP learns."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_train + n_test, 8, generator=g)
    y = torch.sin(x @ torch.randn(8, generator=g)) + 0.05 * torch.randn(n_train + n_test, generator=g)
    return mc.Dataset("toy-regression", x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes=1,
                      task=task or mc.regression())


def test_a_users_own_task_trains_and_names_the_metrics_of_evaluation():
    data = _regression_data(task=Huber())
    torch.manual_seed(0)
    model = mc.create_model("mlp", data.input_shape, 1)
    settings = mc.EvalSettings()
    before = PointEvaluator(model, data, settings)(parameters_vector(model))
    mc.train_network(model, data, mc.TrainConfig(epochs=20, lr=0.1, batch_size=64), progress=False)
    after = PointEvaluator(model, data, settings)(parameters_vector(model))
    assert set(after.to_dict()) == {"train_loss", "train_miss", "test_loss", "test_miss", "train_objective"}
    # training minimised the user's loss: measured 0.251 -> 0.042 (train), 0.257 -> 0.137 (test)
    assert after.train.loss < 0.4 * before.train.loss and after.test.loss < 0.75 * before.test.loss


# ------------------------------------------------------------------------------------ regression, analyses

def test_chunked_regression_points_equal_one_at_a_time():
    data = _regression_data()
    torch.manual_seed(0)
    model = mc.create_model("mlp", data.input_shape, 1)
    w = parameters_vector(model)
    weights = torch.stack([w + 0.1 * k * torch.randn_like(w) for k in range(5)])
    settings = mc.EvalSettings(batch_size=100)
    one = PointEvaluator(model, data, settings).many(weights)
    chunked = PointEvaluator(model, data, settings, chunk=3).many(weights)
    for a, b in zip(one, chunked):
        for key, value in a.to_dict().items():
            assert b.to_dict()[key] == pytest.approx(value, rel=1e-5), key


def test_the_hessian_of_a_regression_loss_is_torchs():
    data = _regression_data(n_train=60)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    x, y = data.train_x.double(), data.train_y.double()
    op = HessianOperator(model, _batches(x, y, 25), task=data.task)
    w = parameters_vector(model).double()
    space = parameter_space(model)

    def mean_loss(flat):
        return F.mse_loss(functional_call(model, space.unflatten(flat), (x,)).reshape(-1), y)

    exact = torch.autograd.functional.hessian(mean_loss, w)
    v = torch.randn(len(w), dtype=torch.float64)
    assert torch.allclose(op(v), exact @ v, rtol=1e-9, atol=1e-12)


def test_a_regression_ensemble_averages_the_members_outputs():
    data = _regression_data()
    members = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        members.append(mc.create_model("mlp", data.input_shape, 1))
        mc.train_network(members[-1], data, mc.TrainConfig(epochs=3, lr=0.05, batch_size=64, seed=seed),
                         progress=False)
    ens = RunningEnsemble(data.test_batches(100), 1, task=data.task)
    own = [ens.add(m) for m in members]
    with torch.no_grad():
        outputs = torch.stack([m.eval()(data.test_x).double().reshape(-1) for m in members])
    diff = outputs.mean(0) - data.test_y.double()
    metrics = ens.metrics()
    assert list(metrics) == ["loss", "mae"] and list(own[0]) == ["loss", "mae"]
    assert metrics.loss == pytest.approx(float(diff.square().mean()), rel=1e-12)
    assert metrics["mae"] == pytest.approx(float(diff.abs().mean()), rel=1e-12)
    assert own[1]["loss"] == pytest.approx(float((outputs[1] - data.test_y).square().mean()), rel=1e-12)
    # the squared error of an average is at most the average squared error (Jensen): true of any members
    assert metrics.loss <= sum(o["loss"] for o in own) / 3


def test_a_users_task_ensembles_its_outputs_and_names_the_records_from_its_metrics():
    data = _regression_data(task=Huber())
    torch.manual_seed(0)
    curve = mc.Curve(mc.create_model("mlp", data.input_shape, 1), mc.create_model("mlp", data.input_shape, 1))
    result = mc.curve_ensemble(curve, data, points=3, progress=False)
    assert list(result.members[0]) == ["t", "test_loss", "test_miss", "ensemble_test_loss", "ensemble_test_miss"]
    assert result.members[-1]["ensemble_test_loss"] == result.ensemble.loss
    assert "test loss" in result.describe() and "test miss" in result.describe()


def test_fge_and_swa_of_a_regression_model_record_its_metrics(tmp_path):
    from modeconn.reporting.plots import plot_fge
    from modeconn.training.fge import FGEConfig, fast_geometric_ensemble

    data = _regression_data()
    torch.manual_seed(0)
    model = mc.create_model("mlp", data.input_shape, 1)
    mc.train_network(model, data, mc.TrainConfig(epochs=3, lr=0.05, batch_size=64), progress=False)
    result = fast_geometric_ensemble(model, data, FGEConfig(epochs=4, cycle=2, lr1=0.05, lr2=0.005, batch_size=64),
                                     progress=False)
    assert [r["snapshot"] for r in result.snapshots] == [1, 2]
    assert set(result.snapshots[-1]) >= {"test_loss", "test_mae", "ensemble_test_loss", "ensemble_test_mae"}
    assert list(result.swa) == ["test_loss", "test_mae", "snapshots_averaged"]
    assert "ensemble test loss" in result.describe()
    plot_fge(result, tmp_path / "fge.png")
    assert (tmp_path / "fge.png").stat().st_size > 0


def test_the_budget_comparison_of_a_regression_model_tabulates_its_ensemble_metrics():
    from modeconn.training.budget import budget_markdown, compare_budgets

    data = _regression_data()
    result = compare_budgets(lambda: mc.create_model("mlp", data.input_shape, 1), data,
                             mc.TrainConfig(epochs=5, lr=0.05, batch_size=64), cycle=2, lr1=0.05, lr2=0.005, seeds=[0],
                             progress=False)
    assert set(result.table) == {"single@1B", "independent@2B", "fge@1B", "fge@2B"}
    assert all(set(row) >= {"loss", "mae"} and "err" not in row for row in result.table.values())
    table = budget_markdown(result.table, "toy")
    assert "| method | budget | test loss | test MAE |" in table and "test error" not in table
    assert result.describe().startswith("budget comparison, test loss over seeds")


def _fashion_regression(fashion_mnist, n_train=6000, n_test=2000):
    """Real data, a continuous target: from the top half of a Fashion-MNIST image, the mean (normalised) brightness
    of each quarter of its bottom half, (N, 4)."""
    def split(x):
        img = x.reshape(len(x), 28, 28)
        bottom = img[:, 14:].reshape(len(x), 14, 2, 14).mean(dim=(1, 3))  # left, right
        bottom2 = img[:, 14:].reshape(len(x), 2, 7, 28).mean(dim=(2, 3))  # upper, lower
        return img[:, :14].reshape(len(x), -1).contiguous(), torch.cat([bottom, bottom2], 1).contiguous()

    tx, ty = split(fashion_mnist.train_x[:n_train])
    vx, vy = split(fashion_mnist.test_x[:n_test])
    return mc.Dataset("fashion-halves", tx, ty, vx, vy, num_classes=4, task=mc.regression())


def test_regression_on_real_data_trains_connects_is_measured_along_the_path_and_ensembled(fashion_mnist,
                                                                                           tmp_path):
    data = _fashion_regression(fashion_mnist)
    cfg = mc.TrainConfig(epochs=6, lr=0.02, batch_size=128)
    ends = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = mc.create_model("mlp", data.input_shape, 4)
        mc.train_network(model, data, mc.TrainConfig(**{**cfg.__dict__, "seed": seed}), progress=False)
        ends.append(model)
    curve = mc.Curve(*ends, kind="bezier", bends=1)
    mc.train_curve(curve, data, cfg, progress=False)
    result = mc.eval_path(curve, *ends, data, points=7, settings=mc.EvalSettings(wd=cfg.wd), progress=False)
    assert set(result.line) == {"train_loss", "train_mae", "test_loss", "test_mae", "train_objective"}
    assert result.settings["task"] == "regression"
    predict_the_mean = (data.test_y - data.train_y.mean(0)).square().mean().item()
    line, bezier = result.line["test_loss"], result.curve["test_loss"]
    print(f"mean predictor {predict_the_mean:.4f}; ends {line[0]:.4f} {line[-1]:.4f}; line max {max(line):.4f}; "
          f"curve max {max(bezier):.4f}; barriers line {result.summary['barriers']['line']['test_loss']:.4f} "
          f"curve {result.summary['barriers']['curve']['test_loss']:.4f}")
    assert max(line[0], line[-1]) < 0.5 * predict_the_mean  # the networks learned the target
    # measured (6 epochs, OMP_NUM_THREADS=2): ends 0.035 against the mean predictor's 0.189; test-loss barrier of
    # the line 0.118, of the Bezier curve 0.0085
    assert result.summary["barriers"]["curve"]["test_loss"] < 0.3 * result.summary["barriers"]["line"]["test_loss"]
    assert "test loss" in result.describe()
    plot_along(result, tmp_path / "along.png")  # the test loss drawn where classification draws the error
    assert _panels(result.summary["line"]) == [("train_loss", "train loss", 1), ("test_loss", "test loss", 1)]

    # ensembles average the members' predictions: the two independently trained ends, and points of the curve
    pair = RunningEnsemble(data.test_batches(1000), 4, task=data.task)
    own = [pair.add(m) for m in ends]
    along = mc.curve_ensemble(curve, data, points=5, progress=False)
    print(f"ends {own[0]['loss']:.4f} {own[1]['loss']:.4f}; their ensemble {pair.metrics().loss:.4f}; "
          f"curve ensemble of 5 {along.ensemble.loss:.4f}")
    # measured (6 epochs, OMP_NUM_THREADS=2): ends 0.0349 and 0.0350, their ensemble 0.0343; the curve's five
    # members (interior points up to 0.043) ensemble to 0.0368, below their mean
    assert pair.metrics().loss < min(o["loss"] for o in own)
    assert along.ensemble.loss < sum(m["test_loss"] for m in along.members) / len(along.members)


# ------------------------------------------------------------------------------------------- refused, one line

def _one_line(call, message):
    with pytest.raises(mc.ModeconnError, match=message) as err:
        call()
    assert "\n" not in str(err.value)


def test_regression_outputs_that_do_not_pair_with_the_targets_are_refused_not_reshaped():
    x, y = torch.randn(60, 8), torch.randn(60, 2)
    transposed = nn.Sequential(nn.Linear(8, 2), type("T", (nn.Module,), {"forward": lambda self, o: o.T})())
    _one_line(lambda: evaluate(transposed, [(x, y)], task=mc.regression()),
              r"one output row per example .* \(targets \(60, 2\)\), the model gives \(2, 60\)")
    _one_line(lambda: mc.regression().loss(torch.randn(60, 3), y), "the model gives \\(60, 3\\)")


def test_classification_refuses_float_targets_and_points_to_regression():
    _one_line(lambda: evaluate(nn.Linear(8, 3), [(torch.randn(5, 8), torch.randn(5))]),
              "classification needs class indices .* got float32 targets .* regression task \\(mc.regression")


@pytest.mark.parametrize("bad", ["regression", mc.Regression, None])
def test_an_analysis_given_something_that_is_not_a_task_refuses_it(bad):
    batches = [(torch.randn(4, 8), torch.randn(4))]
    for call in (lambda: evaluate(nn.Linear(8, 1), batches, task=bad),
                 lambda: mc.recompute_bn(nn.Sequential(nn.Linear(8, 2), nn.BatchNorm1d(2)), batches, task=bad)):
        _one_line(call, "a task must be a modeconn.Task")


class _NoSums(mc.Task):
    name, metrics = "nosums", ("loss",)

    def loss(self, outputs, targets):
        return outputs.sum()


class _ShortSums(Huber):
    def sums(self, outputs, targets):
        return super().sums(outputs, targets)[:1]


class _IntCount(Huber):
    def count(self, targets):
        return targets.shape[0]


@pytest.mark.parametrize("task, message", [
    (_NoSums(), "_NoSums must define sums"),
    (type("Twice", (Huber,), {"metrics": ("loss", "loss")})(), "distinct names"),
    (type("Prefixed", (Huber,), {"metrics": ("loss", "test_err")})(), "none starting train_, test_"),
    (type("Text", (Huber,), {"metrics": "loss"})(), "must be a tuple of distinct names"),
    (type("Nameless", (mc.Task,), {"metrics": ("loss",), "loss": Huber.loss, "sums": Huber.sums})(),
     "Nameless must define name"),
])
def test_a_malformed_task_is_refused_when_it_is_given(task, message):
    _one_line(lambda: evaluate(nn.Linear(8, 1), [(torch.randn(4, 8), torch.randn(4))], task=task), message)
    _one_line(lambda: _regression_data(task=task), message)


@pytest.mark.parametrize("task, message", [
    (_ShortSums(), r"sums must return a tensor of shape \(2,\), one sum per metric \(loss, miss\), got \(1,\)"),
    (_IntCount(), "count\\(targets\\) must return a scalar tensor"),
])
def test_a_tasks_sums_and_count_are_checked_batch_by_batch(task, message):
    _one_line(lambda: evaluate(nn.Linear(8, 1), [(torch.randn(4, 8), torch.randn(4))], task=task), message)


def test_task_keys_are_both_named_or_neither():
    _one_line(lambda: mc.regression(input_key="x"), "two entry names, input_key and target_key")
    _one_line(lambda: mc.classification(input_key=3, target_key="y"), "input_key=3")


@pytest.mark.parametrize("change, message", [
    (dict(train_y=torch.randn(500)), "training split has 512 inputs and 500 targets"),
    (dict(test_x=torch.full((256, 8), float("nan"))), "test inputs hold NaN"),
    (dict(train_y=torch.randint(0, 3, (512,))), "regression needs floating-point targets, the training targets are "
                                               "int64"),
    (dict(num_classes=3), "the training targets have 1 per example, num_classes is 3"),
    (dict(test_y=torch.full((256,), float("inf"))), "test targets hold NaN or infinite"),
    (dict(task=mc.classification()), "classification needs class indices"),
])
def test_a_dataset_no_analysis_could_measure_is_refused_when_made(change, message):
    from dataclasses import replace
    _one_line(lambda: replace(_regression_data(), **change), message)


def test_class_labels_out_of_range_are_refused_when_the_dataset_is_made():
    x = torch.randn(10, 4)
    _one_line(lambda: mc.Dataset("labels", x, torch.arange(10), x, torch.zeros(10, dtype=torch.long), 5),
              "the training labels run from 0 to 9, outside 0..4")
