"""Every artifact is one typed record: found by kind, read, described, written back unchanged.

tests/fixtures/records holds one run folder or result file of every kind, written by the release before typed
records (commit 60fe94c, scripts/make_record_fixtures.sh), so these tests also prove that folders written by
that release still read.
"""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from modeconn import ModeconnError
from modeconn.cli import main
from modeconn.evaluation.along import CurveEval, LineEval, PathEval
from modeconn.records import KINDS, RESULTS, RUN_KINDS, find_records, read_record, results_in
from modeconn.reporting.report import render_report
from modeconn.storage.runfolder import load_curve, load_network, load_simplex, read_run, write_run

FIXTURES = Path(__file__).parent / "fixtures" / "records"


@pytest.mark.parametrize("kind", KINDS)
def test_the_fixtures_hold_every_kind_and_each_reads_back_with_a_description(kind):
    found = find_records(FIXTURES, kind)
    assert found, f"no fixture of kind {kind}: add it to scripts/make_record_fixtures.sh"
    for path, record in found:
        text = record.describe()
        assert isinstance(text, str) and text.strip() and "{" not in text, (path, text)
        if kind in RUN_KINDS:
            assert record.kind == kind and path.name == "run.json"
        else:
            assert record.kind == kind and path.name == RESULTS[kind].file
        assert type(read_record(path)) is type(record)  # one file, by its name


@pytest.mark.parametrize("kind", [k for k in RESULTS if k not in ("plane", "landscape")])
def test_a_json_record_writes_back_the_same_fields_and_values(kind, tmp_path):
    for path, record in find_records(FIXTURES, kind):
        written = record.write(tmp_path / path.parent.name)
        assert written.name == path.name
        assert json.loads(written.read_text()) == json.loads(path.read_text()), path
        again = type(record).read(written.parent)
        assert again.to_json() == record.to_json()


@pytest.mark.parametrize("kind", ["plane", "landscape"])
def test_a_grid_record_writes_back_its_arrays_and_summary(kind, tmp_path):
    (path, record), = find_records(FIXTURES, kind)
    record.write(tmp_path)
    assert json.loads((tmp_path / path.name).read_text()) == json.loads(path.read_text())
    before, after = np.load(path.with_suffix(".npz")), np.load(tmp_path / path.with_suffix(".npz").name)
    assert set(before.files) == set(after.files)
    for key in before.files:
        assert np.array_equal(before[key], after[key]), key


def test_old_run_folders_load_their_networks(tmp_path):
    net = load_network(FIXTURES / "a", _mnist1d())
    assert sum(p.numel() for p in net.parameters()) > 0
    curve, info, _ = load_curve(FIXTURES / "ab")
    assert info.curve is not None and info.curve.bends == 1
    start = dict(curve.model_at(0.0).named_parameters())
    for name, p in net.named_parameters():  # the curve's start is network a, loaded from its own file
        assert torch.equal(start[name], p), name
    simplex, info, _ = load_simplex(FIXTURES / "simplex")
    assert info.kind == "simplex" and simplex.num_points == 2


def _mnist1d():
    from modeconn.data import load_dataset
    return load_dataset("mnist1d")


def test_the_report_and_info_find_results_by_kind(tmp_path, capsys):
    root = tmp_path / "records"
    shutil.copytree(FIXTURES, root)
    page = render_report(root).read_text()
    for heading in ("trained networks", "Curves trained between networks", "Curves against the straight line",
                    "Ensembles along curves and simplexes", "Simplexes", "Is the barrier a symmetry",
                    "Loss surface in a plane", "Slices of the loss landscape", "Curvature along paths",
                    "instability analysis", "Fast Geometric Ensembling", "Equal-budget comparison"):
        assert heading in page, heading
    assert results_in(root / "ab") == ["curve_eval", "ensemble"]
    ensemble = json.loads((root / "ab" / "ensemble.json").read_text())["ensemble"]
    assert f"test error {100 * ensemble['err']:.2f}%" in page  # the ensemble's own numbers, as written
    bare = tmp_path / "bare"  # a curve run nothing has measured yet: its midpoint from training is shown
    bare.mkdir()
    shutil.copy(root / "ab" / "run.json", bare / "run.json")
    midpoint = json.loads((bare / "run.json").read_text())["midpoint_test_err"]
    assert f"test error {100 * midpoint:.2f}%" in render_report(bare).read_text()
    assert main(["info", str(root / "ab")]) == 0
    out = capsys.readouterr().out
    assert "curve run of conv1d on mnist1d" in out and "curve_eval (curve_eval.json):" in out
    assert "ensemble of 2: test error" in out
    assert main(["info", str(root / "plane")]) == 0  # a folder of results, without run.json
    assert "plane 3x3: train loss" in capsys.readouterr().out
    assert main(["info", str(root / "curvature" / "curvature.json")]) == 0  # one result file
    assert "network t=0.00: top eigenvalues" in capsys.readouterr().out
    assert main(["info", str(root / "plane" / "plane.npz")]) == 0  # a grid's arrays: read with their JSON
    assert "plane 3x3: train loss" in capsys.readouterr().out


@pytest.mark.parametrize("damage,message", [
    (lambda a: a.update(test_err=a["test_err"][:2]), "test_err has shape (2, 3), not the grid's (3, 3)"),
    (lambda a: a.update(train_err=a["train_err"] * 5 + 0.5), "train_err holds errors outside"),
    (lambda a: a["train_loss"].__setitem__((1, 1), np.nan), "train_loss holds NaN"),
])
def test_a_damaged_grid_is_refused_by_its_reader_info_and_the_report(damage, message, tmp_path, capsys):
    shutil.copytree(FIXTURES / "plane", tmp_path / "plane")
    arrays = dict(np.load(tmp_path / "plane" / "plane.npz"))
    damage(arrays)
    np.savez(tmp_path / "plane" / "plane.npz", **arrays)
    with pytest.raises(ModeconnError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_record(tmp_path / "plane" / "plane.json")
    assert main(["info", str(tmp_path / "plane")]) == 2
    assert message in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2 and not (tmp_path / "report.html").exists()
    assert message in capsys.readouterr().err


def test_a_record_of_another_kind_or_a_broken_one_is_refused_in_one_line(tmp_path):
    curve_eval = FIXTURES / "ab" / "curve_eval.json"
    with pytest.raises(ModeconnError, match="holds a curve, so it is not a line_eval file"):
        LineEval.read(curve_eval)
    assert isinstance(PathEval.read(curve_eval), CurveEval)  # either file: the class follows what it holds
    for kind, cls in RESULTS.items():
        if kind in ("plane", "landscape"):
            continue
        (tmp_path / kind).mkdir()
        (tmp_path / kind / cls.file).write_text('{"unrelated": 1}')
        with pytest.raises(ModeconnError) as err:
            cls.read(tmp_path / kind)
        assert str(tmp_path / kind / cls.file) in str(err.value) and "\n" not in str(err.value), kind


def test_run_json_is_checked_before_it_is_written(tmp_path):
    raw = json.loads((FIXTURES / "a" / "run.json").read_text())
    info = write_run(tmp_path, raw)
    assert info.kind == "network" and read_run(tmp_path).raw == raw
    for broken in ({**raw, "kind": "plane"}, {k: v for k, v in raw.items() if k != "dataset"},
                   {**raw, "config": {**raw["config"], "wd": "none"}}, {**raw, "seed": "one"},
                   {**raw, "test_err": "abc"}, {**raw, "made_with": [1]}, {**raw, "epochs_trained": -3}):
        with pytest.raises(ModeconnError):
            write_run(tmp_path / "other", broken)
        assert not (tmp_path / "other" / "run.json").exists()


def test_read_record_refuses_a_file_modeconn_does_not_write(tmp_path):
    (tmp_path / "notes.json").write_text("{}")
    with pytest.raises(ModeconnError, match="is not a file modeconn writes: pass run.json or one of"):
        read_record(tmp_path / "notes.json")


@pytest.mark.parametrize("edit", [lambda o: o.pop("t"), lambda o: o.update(t="abc"),
                                  lambda o: o["curve"].update(test_err=["x", "y", "z"]),
                                  lambda o: o["line"].update(test_err=[0.1]), lambda o: o["t"].__setitem__(0, None)])
def test_a_hand_edited_path_evaluation_is_refused(edit, tmp_path):
    obj = json.loads((FIXTURES / "ab" / "curve_eval.json").read_text())
    edit(obj)
    (tmp_path / "curve_eval.json").write_text(json.dumps(obj))
    with pytest.raises(ModeconnError, match="is not a curve or line evaluation"):
        read_record(tmp_path / "curve_eval.json")
