"""Print the language-model table of docs/results.md (mean ± std over seeds) from scripts/results_lm.sh's folder."""
import json
import sys
from pathlib import Path

import numpy as np

root = Path(sys.argv[1])
seeds = sorted(p for p in root.glob("seed*") if (p / "paths-scratch" / "paths.json").is_file())
ROWS = [("tuned", "line", "fine-tuned pair, line"), ("scratch", "line", "scratch pair, line"),
        ("scratch", "weights_line", "scratch pair, weight-matched line"),
        ("scratch", "activations_line", "scratch pair, activation-matched line"),
        ("scratch", "curve", "scratch pair, Bezier curve")]


def run(path: Path) -> dict:
    return json.loads((path / "run.json").read_text())


print(f"{len(seeds)} seeds; mean ± std")
ends = {pair: [[run(s / f"{pair}{i}")["test_ppl"] for i in (1, 2)] for s in seeds] for pair in ("tuned", "scratch")}
for pair, values in ends.items():
    print(f"{pair} endpoints' test perplexity: {np.mean(values):.3f} ± {np.std(values):.3f}")
print("| path | test-loss barrier (nats) | test-perplexity barrier | max test perplexity | train-loss barrier |")
print("|---|---|---|---|---|")
for pair, key, name in ROWS:
    rows = []
    for s in seeds:
        summary = json.loads((s / f"paths-{pair}" / "paths.json").read_text())["summary"]
        if key in summary:
            rows.append((summary[key]["test_loss"]["barrier"], summary[key]["test_ppl"]["barrier"],
                         summary[key]["test_ppl"]["max"], summary[key]["train_loss"]["barrier"]))
    if rows:
        m, d = np.mean(rows, 0), np.std(rows, 0)
        print(f"| {name} | {m[0]:.4f} ± {d[0]:.4f} | {m[1]:.3f} ± {d[1]:.3f} | {m[2]:.3f} ± {d[2]:.3f} | "
              f"{m[3]:.4f} ± {d[3]:.4f} |")
