"""No silently wrong run: folder locks, resumes that must match, read-only outputs, checkpoints only on --resume."""
import os
import signal
import subprocess
import sys
import time

import pytest

from modeconn import ModeconnError
from modeconn.commands import eval_curve, train
from modeconn.storage.checkpoint import first_difference
from modeconn.storage.files import load_tensors
from modeconn.storage.lock import LOCK_NAME, FolderLock

QUICK = dict(epochs=3, lr=0.1, batch_size=256, seed=5, device="cpu", progress=False)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "modeconn", *map(str, args)], capture_output=True, text=True)


def _start_training(out, epochs=30):
    """A CLI training run in the background, returned once it holds its folder (the lock file is written)."""
    proc = subprocess.Popen([sys.executable, "-m", "modeconn", "train", "--out", str(out), "--epochs", str(epochs),
                             "--quiet", "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoint.safetensors").exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline, "the first run never started training"
        time.sleep(0.05)
    return proc


def test_a_second_process_on_the_same_out_is_refused_at_once(tmp_path):
    out = tmp_path / "run"
    first = _start_training(out, epochs=2000)  # long enough to outlive the second command
    try:
        began = time.time()
        # The same command with --resume passes every other check: only the lock can refuse it.
        second = cli("train", "--out", out, "--epochs", "2000", "--resume", "--quiet", "--device", "cpu")
        assert second.returncode == 2 and time.time() - began < 60
        assert "in use by another modeconn process" in second.stderr and str(first.pid) in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        # Without --resume the real cause is still the live process, not a missing --resume.
        other = cli("train", "--out", out, "--seed", "9", "--quiet", "--device", "cpu")
        assert other.returncode == 2 and f"in use by another modeconn process (pid {first.pid})" in other.stderr
        assert first.poll() is None, "the first run must still be the one writing"
    finally:
        first.kill()
        first.wait()
    assert not (out / "run.json").exists()


def test_a_dead_process_lock_blocks_nobody(tmp_path):
    out = tmp_path / "run"
    first = _start_training(out)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert (out / LOCK_NAME).exists()  # the file stays, but its lock died with the process
    r = cli("train", "--out", out, "--epochs", "30", "--resume", "--quiet", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert (out / "run.json").exists() and not (out / "checkpoint.safetensors").exists()


def test_the_lock_is_exclusive_within_a_machine(tmp_path):
    held = FolderLock(tmp_path).acquire()
    with pytest.raises(ModeconnError, match=f"in use by another modeconn process \\(pid {os.getpid()}\\)"):
        FolderLock(tmp_path).acquire()
    held.release()
    FolderLock(tmp_path).acquire().release()


def test_resume_with_other_settings_is_refused_naming_the_first_difference(tmp_path, kill_after_checkpoints):
    undo = kill_after_checkpoints(2)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "cut", **QUICK)
    undo()
    saved = load_tensors(tmp_path / "cut" / "checkpoint.safetensors")
    changed = {"seed": 9, "lr": 0.01, "epochs": 25}
    with pytest.raises(ModeconnError, match=r"config.epochs = 3 but this command asks for 25.*--resume needs the same"):
        train(tmp_path / "cut", **{**QUICK, **changed}, resume=True)
    with pytest.raises(ModeconnError, match=r"config.lr = 0.1 but this command asks for 0.01"):
        train(tmp_path / "cut", **{**QUICK, "lr": 0.01}, resume=True)
    with pytest.raises(ModeconnError, match=r"model = \"conv1d\" but this command asks for \"mlp\""):
        train(tmp_path / "cut", **QUICK, model="mlp", resume=True)
    assert not (tmp_path / "cut" / "run.json").exists()
    after = load_tensors(tmp_path / "cut" / "checkpoint.safetensors")
    assert all(after[k].equal(v) for k, v in saved.items())  # the refused resumes left the checkpoint alone
    info = train(tmp_path / "cut", **QUICK, resume=True)  # the same settings resume
    assert info.raw["seed"] == 5 and info.raw["config"]["lr"] == 0.1


def test_first_difference_walks_nested_settings():
    assert first_difference({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}}) == ("b.c", 2, 3)
    assert first_difference({"a": 1}, {"a": 1, "d": 0}) == ("d", None, 0)
    assert first_difference({"a": [1, 2]}, {"a": [1, 2]}) is None


def test_nan_message_does_not_promise_a_resume_without_a_checkpoint(tmp_path):
    with pytest.raises(ModeconnError) as info:
        train(tmp_path / "nan", **{**QUICK, "lr": 1e6})
    message = str(info.value)
    assert "at step" in message and "lower --lr and start a new run" in message
    assert "--resume" not in message and not (tmp_path / "nan" / "checkpoint.safetensors").exists()


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nothing can be written into, even as root: a read-only tmpfs, else mode 0555 as a normal user."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(folder)],
                                                   capture_output=True).returncode == 0
    if not mounted:
        folder.chmod(0o555)
        try:
            (folder / "probe").write_text("x")
            (folder / "probe").unlink()
            pytest.skip("cannot make a read-only folder here (root without mount rights)")
        except OSError:
            pass
    yield folder
    if mounted:
        subprocess.run(["umount", str(folder)], check=True)
    else:
        folder.chmod(0o755)


def test_a_read_only_output_is_refused_before_any_work(read_only_dir, mnist1d_runs):
    for args in (["train", "--out", read_only_dir / "a"], ["eval-curve", mnist1d_runs["ab"], "--out", read_only_dir],
                 ["plane", "--curve", mnist1d_runs["ab"], "--out", read_only_dir / "p"]):
        began = time.time()
        r = cli(*args, "--quiet")
        assert r.returncode == 2 and "cannot write into" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and time.time() - began < 30
    assert list(read_only_dir.iterdir()) == []
    with pytest.raises(ModeconnError, match="cannot write into"):
        eval_curve(mnist1d_runs["ab"], out=read_only_dir, device="cpu", progress=False)


def test_data_dir_is_honoured_and_recorded(tmp_path, fashion_mnist):
    """A run records where its data was; --data-dir on a later command overrides it (data moved)."""
    import shutil

    from modeconn.data import FASHION_MNIST_DIR

    moved = tmp_path / "fashion"
    shutil.copytree(FASHION_MNIST_DIR, moved)
    info = train(tmp_path / "f", dataset="fashion-mnist", data_dir=str(moved), epochs=1, batch_size=1000,
                 device="cpu", progress=False)
    assert info.raw["data_dir"] == str(moved)
    r = cli("eval-line", tmp_path / "f", tmp_path / "f", "--points", "2", "--out", tmp_path / "l",
            "--data-dir", tmp_path / "nowhere", "--quiet")
    assert r.returncode == 2 and "--data-dir" in r.stderr and not (tmp_path / "l").exists()
