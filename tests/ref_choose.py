"""Reference for tests/pipeline_choose.rs: the choice and the paired comparison of a pipeline
run recomputed from its results.csv alone, with the csv module and scipy.

usage: ref_choose.py RESULTS_CSV BY BASELINE AMONG...

Prints JSON: `chosen`, the eval keys of the rows a choice on BY keeps (per group of the other
settings, the largest BY, the first on ties), and `compare`, per method other than BASELINE,
the per-seed differences of `acc` against BASELINE's row of the same split and seed, their
mean, sample std and Student-t 95% half-width.
"""

import csv
import json
import math
import sys

from scipy import stats

SEEDS = ["data.seed", "stage1.seed", "select.seed", "stage2.seed"]


def main():
    path, by, baseline, *among = sys.argv[1:]
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    header = list(rows[0].keys())
    # Settings are `section.key` columns, the method and the weights.
    settings = [c for c in header if "." in c or c in ("method", "weights")]

    groups = {}
    for row in rows:
        key = tuple(row[c] for c in settings if c not in among)
        best = groups.get(key)
        if best is None or float(row[by]) > float(best[by]):
            groups[key] = row
    chosen = list(groups.values())

    split = [c for c in header if c.startswith("data.")] + ["weights"]
    train_seeds = [c for c in SEEDS if c in header and not c.startswith("data.")]
    base = [r for r in chosen if r["method"] == baseline]
    per_method = {}
    for row in chosen:
        if row["method"] == baseline:
            continue
        partners = [
            b
            for b in base
            if all(row[c] == b[c] for c in split)
            and all(row[c] == b[c] or not row[c] or not b[c] for c in train_seeds)
        ]
        assert len(partners) == 1, (row, partners)
        per_method.setdefault(row["method"], []).append(float(row["acc"]) - float(partners[0]["acc"]))

    compare = {}
    for method, diffs in per_method.items():
        n = len(diffs)
        mean = sum(diffs) / n
        std = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
        ci = stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)
        compare[method] = {"pairs": n, "diffs": diffs, "mean": mean, "std": std, "ci95": ci}
    print(json.dumps({"chosen": [r["eval"] for r in chosen], "compare": compare}))


if __name__ == "__main__":
    main()
