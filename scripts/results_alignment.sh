#!/usr/bin/env bash
# Reproduces the alignment table of docs/results.md: for each seed pair, two endpoints and
# `modeconn connectivity` (plain, weight-matched, activation-matched and REPAIRed lines, a Bezier
# curve to b and one to the weight-matched b), 21 points per path.
# Usage: scripts/results_alignment.sh DATASET MODEL OUT [EXTRA CONNECTIVITY FLAGS]
#   e.g. scripts/results_alignment.sh mnist1d conv1d runs/align-mnist1d
set -euo pipefail
dataset=$1; model=$2; out=$3; shift 3
mc=".venv/bin/modeconn"
for pair in "1 2" "3 4" "5 6"; do
    set -- $pair "$@"; s1=$1; s2=$2; shift 2
    for s in $s1 $s2; do
        [ -f "$out/net$s/run.json" ] || $mc train --dataset "$dataset" --model "$model" --seed "$s" --out "$out/net$s" \
            --quiet --resume
    done
    [ -f "$out/paths-$s1-$s2/paths.json" ] || $mc connectivity "$out/net$s1" "$out/net$s2" --out "$out/paths-$s1-$s2" \
        --points 21 --curve bezier --quiet "$@"
done
.venv/bin/python scripts/results_alignment_table.py "$out"
