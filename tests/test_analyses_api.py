"""The analyses as pure functions: each returns the record its command writes, and writes nothing without a store."""
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

import modeconn as mc
from modeconn.commands import curvature, eval_simplex, instability, subspace
from modeconn.evaluation.along import line_between
from modeconn.recipes import recipe_for
from modeconn.storage.runfolder import load_curve, load_network, load_simplex

FIXTURES = Path(__file__).parent / "fixtures" / "records"
QUICK = dict(device="cpu", progress=False)


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_measure_simplex_is_what_eval_simplex_writes_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shape, info, data = load_simplex(FIXTURES / "simplex")
    settings = mc.EvalSettings(wd=info.wd, train_samples=200)  # the command's: train_objective needs the run's wd
    alone = mc.measure_simplex(shape, data, settings, samples=4, seed=3, progress=False)
    assert _files(tmp_path) == set()
    written = eval_simplex(FIXTURES / "simplex", out=tmp_path / "sx", samples=4, seed=3, train_samples=200, **QUICK)
    assert alone.weights == written.weights and alone.summary.keys() == written.summary.keys()
    for m, values in alone.metrics.items():
        assert values == pytest.approx(written.metrics[m], rel=1e-9, abs=1e-12), m
    assert not (tmp_path / "sx" / "simplex_eval.partial.npz").exists()  # the store is removed once it is done


def test_measure_curvature_is_what_the_command_writes_and_resumes_from_its_store(tmp_path, monkeypatch):
    data = mc.load_dataset("mnist1d")
    net = load_network(FIXTURES / "a", data)
    settings = mc.EvalSettings(train_samples=200)
    monkeypatch.chdir(tmp_path)
    alone = mc.measure_curvature({"network": net}, [0.0], data, settings, top=1, steps=5, progress=False)
    assert _files(tmp_path) == set() and alone.run_kind == "network"
    written = curvature(FIXTURES / "a", out=tmp_path / "c", top=1, steps=5, train_samples=200, **QUICK)
    assert alone.paths["network"][0]["eigenvalues"] == pytest.approx(written.paths["network"][0]["eigenvalues"],
                                                                     rel=1e-6)
    with pytest.raises(mc.ModeconnError, match="a network is measured at itself"):
        mc.measure_curvature({"network": net}, [0.0, 1.0], data, settings, top=1, steps=5, progress=False)
    # a store with the first point done: only the second is measured (a line's two ends, t = 0 and 1)
    line = line_between(net, load_network(FIXTURES / "a", data))
    calls = {"n": 0}
    real = mc.curvature_at
    module = __import__("modeconn.evaluation.curvature", fromlist=["curvature_at"])

    def counting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "curvature_at", counting)
    kw = dict(top=1, steps=5, store=tmp_path / "s", fingerprint="F", progress=False)
    (tmp_path / "s").mkdir()
    with pytest.raises(KeyboardInterrupt):
        mc.measure_curvature({"line": line}, [0.0, 1.0], data, settings, **kw)
    assert (tmp_path / "s" / "curvature.partial.npz").exists()
    with pytest.raises(mc.ModeconnError, match="started with other settings"):  # the same fingerprint, other t
        mc.measure_curvature({"line": line}, [0.0, 0.5], data, settings, **kw)
    calls["n"] = -10
    resumed = mc.measure_curvature({"line": line}, [0.0, 1.0], data, settings, **kw)
    assert calls["n"] == -9  # one point measured on resume
    assert not (tmp_path / "s" / "curvature.partial.npz").exists()  # finished: a later call measures afresh
    assert resumed.paths["line"][0]["eigenvalues"] == pytest.approx(alone.paths["network"][0]["eigenvalues"],
                                                                    rel=1e-6)


def test_instability_analysis_without_a_store_is_the_command_s_result_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tempfile.gettempdir()))
    data = mc.load_dataset("mnist1d")
    recipe = recipe_for("mnist1d")
    cfg = replace(recipe.train, epochs=2)
    alone = mc.instability_analysis(lambda: mc.create_model(recipe.model, data.input_shape, data.num_classes), data,
                                    cfg, [0, 1], points=3, settings=mc.EvalSettings(wd=cfg.wd), progress=False)
    assert _files(tmp_path) == set()
    assert {n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("modeconn-")} == set()
    written = instability(tmp_path / "inst", spawn=[0, 1], epochs=2, points=3, **QUICK)
    assert [r["spawn"] for r in alone.per_spawn] == [0, 1]
    for a, b in zip(alone.per_spawn, written.per_spawn):
        assert a["test_err_barrier"] == pytest.approx(b["test_err_barrier"], abs=1e-9)
        assert a["train_loss_barrier"] == pytest.approx(b["train_loss_barrier"], rel=1e-6, abs=1e-9)
    with pytest.raises(mc.ModeconnError, match="is not before"):
        mc.instability_analysis(lambda: None, data, cfg, [2], progress=False)


def test_subspace_metrics_are_what_the_subspace_command_records(tmp_path):
    subspace(tmp_path / "line", epochs=1, **QUICK)
    line, info, data = load_curve(tmp_path / "line")
    mid, measured = mc.subspace_metrics(line, data)
    for key, recorded in info.raw["metrics"].items():
        for metric, value in recorded.items():
            assert measured["metrics"][key][metric] == pytest.approx(value, rel=1e-6, abs=1e-9), (key, metric)
    assert measured["squared_cosine"] == pytest.approx(info.raw["squared_cosine"], rel=1e-6)
    assert len(measured["distances"]) == 2


def test_a_store_of_other_settings_is_refused_before_any_work(tmp_path):
    data = mc.load_dataset("mnist1d")
    recipe = recipe_for("mnist1d")
    cfg = replace(recipe.train, epochs=5)
    own = {"B": 5, "cycle": 2, "lr1": 0.05, "lr2": 0.0005, "train": cfg.to_dict()}
    from modeconn.training.budget import BudgetResult
    BudgetResult(own, {"0": {"single@1B": {"err": 0.5, "nll": 1.0}}}).write(tmp_path / "b")
    done = mc.compare_budgets(None, data, cfg, 2, 0.05, 0.0005, [0], store=tmp_path / "b", progress=False)
    assert done.table["single@1B"]["err"]["mean"] == 0.5  # the stored seed is kept: nothing trained
    with pytest.raises(mc.ModeconnError, match="holds a comparison with other settings"):
        mc.compare_budgets(None, data, cfg, 2, 0.5, 0.0005, [0], store=tmp_path / "b", progress=False)

    make = lambda: mc.create_model(recipe.model, data.input_shape, data.num_classes)  # noqa: E731
    small = replace(recipe.train, epochs=2)
    mc.instability_analysis(make, data, small, [1], points=2, store=tmp_path / "i", progress=False)
    with pytest.raises(mc.ModeconnError, match="was started with config.lr"):
        mc.instability_analysis(make, data, replace(small, lr=small.lr / 5), [1], points=2, store=tmp_path / "i",
                                progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(mc.ModeconnError, match="is a file"):
        mc.instability_analysis(make, data, small, [1], points=2, store=tmp_path / "file", progress=False)


def test_nonsense_arguments_are_refused_in_one_line(tmp_path):
    data = mc.load_dataset("mnist1d")
    net = load_network(FIXTURES / "a", data)
    line = line_between(net, load_network(FIXTURES / "a", data))
    cases = [
        (lambda: mc.measure_curvature({}, [0.5], data, top=1, steps=3), "at least one path"),
        (lambda: mc.measure_curvature({"line": line}, [float("nan")], data, top=1, steps=3), "must lie in"),
        (lambda: mc.measure_curvature({"line": line}, [1.5], data, top=1, steps=3), "must lie in"),
        (lambda: mc.measure_curvature({"line": line}, [0.5], data, top=0, steps=3), "must be >= 1"),
        (lambda: mc.measure_curvature({"line": line}, [0.5], data, trace=True, probes=0), "probes"),
        (lambda: mc.measure_simplex(line, data, samples=2), "measures a Simplex"),
        (lambda: mc.subspace_metrics(net, data), "measures a trained Curve or Simplex"),
        (lambda: mc.find_records(tmp_path / "nowhere", "plane"), "is not a folder"),
        (lambda: mc.read_record(tmp_path / "nowhere.json"), "does not exist"),
        (lambda: mc.EvalSettings(wd=float("nan")), "`wd` must be a finite number >= 0"),
        (lambda: mc.EvalSettings(batch_size=-1), "`batch_size` must be a positive integer"),
        (lambda: mc.EvalSettings(bn_samples=0), "`bn_samples` must be a positive integer"),
        (lambda: line.model_at(float("nan")), "t must be a finite number in"),
        (lambda: line.model_at(2.0), "t must be a finite number in"),
    ]
    for call, message in cases:
        with pytest.raises(mc.ModeconnError, match=message) as err:
            call()
        assert "\n" not in str(err.value)
