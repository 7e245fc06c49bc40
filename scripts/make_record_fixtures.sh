#!/usr/bin/env bash
# Write one run folder or result file of every record kind, with tiny settings, into OUT; then keep only what a
# reader needs (no optimizer states, figures, snapshots or lock files). tests/fixtures/records was made by
# this script with the release before typed records (commit 60fe94c), so the test that reads it proves that
# folders written by that release still read. Usage: scripts/make_record_fixtures.sh OUT  (about 3 minutes)
set -euo pipefail
out=$1
mc() { python -m modeconn "$@" --quiet; }
mkdir -p "$out"
mc train --out "$out/a" --epochs 1 --seed 0
mc train --out "$out/b" --epochs 1 --seed 1
mc connect --start "$out/a" --end "$out/b" --out "$out/ab" --epochs 1
mc eval-curve "$out/ab" --points 3 --train-samples 200
mc eval-line "$out/a" "$out/b" --out "$out/line" --points 3 --train-samples 200
mc connectivity "$out/a" "$out/b" --out "$out/paths" --points 3 --train-samples 200
mc plane --curve "$out/ab" --out "$out/plane" --grid 3 --train-samples 200
mc landscape "$out/a" --out "$out/landscape" --grid 3 --dims 1 --train-samples 200
mc curvature "$out/a" --out "$out/curvature" --top 1 --steps 5 --train-samples 200
mc simplex --start "$out/a" --out "$out/simplex" --vertices 1 --epochs 1
mc eval-simplex "$out/simplex" --samples 3 --train-samples 200
mc ensemble --curve "$out/ab" --points 2
mc fge --start "$out/a" --out "$out/fge" --epochs 2 --cycle 2 --no-snapshots
mc instability --out "$out/instability" --spawn 0 --epochs 1 --points 2 --train-samples 200
mc budget --out "$out/budget" --epochs 5 --cycle 2 --seeds 0 --train-samples 200 --dataset mnist1d
mc subspace --out "$out/subspace" --epochs 1
mc align --start "$out/a" --end "$out/b" --out "$out/aligned"
find "$out" \( -name '*.png' -o -name 'optimizer.safetensors' -o -name '.modeconn.lock' -o -name 'swa.safetensors' \
    -o -name 'permutation.safetensors' \) -delete
rm -rf "$out/instability/spawn" "$out/instability"/k*/copy* "$out/aligned/model.safetensors" "$out/b/model.safetensors" \
    "$out/subspace/midpoint" "$out/subspace/curve.safetensors"
