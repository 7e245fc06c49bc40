#!/usr/bin/env bash
# Reproduces the curve tables of docs/results.md: for each seed pair, two endpoints, a Bezier curve
# and a polygonal chain, each evaluated against the line at 61 points (BN recomputed per point).
# Usage: scripts/results_curves.sh DATASET OUT [EXTRA EVAL FLAGS]   e.g. scripts/results_curves.sh mnist1d runs/results-mnist1d
set -euo pipefail
dataset=$1; out=$2; shift 2
mc=".venv/bin/modeconn"
for pair in "1 2" "3 4" "5 6"; do
    set -- $pair "$@"; s1=$1; s2=$2; shift 2
    for s in $s1 $s2; do
        [ -f "$out/net$s/run.json" ] || $mc train --dataset "$dataset" --seed "$s" --out "$out/net$s" --quiet --resume
    done
    for kind in bezier polychain; do
        run="$out/$kind-$s1-$s2"
        [ -f "$run/run.json" ] || $mc connect --start "$out/net$s1" --end "$out/net$s2" --curve $kind --bends 1 \
            --seed "$s1" --out "$run" --quiet --resume
        [ -f "$run/curve_eval.json" ] || $mc eval-curve "$run" --quiet "$@"
    done
done
.venv/bin/python scripts/results_table.py "$out"
