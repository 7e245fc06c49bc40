"""Print the curvature table of docs/results.md (mean ± std over seed pairs) and the slices' ranges."""
import json
import sys
from pathlib import Path

import numpy as np

root = Path(sys.argv[1])
runs = [json.loads(p.read_text()) for p in sorted(root.glob("bezier-*/curvature.json"))]
print(f"{len(runs)} seed pairs; mean ± std; t = {runs[0]['t']}")
print("| path | t | top eigenvalue | trace (Hutch++) | train loss |")
print("|---|---|---|---|---|")
for path in ("curve", "line"):
    for i, t in enumerate(runs[0]["t"]):
        rows = np.array([[r["paths"][path][i]["eigenvalues"][0], r["paths"][path][i]["trace"],
                          r["paths"][path][i]["train_loss"]] for r in runs])
        m, s = rows.mean(0), rows.std(0)
        print(f"| {path} | {t:.2f} | {m[0]:.3g} ± {s[0]:.2g} | {m[1]:.4g} ± {s[1]:.2g} | {m[2]:.4f} ± {s[2]:.4f} |")
for name in ("slice-net1", "slice-mid", "pca-net1"):
    f = root / name / "landscape.json"
    if f.exists():
        s = json.loads(f.read_text())
        print(f"{name}: train loss {s['train_loss_range']}, test error {s['test_err_range']}, "
              f"explained {s.get('explained_variance')}")
