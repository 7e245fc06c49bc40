"""Output folders under races, failures and full disks: the first result intact, nothing half-written or left behind.

Each command that writes a result file is run through the CLI in this process:
- while another process holds the folder: refused at once, naming that process's pid;
- while another process finishes into the folder between this command's door check and its lock
  (the race of issue "Silent errors from the field", item 3): refused under the lock, the first result intact.
"""
import errno
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from modeconn import ModeconnError
from modeconn.cli import main
from modeconn.commands import simplex
from modeconn.storage import files, runfolder
from modeconn.storage.checkpoint import load_checkpoint
from modeconn.storage.lock import LOCK_NAME, FolderLock

QUICK = ["--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def sx(mnist1d_runs, tmp_path_factory):
    """A one-vertex SPRO simplex around network a (1 epoch): what eval-simplex and ensemble --simplex read."""
    out = tmp_path_factory.mktemp("sx") / "sx"
    simplex(mnist1d_runs["a"], out, vertices=1, epochs=1, device="cpu", progress=False)
    return out


# (command line, the finished result it writes in OUT; {out} is the contested folder)
WRITERS = [
    ("train --out {out} --epochs 1", "run.json"),
    ("connect --start {a} --end {b} --out {out} --epochs 1", "run.json"),
    ("simplex --start {a} --out {out} --vertices 1 --epochs 1", "run.json"),
    ("subspace --out {out} --epochs 1", "run.json"),
    ("align --start {a} --end {b} --out {out}", "run.json"),
    ("fge --start {a} --out {out} --epochs 2 --cycle 2", "fge.json"),
    ("instability --out {out} --spawn 0 --epochs 1 --points 2", "instability.json"),
    ("eval-curve {ab} --points 2 --out {out}", "curve_eval.json"),
    ("eval-line {a} {b} --points 2 --out {out}", "line_eval.json"),
    ("plane --curve {ab} --grid 2 --out {out}", "plane.json"),
    ("landscape {a} --dims 1 --grid 2 --out {out}", "landscape.json"),
    ("curvature {a} --top 1 --steps 2 --out {out}", "curvature.json"),
    ("connectivity {a} {b} --points 2 --out {out}", "paths.json"),
    ("ensemble --curve {ab} --points 2 --out {out}/e.json", "e.json"),
    ("eval-simplex {sx} --samples 2 --out {out}", "simplex_eval.json"),
    ("budget --dataset mnist1d --epochs 5 --cycle 2 --seeds 0 --out {out}", "budget.json"),
]


def _argv(line, out, runs, sx):
    return [part.format(out=out, sx=sx, **runs) for part in line.split(" ")] + QUICK


def _listing(folder) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name != LOCK_NAME}


def test_every_command_that_writes_a_result_is_in_the_race_table():
    from modeconn.cli import build_parser
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    # demo continues a workspace step by step (its steps are the commands above); report writes a page;
    # info only reads
    # derived from what is there, the same for any process
    assert {line.split(" ")[0] for line, _ in WRITERS} == commands - {"demo", "report", "info"}


@pytest.mark.parametrize("line,finished", WRITERS, ids=[w[0].split(" ")[0] for w in WRITERS])
def test_a_folder_another_process_holds_is_refused_at_once_naming_its_pid(line, finished, mnist1d_runs, sx, tmp_path,
                                                                         capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / finished).write_text('{"first": true}')
    held = FolderLock(out).acquire()  # the first process, still writing
    try:
        began = time.time()
        code = main(_argv(line, out, mnist1d_runs, sx))
    finally:
        held.release()
    err = capsys.readouterr().err
    assert code == 2 and f"in use by another modeconn process (pid {os.getpid()})" in err, err
    assert len(err.strip().splitlines()) == 1 and time.time() - began < 30
    assert _listing(out) == {finished: b'{"first": true}'}


@pytest.mark.parametrize("line,finished", WRITERS, ids=[w[0].split(" ")[0] for w in WRITERS])
def test_a_result_written_after_the_door_check_is_found_under_the_lock(line, finished, mnist1d_runs, sx, tmp_path,
                                                                       capsys, monkeypatch):
    """Another process finishes into OUT after this one's door check: the check under the lock refuses."""
    out = tmp_path / "out"

    class FinishesFirst(FolderLock):
        def acquire(self):
            if self.path.parent == out:
                (out / finished).write_text('{"first": true}')
            return super().acquire()

    monkeypatch.setattr(runfolder, "FolderLock", FinishesFirst)
    code = main(_argv(line, out, mnist1d_runs, sx))
    err = capsys.readouterr().err
    assert code == 2, err
    assert ("exists; pass --force" in err or "already holds a finished run" in err
            or "holds a comparison with other settings" in err), err
    assert _listing(out) == {finished: b'{"first": true}'}
    assert not (out / LOCK_NAME).exists()  # the lock file this process made is gone with it


def test_two_landscapes_on_one_folder_the_second_is_refused_and_the_first_result_stays(mnist1d_runs, tmp_path):
    """The issue's own example, with two real processes."""
    out = tmp_path / "L"
    cmd = [sys.executable, "-m", "modeconn", "landscape", str(mnist1d_runs["a"]), "--dims", "2", "--grid", "16",
           "--out", str(out), "--device", "cpu", "--quiet"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not ((out / LOCK_NAME).exists() and (out / LOCK_NAME).read_text().strip()):
        assert first.poll() is None and time.time() < deadline, first.communicate()
        time.sleep(0.05)
    second = subprocess.run(cmd[:-3] + ["--seed", "1"] + cmd[-3:], capture_output=True, text=True)
    assert first.wait(timeout=600) == 0, first.stderr.read()
    assert second.returncode == 2 and f"pid {first.pid}" in second.stderr, second.stderr
    assert json.loads((out / "landscape.json").read_text())["settings"]["seed"] == 0


def test_a_failed_command_removes_the_folders_it_made_and_nothing_else(tmp_path):
    new = tmp_path / "x" / "y"
    with pytest.raises(RuntimeError):
        with runfolder.claim_output(new, "r.json"):
            raise RuntimeError("the run failed")
    assert not (tmp_path / "x").exists()
    kept = tmp_path / "kept"
    with pytest.raises(RuntimeError):
        with runfolder.claim_output(kept, "r.json"):
            (kept / "checkpoint.safetensors").write_text("what the run kept")
            raise RuntimeError("the run failed")
    assert sorted(p.name for p in kept.iterdir()) == ["checkpoint.safetensors"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    with pytest.raises(RuntimeError):
        with runfolder.claim_output(mine, "r.json"):
            raise RuntimeError("the run failed")
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_a_run_stopped_by_a_non_finite_loss_leaves_no_folder(tmp_path, capsys):
    code = main(["train", "--out", str(tmp_path / "nan"), "--epochs", "1", "--lr", "1e6"] + QUICK)
    assert code == 2 and "at step" in capsys.readouterr().err
    assert not (tmp_path / "nan").exists()


@pytest.mark.parametrize("fault", [errno.ENOSPC, errno.EIO, errno.EACCES])
def test_a_full_disk_or_io_error_mid_run_is_one_line_naming_the_path_and_what_was_kept(fault, tmp_path, capsys,
                                                                                       monkeypatch):
    """`train --out` whose second checkpoint write fails: exit 2, one line, the first checkpoint loads, no temp file."""
    calls = []
    real_fsync = os.fsync

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(fault, os.strerror(fault))
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", failing_fsync)
    out = tmp_path / "run"
    code = main(["train", "--out", str(out), "--epochs", "3"] + QUICK)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"could not write {out / 'checkpoint.safetensors'} ({os.strerror(fault)})" in err, err
    assert "the previous checkpoint.safetensors is kept" in err
    assert not list(out.glob(".*.tmp"))
    path = out / "checkpoint.safetensors"
    assert load_checkpoint(path, json.loads(files.load_metadata(path)["settings"])).epoch == 1


def test_subspace_records_its_shape_in_normal_form(tmp_path):
    code = main(["subspace", "--out", str(tmp_path / "s"), "--shape", "simplex03", "--epochs", "1"] + QUICK)
    assert code == 0
    info = json.loads((tmp_path / "s" / "run.json").read_text())
    assert info["subspace"]["shape"] == "simplex3"


def test_a_partial_grid_that_does_not_hold_its_points_is_refused_and_force_starts_over(tmp_path):
    """A partial file with the right fingerprint but arrays of the wrong shape or type is corrupt, and --force
    ignores whatever a partial file holds (before: a matching one was reused, fake values and all)."""
    from modeconn.evaluation.pointwise import METRICS, metrics_store
    from modeconn.storage.files import save_npz

    good = {"done": np.ones(4, dtype=bool), "fingerprint": np.array("F"), **{m: np.full(4, 0.5) for m in METRICS}}
    save_npz(tmp_path / "p.npz", good)
    done, values = metrics_store(tmp_path, "p.npz", "F", 4).load()
    assert done.all() and (values["test_err"] == 0.5).all()
    done, values = metrics_store(tmp_path, "p.npz", "F", 4, force=True).load()
    assert not done.any() and np.isnan(values["test_err"]).all()
    for broken in ({"test_err": np.full(3, 0.5)}, {"done": np.ones((2, 2), dtype=bool)}, {"done": np.ones(4)},
                   {"train_loss": np.array(["a"] * 4)}):
        save_npz(tmp_path / "p.npz", {**good, **broken})
        with pytest.raises(ModeconnError, match="does not hold 4 points"):
            metrics_store(tmp_path, "p.npz", "F", 4).load()


@pytest.mark.parametrize("row", [{}, 5, {"eigenvalues": []}, {"eigenvalues": [float("nan")]},
                                 {"converged": 0.5}, {"lanczos_steps": -7}, {"train_loss": float("inf")}])
def test_a_curvature_partial_with_rows_that_are_not_measurements_is_refused(row, tmp_path):
    from modeconn.evaluation.curvature import PARTIAL, Curvature, _row, curvature_store
    from modeconn.storage.files import save_npz

    good = {"eigenvalues": [2.0, 1.0], "trace": None, "trace_stderr": None, "train_loss": 0.1, "lanczos_steps": 9,
            "converged": True}
    rows = np.zeros((4, 2 + 7))
    rows[0] = _row(Curvature(**good), 2)
    save_npz(tmp_path / PARTIAL, {"done": np.array([True, False, False, False]), "fingerprint": np.array("F"),
                                  "row": rows})
    done, values = curvature_store(tmp_path, "F", 4, 2).load()
    assert done.tolist() == [True, False, False, False] and values["row"][0].tolist() == rows[0].tolist()
    if isinstance(row, dict) and row:
        bad = _row(Curvature(**{**good, **row}), 2) if "eigenvalues" not in row or row["eigenvalues"] else None
        rows[1] = bad if bad is not None else np.r_[0, 0, np.zeros(2), 0, 0, 0.1, 9, 1]  # no eigenvalue
    else:  # not a row at all: nothing measured, yet marked done
        rows[1] = row if isinstance(row, int) else np.zeros(2 + 7)
    save_npz(tmp_path / PARTIAL, {"done": np.array([True, True, False, False]), "fingerprint": np.array("F"),
                                  "row": rows})
    with pytest.raises(ModeconnError, match="truncated or corrupt"):
        curvature_store(tmp_path, "F", 4, 2).load()
    assert not curvature_store(tmp_path, "F", 4, 2, force=True).load()[0].any()  # --force starts over


def test_a_link_in_place_of_the_lock_file_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = tmp_path / "K"
    folder.mkdir()
    (folder / LOCK_NAME).symlink_to(victim)
    with pytest.raises(ModeconnError, match="a link or a folder is in its place"):
        with runfolder.claim_output(folder, "r.json"):
            pass
    assert victim.read_text() == "precious"
