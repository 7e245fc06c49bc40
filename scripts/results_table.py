"""Print the curve table of docs/results.md (mean ± std over seed pairs) from a results folder."""
import json
import sys
from pathlib import Path

import numpy as np

root = Path(sys.argv[1])
nets = [json.loads(p.read_text()) for p in sorted(root.glob("net*/run.json"))]
rows = {"bezier": [], "polychain": []}
line = []
for kind in rows:
    for f in sorted(root.glob(f"{kind}-*/curve_eval.json")):
        s = json.loads(f.read_text())["summary"]
        rows[kind].append((s["curve"]["test_err"]["max"], s["barriers"]["curve"]["test_err"],
                           s["barriers"]["curve"]["train_loss"]))
        if kind == "bezier":
            line.append((s["line"]["test_err"]["max"], s["barriers"]["line"]["test_err"],
                         s["barriers"]["line"]["train_loss"]))


def ms(values, scale=100.0, fmt="{:.2f}"):
    v = np.asarray(values) * scale
    return f"{fmt.format(v.mean())} ± {fmt.format(v.std())}"


errs = [n["test_err"] for n in nets]
print(f"endpoints ({len(nets)} networks): test error {ms(errs)}%\n")
print("| path | max test error (%) | test-error barrier (%) | train-loss barrier |")
print("|---|---|---|---|")
for name, vals in (("line segment", line), ("Bezier, 1 bend", rows["bezier"]),
                   ("polychain, 1 bend", rows["polychain"])):
    if vals:
        a = np.asarray(vals)
        print(f"| {name} (n={len(a)}) | {ms(a[:, 0])} | {ms(a[:, 1])} | {ms(a[:, 2], 1.0, '{:.3f}')} |")
