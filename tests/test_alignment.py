"""Permutation symmetry found by tracing, applied exactly, and alignment by weight and activation matching."""
import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from modeconn import Curve, ModeconnError
from modeconn.alignment.connectivity import PathsResult
from modeconn.alignment.matching import align, weight_matching
from modeconn.alignment.repair import repair, repairable_layers, repaired_plane, repaired_points, unit_stats
from modeconn.alignment.spec import permutation_spec, permute, random_permutation
from modeconn.commands import plane
from modeconn.core.flat import load_parameters_vector, parameters_vector
from modeconn.core.plane import plane_basis
from modeconn.data import load_mnist1d
from modeconn.evaluation.along import eval_path
from modeconn.evaluation.pointwise import EvalSettings
from modeconn.models import MODELS, PreResNet, create_model
from modeconn.reporting.report import render_report
from modeconn.storage.files import save_tensors
from modeconn.storage.runfolder import load_curve, load_network

SHAPES = {"mlp": (40,), "conv1d": (40,), "convbn": (1, 28, 28)}


class Branches(nn.Module):
    """Nested submodules, a residual add, a concat of two branches and BatchNorm, for the tracer."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.left = nn.Sequential(nn.Conv2d(8, 6, 1), nn.ReLU())
        self.right = nn.Sequential(nn.Conv2d(8, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.mix = nn.Conv2d(10, 8, 1)
        self.head = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.mix(torch.cat([self.left(x), self.right(x)], dim=1))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 4), 1))


def _outputs_agree(model, shape, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(6, *shape)
    spec = permutation_spec(model, x)
    assert spec.groups, "no permutable units found"
    permuted = permute(model, spec, random_permutation(spec, seed + 1))
    assert any(not torch.equal(p, q) for p, q in zip(model.state_dict().values(), permuted.state_dict().values()))
    for mode in (True, False):
        for net in (model, permuted):
            net.train(mode)
            for m in net.modules():  # dropout masks are drawn per position, so they cannot follow units
                if isinstance(m, nn.Dropout):
                    m.eval()
        with torch.no_grad():
            want, got = model(x), permuted(x)
        scale = want.abs().max()  # eval-mode BN with fresh statistics lets deep nets reach large values
        # float32 sums in another order: measured up to 1.7e-5 (vgg19bn in train mode, BN over batches of 6
        # at 1x1 spatial size, 3 seeds); a wrong permutation is off by O(1)
        assert float((got - want).abs().max() / scale) < 1e-4, f"train={mode}"
    return spec


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_random_permutation_of_every_registry_model_keeps_its_function(name):
    torch.manual_seed(0)
    _outputs_agree(create_model(name, SHAPES.get(name, (3, 32, 32)), 10), SHAPES.get(name, (3, 32, 32)))


def test_nested_modules_residual_concat_and_batchnorm_keep_their_function():
    spec = _outputs_agree(Branches(), (3, 16, 16))
    stream = [a for a in spec.axes if a.name == "head.weight"][0]
    assert stream.segments[0].repeat == 16  # a channel became a block of 4 x 4 features after the flatten
    concat = [a for a in spec.axes if a.name == "mix.weight" and a.dim == 1][0]
    assert [s.size for s in concat.segments] == [6, 4]  # the two branches side by side


def _groups_as_sets(spec):
    """Each group as the set of (tensor, dim) it acts on: comparable whatever the group names."""
    return {frozenset((a.name, a.dim) for a, _ in spec.axes_of(g)) for g in spec.groups}


def test_the_mlp_spec_equals_the_one_written_by_hand():
    spec = permutation_spec(create_model("mlp", (40,), 10), torch.randn(2, 40))
    by_hand = {frozenset({("net.1.weight", 0), ("net.1.bias", 0), ("net.3.weight", 1)}),
               frozenset({("net.3.weight", 0), ("net.3.bias", 0), ("net.5.weight", 1)})}
    assert _groups_as_sets(spec) == by_hand and spec.fixed == []


def test_a_preresnet_spec_equals_the_one_written_by_hand():
    """Git Re-Basin's way of writing a ResNet: one group per residual stream, one per block's inner width."""
    spec = permutation_spec(PreResNet((3, 32, 32), 10, depth=8), torch.randn(2, 3, 32, 32))
    bn = lambda m: {(f"{m}.{p}", 0) for p in ("weight", "bias", "running_mean", "running_var")}  # noqa: E731
    by_hand = {
        frozenset({("conv1.weight", 0), *bn("layers.0.bn1"), ("layers.0.conv1.weight", 1),
                   ("layers.0.conv2.weight", 0), *bn("layers.1.bn1"), ("layers.1.conv1.weight", 1),
                   ("layers.1.downsample.weight", 1)}),
        frozenset({("layers.0.conv1.weight", 0), *bn("layers.0.bn2"), ("layers.0.conv2.weight", 1)}),
        frozenset({("layers.1.conv1.weight", 0), *bn("layers.1.bn2"), ("layers.1.conv2.weight", 1)}),
        frozenset({("layers.1.conv2.weight", 0), ("layers.1.downsample.weight", 0), *bn("layers.2.bn1"),
                   ("layers.2.conv1.weight", 1), ("layers.2.downsample.weight", 1)}),
        frozenset({("layers.2.conv1.weight", 0), *bn("layers.2.bn2"), ("layers.2.conv2.weight", 1)}),
        frozenset({("layers.2.conv2.weight", 0), ("layers.2.downsample.weight", 0), *bn("bn"), ("fc.weight", 1)}),
    }
    assert _groups_as_sets(spec) == by_hand


def test_what_cannot_be_proven_safe_stays_fixed_and_is_named():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3)
            self.grouped = nn.Conv2d(8, 8, 3, groups=4)
            self.norm = nn.GroupNorm(2, 8)
            self.b = nn.Conv2d(8, 4, 1)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            x = self.norm(self.grouped(torch.relu(self.a(x))))
            return self.head(self.b(x).mean((2, 3)))

    spec = permutation_spec(Odd(), torch.randn(2, 3, 12, 12))
    assert any("grouped" in f and "groups=4" in f for f in spec.fixed)
    assert set(spec.groups) == {"b"}  # only the last hidden layer can move; a's channels feed the grouped conv
    _outputs_agree(Odd(), (3, 12, 12))


def test_an_untraceable_network_gets_one_line_naming_it():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else x

    with pytest.raises(ModeconnError, match="torch.fx and torch.export cannot trace Branchy"):
        permutation_spec(Branchy(), torch.randn(2, 4))


@pytest.mark.parametrize("name", ["mlp", "conv1d", "convbn"])
def test_weight_matching_recovers_a_permuted_copy_exactly(name):
    torch.manual_seed(0)
    a, x = create_model(name, SHAPES[name], 10), torch.randn(4, *SHAPES[name])
    spec = permutation_spec(a, x)
    b = permute(a, spec, random_permutation(spec, 3))
    aligned, info = align(a, b, "weights", example_input=x)
    for (k, p), q in zip(a.state_dict().items(), aligned.state_dict().values()):
        assert torch.equal(p, q), k
    assert info.objective_after >= info.objective_before


@pytest.mark.parametrize("name", ["mlp", "conv1d"])
def test_activation_matching_recovers_a_permuted_copy_exactly(name):
    torch.manual_seed(0)
    a = create_model(name, SHAPES[name], 10)
    spec = permutation_spec(a, torch.randn(2, *SHAPES[name]))
    b = permute(a, spec, random_permutation(spec, 3))
    batches = [(torch.randn(128, *SHAPES[name]), None) for _ in range(2)]
    aligned, _ = align(a, b, "activations", batches=batches)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), aligned.state_dict().values()))


def test_the_aligned_line_to_a_permuted_copy_has_no_barrier(mnist1d_runs):
    data = load_mnist1d().subset(1000, 500)
    a = load_network(mnist1d_runs["a"], data)
    spec = permutation_spec(a, data.train_x[:2])
    b = permute(a, spec, random_permutation(spec, 7))
    aligned, _ = align(a, b, "weights", example_input=data.train_x[:2])
    settings = EvalSettings(batch_size=500)
    plain = eval_path(None, a, b, data, points=5, settings=settings, progress=False)
    matched = eval_path(None, a, aligned, data, points=5, settings=settings, progress=False)
    assert plain.stat("line", "train_loss", "barrier") > 0.5  # the permuted copy is far away as it stands
    assert plain.settings["batchnorm"] is False  # conv1d: nothing to recompute, and the file says so
    for m in ("train_loss", "test_err"):
        assert matched.stat("line", m, "barrier") == pytest.approx(0.0, abs=1e-9)


def test_weight_matching_objective_never_decreases_and_the_loop_ends():
    torch.manual_seed(0)
    a, b = create_model("preresnet110", (3, 32, 32), 10), create_model("preresnet110", (3, 32, 32), 10)
    spec = permutation_spec(a, torch.randn(2, 3, 32, 32))
    _, history = weight_matching(spec, a.state_dict(), b.state_dict(), seed=1, max_passes=50)
    assert all(later >= earlier for earlier, later in zip(history, history[1:]))
    assert len(history) - 1 < 50 and history[-1] > history[0]


def test_aligning_two_seeds_and_repair_lower_the_line_barrier_on_mnist1d(mnist1d_runs, tmp_path):
    """Real data: b aligned to a by weight matching sits across a far lower ridge, and REPAIR lowers it again."""
    def cli(*args):
        r = subprocess.run([sys.executable, "-m", "modeconn", *map(str, args), "--quiet"], capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr

    cli("align", "--start", mnist1d_runs["a"], "--end", mnist1d_runs["b"], "--out", tmp_path / "b-to-a")
    barriers = {}
    for name, end, extra in (("plain", mnist1d_runs["b"], []), ("aligned", tmp_path / "b-to-a", []),
                             ("repaired", tmp_path / "b-to-a", ["--repair"])):
        cli("eval-line", mnist1d_runs["a"], end, "--points", "11", "--out", tmp_path / name, *extra)
        result = json.loads((tmp_path / name / "line_eval.json").read_text())
        barriers[name] = result["summary"]["barriers"]["line"]
        assert result["settings"]["repair"] == (name == "repaired")
    # Measured on this pair (seeds 0 and 2, 11 points): train-loss barrier plain 3.06, aligned 0.142,
    # aligned + REPAIR 0.112; test-error barrier 0.87, 0.050, 0.043.
    assert barriers["aligned"]["train_loss"] < 0.2 * barriers["plain"]["train_loss"]
    assert barriers["aligned"]["test_err"] < 0.2 * barriers["plain"]["test_err"]
    assert barriers["repaired"]["train_loss"] < 0.9 * barriers["aligned"]["train_loss"]


def test_repair_hits_its_targets_and_changes_nothing_at_the_endpoints(mnist1d_runs):
    data = load_mnist1d().subset(1000, 200)
    a, b = load_network(mnist1d_runs["a"], data), load_network(mnist1d_runs["b"], data)
    line, batches, x = Curve(a, b, bends=0), list(data.train_batches(250, shuffle=False)), data.train_x[:2]
    layers = repairable_layers(a, x)
    inputs = [xb for xb, _ in batches]
    stats = [unit_stats(net, layers, inputs, x) for net in (a, b)]
    for t in (0.0, 0.5, 1.0):
        mid = line.model_at(t)
        fixed = repair(mid, [a, b], [1 - t, t], batches)
        got = unit_stats(fixed, layers, inputs, x)
        for _, node, _ in layers:
            for i in (0, 1):  # mean, std
                target = (1 - t) * stats[0][node][i] + t * stats[1][node][i]
                torch.testing.assert_close(got[node][i], target, rtol=0, atol=1e-4)
        if t in (0.0, 1.0):
            for p, q in zip(mid.state_dict().values(), fixed.state_dict().values()):
                torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)


def test_plane_repair_keeps_the_anchors_and_hits_barycentric_targets(mnist1d_runs):
    """Inside and outside the triangle, every unit's statistics are the anchors' combined with the
    point's barycentric coefficients (a target std below zero clamped to zero); the anchors stay."""
    data = load_mnist1d().subset(1000, 200)
    a, b = load_network(mnist1d_runs["a"], data), load_network(mnist1d_runs["b"], data)
    c = load_curve(mnist1d_runs["ab"])[0].control_model(1)
    nets, batches, x = [a, b, c], list(data.train_batches(250, shuffle=False)), data.train_x[:2]
    ws = [parameters_vector(n) for n in nets]
    basis = plane_basis(*ws)
    anchors_xy = basis.anchor_coords(ws[2])
    coords = np.vstack([anchors_xy, anchors_xy.mean(0), anchors_xy[1] + 0.3 * (anchors_xy[1] - anchors_xy[0])])
    fixed = repaired_plane(basis, anchors_xy, nets, batches)(coords)
    for k in range(3):
        torch.testing.assert_close(fixed[k], ws[k], rtol=1e-5, atol=1e-5)
    layers = repairable_layers(a, x)
    inputs = [xb for xb, _ in batches]
    stats = [unit_stats(n, layers, inputs, x) for n in nets]
    work = copy.deepcopy(a)
    for outside, row, coef in zip((False, True), fixed[3:], basis.barycentric(coords[3:], anchors_xy)):
        assert (coef < 0).any() == outside
        load_parameters_vector(work, row)
        got = unit_stats(work, layers, inputs, x)
        for _, node, _ in layers:
            mean_t = sum(float(k) * s[node][0] for k, s in zip(coef, stats))
            std_t = sum(float(k) * s[node][1] for k, s in zip(coef, stats)).clamp_min(0)
            torch.testing.assert_close(got[node][0], mean_t, rtol=0, atol=1e-4)
            torch.testing.assert_close(got[node][1], std_t, rtol=0, atol=1e-4)


def test_plane_repair_runs_from_the_cli_and_resumes_only_with_repair(mnist1d_runs, tmp_path):
    out = tmp_path / "plane"
    args = [sys.executable, "-m", "modeconn", "plane", "--curve", mnist1d_runs["ab"], "--out", out, "--grid", "3",
            "--bn-samples", "500", "--train-samples", "500", "--quiet"]
    r = subprocess.run([*map(str, args), "--repair"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "plane.json").read_text())
    assert summary["settings"]["repair"] is True
    assert 0 < summary["repair"]["points_outside_triangle"] < 9
    repaired = np.load(out / "plane.npz")["test_err"]
    r = subprocess.run([*map(str, args), "--force"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "plane.json").read_text())["settings"]["repair"] is False
    assert not np.allclose(np.load(out / "plane.npz")["test_err"], repaired)


def test_plane_repair_refuses_batchnorm_networks_before_writing(fashion_mnist, tmp_path):
    info = {"kind": "network", "dataset": "fashion-mnist", "data_dir": None, "config": {"wd": 5e-4},
            "model": {"name": "convbn", "kwargs": {}, "input_shape": [1, 28, 28], "num_classes": 10}}
    runs = []
    for i in range(3):
        torch.manual_seed(i)
        folder = tmp_path / f"n{i}"
        folder.mkdir()
        save_tensors(folder / "model.safetensors", create_model("convbn", (1, 28, 28), 10).state_dict())
        (folder / "run.json").write_text(json.dumps(info))
        runs.append(folder)
    with pytest.raises(ModeconnError, match="has BatchNorm.*reset"):
        plane(tmp_path / "p", points=runs, repair=True, progress=False)
    assert not (tmp_path / "p").exists()


def test_repair_refuses_networks_it_does_not_apply_to():
    x = torch.randn(2, 1, 28, 28)
    with pytest.raises(ModeconnError, match="has BatchNorm.*reset"):
        repairable_layers(create_model("convbn", (1, 28, 28), 10), x)
    with pytest.raises(ModeconnError, match="no hidden Linear or Conv"):
        repairable_layers(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), x)
    with pytest.raises(ModeconnError, match="at least one batch"):
        repair(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), [], [], [])
    with pytest.raises(ModeconnError, match="has none"):
        repairable_layers(nn.Sequential(nn.Flatten(), nn.Linear(784, 8, bias=False), nn.ReLU(), nn.Linear(8, 2)), x)


def test_align_refuses_bad_input(mnist1d_runs, tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "modeconn", "align", *map(str, args), "--quiet"],
                              capture_output=True, text=True)

    r = cli("--start", mnist1d_runs["a"], "--end", mnist1d_runs["b"], "--out", tmp_path / "x", "--method", "magic")
    assert r.returncode == 2 and "invalid choice: 'magic'" in r.stderr and not (tmp_path / "x").exists()
    r = subprocess.run([sys.executable, "-m", "modeconn", "train", "--model", "mlp", "--epochs", "1", "--out",
                        tmp_path / "mlp", "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = cli("--start", mnist1d_runs["a"], "--end", tmp_path / "mlp", "--out", tmp_path / "y")
    assert r.returncode == 2 and "different architectures" in r.stderr and not (tmp_path / "y").exists()
    with pytest.raises(ModeconnError, match="unknown alignment method"):
        align(nn.Linear(2, 2), nn.Linear(2, 2), "magic")
    with pytest.raises(ModeconnError, match="activation matching needs training batches"):
        align(nn.Linear(2, 2), nn.Linear(2, 2), "activations")


def test_connectivity_lines_up_plain_aligned_and_repaired_paths(mnist1d_runs, tmp_path):
    """One command: the barrier mostly goes with alignment, and a curve to the aligned b is shorter."""
    r = subprocess.run([sys.executable, "-m", "modeconn", "connectivity", mnist1d_runs["a"], mnist1d_runs["b"],
                        "--out", tmp_path / "paths", "--points", "5", "--curve", "bezier", "--epochs", "3",
                        "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    result = PathsResult.from_json(json.loads((tmp_path / "paths" / "paths.json").read_text()), "paths.json")
    assert result.paths() == ["line", "weights_line", "activations_line", "weights_line_repair", "curve",
                              "weights_curve"]
    loss = {n: result.stat(n, "train_loss", "barrier") for n in result.paths()}
    assert loss["weights_line"] < 0.2 * loss["line"] and loss["activations_line"] < 0.5 * loss["line"]
    assert result.summary["length"]["weights_curve"] < result.summary["length"]["curve"]
    for n in result.paths():  # both conventions: the chord and the endpoints' mean
        values = result.values(n, "test_err")
        assert result.stat(n, "test_err", "mean_barrier") == pytest.approx(max(values) - (values[0] + values[-1]) / 2)
    assert result.align["weights"]["objective_after"] > result.align["weights"]["objective_before"]
    page = render_report(tmp_path).read_text()
    assert "Aligned networks" in page and "weight-matched line with REPAIR" in page


def test_on_fashion_mnist_alignment_and_repair_shrink_an_mlps_barrier(fashion_mnist):
    """Real data, an MLP with three hidden layers of 512 units, 3 seed pairs (first 10k training images,
    5 epochs each): the weight-matched line's train-loss barrier is a small fraction of the plain one,
    and REPAIR lowers it further."""
    from modeconn.training.train import TrainConfig, train_network

    data = fashion_mnist.subset(train=10000, test=2000)
    settings = EvalSettings(batch_size=1000, bn_samples=5000)
    ratios = []
    for s1, s2 in ((1, 2), (3, 4), (5, 6)):
        nets = []
        for seed in (s1, s2):
            torch.manual_seed(seed)
            net = create_model("mlp3x512", data.input_shape, 10)
            train_network(net, data, TrainConfig(epochs=5, lr=0.05, batch_size=128, seed=seed), progress=False)
            nets.append(net)
        a, b = nets
        aligned, _ = align(a, b, "weights", example_input=data.train_x[:2])
        corrected = repaired_points(settings.bn_batches(data))
        barrier = {name: eval_path(None, a, end, data, 5, settings, progress=False,
                                   corrected=corrected if rep else None).stat(
                       "line", "train_loss", "barrier")
                   for name, end, rep in (("plain", b, False), ("aligned", aligned, False), ("repair", aligned, True))}
        ratios.append((barrier["aligned"] / barrier["plain"], barrier["repair"] / barrier["aligned"]))
    # Measured (aligned/plain, repair/aligned): (0.078, 0.36), (0.080, 0.33), (0.082, 0.34).
    assert all(aligned_share < 0.2 for aligned_share, _ in ratios)
    assert all(repair_share < 0.6 for _, repair_share in ratios)
