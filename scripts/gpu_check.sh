#!/usr/bin/env bash
# Everything that needs a GPU, in one command: the GPU tests, the curve-step and eval-point benchmarks
# (the small default models; VGG16 and PreResNet164 at batch 128 on CIFAR-shaped data), the data pipeline, the tiny
# GPT's curve step, peak memory and alignment (benchmarks/lm.py), and a 2-process NCCL
# plane when two GPUs are present. Prints each benchmark's own table, then one summary table.
# The time limits sum to 10 minutes at most (one device call). Usage: scripts/gpu_check.sh [PYTHON]   (default: python3)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
logs=$(mktemp -d)
summary=()

step() {  # step NAME SECONDS COMMAND...: run with a time limit, keep its output, note the outcome
    local name=$1 limit=$2; shift 2
    local began=$SECONDS
    timeout "$limit" "$@" >"$logs/$name.log" 2>&1
    local rc=$?
    local outcome="ok"; [ $rc -eq 0 ] || outcome="FAILED (exit $rc)"; [ $rc -eq 124 ] && outcome="TIMED OUT"
    summary+=("$(printf '%-28s %-18s %5d s' "$name" "$outcome" $((SECONDS - began)))")
    echo "=== $name: $outcome"
    tail -n 25 "$logs/$name.log"
}

$PY -c "import torch; assert torch.cuda.is_available(), 'no GPU visible'; print(torch.__version__, torch.cuda.get_device_name())" || exit 1
step gpu-tests 150 $PY -m pytest -q -p no:cacheprovider tests/test_gpu.py
step curve-step-fp32 120 $PY benchmarks/curve_step.py --device cuda --models conv1d convbn mlp vgg16 preresnet164 \
    --repeats 5 --simplex --complex --floor
step curve-step-bf16-nhwc 90 $PY benchmarks/curve_step.py --device cuda --models vgg16 preresnet164 --repeats 5 \
    --amp bf16 --channels-last
step eval-point-vgg16 60 $PY benchmarks/eval_point.py --dataset cifar-shaped --model vgg16 --device cuda --repeats 2
step eval-point-preresnet164 90 $PY benchmarks/eval_point.py --dataset cifar-shaped --model preresnet164 \
    --device cuda --repeats 2
step data-pipeline 60 $PY benchmarks/data_pipeline.py --device cuda
step lm-gpt2-tiny 30 $PY benchmarks/lm.py --device cuda --repeats 5
if [ "$($PY -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
    work=$(mktemp -d)
    for seed in 1 2; do $PY -m modeconn train --out "$work/n$seed" --seed "$seed" --epochs 5 --quiet --device cuda; done
    $PY -m modeconn connect --start "$work/n1" --end "$work/n2" --out "$work/c" --epochs 5 --quiet --device cuda
    step plane-1-gpu 60 $PY -m modeconn plane --curve "$work/c" --grid 11 --out "$work/p1" --quiet --device cuda
    step plane-2-gpus-nccl 60 $PY -m torch.distributed.run --standalone --nproc-per-node 2 -m modeconn -- \
        plane --curve "$work/c" --grid 11 --out "$work/p2" --quiet --device cuda
else
    summary+=("$(printf '%-28s %-18s' plane-2-gpus-nccl 'skipped (1 GPU)')")
fi
echo
echo "step                         outcome            time   (logs in $logs)"
printf '%s\n' "${summary[@]}"
