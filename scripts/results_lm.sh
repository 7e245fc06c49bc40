#!/usr/bin/env bash
# Reproduces the language-model table of docs/results.md (Neyshabur et al. 2020's question on a byte-level GPT):
# per seed, one 2-layer GPT pre-trained on every fortunes topic but one (3 epochs, 1,536 steps), two copies
# fine-tuned from it on the held-out topic with different data orders (6 epochs, 318 steps), and two GPTs
# trained from scratch on the held-out topic for the same steps; then `modeconn connectivity` on each pair (plain,
# weight-matched and activation-matched lines, and for the scratch pair a Bezier curve), 11 points per path.
# Usage: scripts/results_lm.sh OUT [TOPIC]   e.g. scripts/results_lm.sh runs/lm computers
set -euo pipefail
out=$1; topic=${2:-computers}
mc=".venv/bin/modeconn"
for seed in 0 1 2; do
    dir="$out/seed$seed"
    [ -f "$dir/pre/run.json" ] || $mc train --dataset "fortunes/except=$topic" --seed "$seed" --out "$dir/pre" --quiet
    for i in 1 2; do
        s=$((10 * seed + i))
        [ -f "$dir/tuned$i/run.json" ] || $mc train --dataset "fortunes/only=$topic" --init "$dir/pre" --epochs 6 \
            --lr 1e-3 --seed "$s" --out "$dir/tuned$i" --quiet
        [ -f "$dir/scratch$i/run.json" ] || $mc train --dataset "fortunes/only=$topic" --epochs 6 --seed "$s" \
            --out "$dir/scratch$i" --quiet
    done
    [ -f "$dir/paths-tuned/paths.json" ] || $mc connectivity "$dir/tuned1" "$dir/tuned2" --out "$dir/paths-tuned" \
        --points 11 --quiet
    [ -f "$dir/paths-scratch/paths.json" ] || $mc connectivity "$dir/scratch1" "$dir/scratch2" \
        --out "$dir/paths-scratch" --points 11 --curve bezier --epochs 6 --quiet
done
.venv/bin/python scripts/results_lm_table.py "$out"
