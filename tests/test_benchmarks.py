"""The benchmark scripts that scripts/gpu_check.sh runs on a lent GPU, run here on the CPU at toy sizes:
a GPU session's few minutes must not be spent finding that a script no longer starts."""
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args) -> list[str]:
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.splitlines()


def _numbers(line: str) -> list[float]:
    return [float(w.replace(",", "").rstrip("%")) for w in line.split()
            if w.replace(",", "").replace(".", "").rstrip("%").isdigit()]


def test_curve_step_prints_every_kind_of_step_with_its_ratio():
    lines = _run("benchmarks/curve_step.py", "--models", "conv1d", "--simplex", "--complex", "--subspace", "--floor",
                 "--repeats", "1", "--iters", "2")
    header, row = lines[-2], lines[-1]
    assert all(k in header for k in ("curve ms", "simplex ms", "complex ms", "subspace ms", "floor ms"))
    values = _numbers(row)  # params, batch, plain ms, then (ms, ratio) per kind of step
    assert len(values) == 3 + 2 * 5 and all(math.isfinite(v) and v > 0 for v in values)
    for ms, ratio in zip(values[3::2], values[4::2]):
        assert ratio == pytest.approx(ms / values[2], rel=0.02)  # printed times are rounded to 0.01 ms


def test_eval_point_and_data_pipeline_run_on_cifar_shaped_data():
    point = _run("benchmarks/eval_point.py", "--dataset", "cifar-shaped", "--model", "convbn", "--train-images", 200,
                 "--test-images", 100, "--repeats", 1, "--batch-size", 100)
    assert any(line.startswith("point / (BN + eval)") and _numbers(line)[0] > 0 for line in point), point
    pipeline = _run("benchmarks/data_pipeline.py", "--images", 512, "--batch", 128, "--epochs", 1, "--steps", 1,
                    "--models", "convbn")
    assert any(line.startswith("convbn training step") for line in pipeline), pipeline


def test_the_gpu_script_parses():
    proc = subprocess.run(["bash", "-n", "scripts/gpu_check.sh"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_bn_recompute_prints_both_passes_and_their_ratio(fashion_mnist):
    lines = _run("benchmarks/bn_recompute.py", "--train-images", 2000, "--repeats", 1)
    ours = _numbers(lines[-1])  # update_bn s, recompute_bn s, ratio
    assert lines[-1].startswith("| convbn |") and len(ours) == 3 and ours[2] > 0


def test_the_language_model_benchmark_prints_its_three_tables():
    pytest.importorskip("transformers")
    lines = _run("benchmarks/lm.py", "--repeats", 1, "--iters", 1, "--batch", 2)
    step = next(i for i, line in enumerate(lines) if "plain ms" in line)
    params, plain, curve, ratio = _numbers(lines[step + 1])
    assert params == 462_336 and ratio == pytest.approx(curve / plain, rel=0.05)
    memory = [line for line in lines if line.strip().startswith(("plain", "curve"))]
    assert len(memory) == 2 and all(len(_numbers(line)) == 2 for line in memory)
    assert any(line.startswith("ratio curve / plain") for line in lines)
    assert sum(line.strip().startswith(("weights:", "activations:")) for line in lines) == 2
