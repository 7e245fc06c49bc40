#!/usr/bin/env bash
# Reproduces the landscape and curvature results of docs/results.md: for each seed pair, two
# endpoints (the first keeps its trajectory), a Bezier curve, and the curvature along the curve and
# its line; for the first pair also 2-D random and PCA slices around a network and the curve's midpoint.
# Usage: [MODEL=name] scripts/results_landscape.sh DATASET OUT KEEP_EVERY [EXTRA EVAL FLAGS]
#   e.g. scripts/results_landscape.sh mnist1d runs/land-mnist1d 5
#        MODEL=mlp scripts/results_landscape.sh fashion-mnist runs/land-fmlp 1 --train-samples 10000
set -euo pipefail
dataset=$1; out=$2; every=$3; shift 3
mc=".venv/bin/modeconn"
model=(${MODEL:+--model "$MODEL"})  # empty: the dataset's default model
for pair in "1 2" "3 4" "5 6"; do
    set -- $pair "$@"; s1=$1; s2=$2; shift 2
    [ -f "$out/net$s1/run.json" ] || $mc train --dataset "$dataset" "${model[@]}" --seed "$s1" --keep-every "$every" \
        --out "$out/net$s1" --quiet --resume
    [ -f "$out/net$s2/run.json" ] || $mc train --dataset "$dataset" "${model[@]}" --seed "$s2" --out "$out/net$s2" --quiet --resume
    run="$out/bezier-$s1-$s2"
    [ -f "$run/run.json" ] || $mc connect --start "$out/net$s1" --end "$out/net$s2" --curve bezier --bends 1 \
        --seed "$s1" --out "$run" --quiet --resume
    [ -f "$run/curvature.json" ] || $mc curvature "$run" --top 3 --trace --quiet "$@"
done
[ -f "$out/slice-net1/landscape.json" ] || $mc landscape "$out/net1" --out "$out/slice-net1" --quiet "$@"
[ -f "$out/slice-mid/landscape.json" ] || $mc landscape --curve "$out/bezier-1-2" --t 0.5 --out "$out/slice-mid" \
    --quiet "$@"
[ -f "$out/pca-net1/landscape.json" ] || $mc landscape "$out/net1" --directions pca --trajectory "$out/net1" \
    --span 1.2 --out "$out/pca-net1" --quiet "$@"
.venv/bin/python scripts/results_landscape_table.py "$out"
