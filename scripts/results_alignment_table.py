"""Print the alignment table of docs/results.md (mean ± std over seed pairs) from a results folder."""
import json
import sys
from pathlib import Path

import numpy as np

root = Path(sys.argv[1])
runs = [json.loads(p.read_text()) for p in sorted(root.glob("paths-*/paths.json"))]
NAMES = {"line": "plain line", "weights_line": "weight-matched line", "activations_line": "activation-matched line",
         "weights_line_repair": "weight-matched + REPAIR", "curve": "Bezier curve",
         "weights_curve": "Bezier between aligned endpoints"}
print(f"{len(runs)} seed pairs; mean ± std")
print("| path | max test error (%) | test-error barrier (%) | train-loss barrier | length |")
print("|---|---|---|---|---|")
for key, name in NAMES.items():
    rows = [(r["summary"][key]["test_err"]["max"], r["summary"][key]["test_err"]["barrier"],
             r["summary"][key]["train_loss"]["barrier"], r["summary"]["length"][key])
            for r in runs if key in r["arrays"]]
    if not rows:
        continue
    m, s = np.mean(rows, 0), np.std(rows, 0)
    print(f"| {name} | {100 * m[0]:.2f} ± {100 * s[0]:.2f} | {100 * m[1]:.2f} ± {100 * s[1]:.2f} | "
          f"{m[2]:.3f} ± {s[2]:.3f} | {m[3]:.1f} ± {s[3]:.1f} |")
