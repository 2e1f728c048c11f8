#!/usr/bin/env python3
"""Local-oracle figures for the equation-solving attack (no server needed).

    .venv-mx/bin/python tools/extraction/sweep.py [--seeds 5] [--zeros drop|clip] [--json]

For every output policy (full precision, rounding, top-k, label-only) and query
budget, runs attack.run_attack against the in-process oracle with several query
seeds and prints a markdown table: mean agreement on the bundled test rows /
on 10 000 uniform points (in %), and how many seeds the equation solving
succeeded for (otherwise the figure is the label-only fallback's).
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attack import LocalOracle, run_attack  # noqa: E402
from common import Truth, load_csv  # noqa: E402

POLICIES = [
    ("full", {}),
    ("round 5", {"round_to": 5}),
    ("round 4", {"round_to": 4}),
    ("round 3", {"round_to": 3}),
    ("round 2", {"round_to": 2}),
    ("round 1", {"round_to": 1}),
    ("top-2, full", {"top_k": 2}),
    ("top-2, round 3", {"top_k": 2, "round_to": 3}),
    ("top-1, full", {"top_k": 1}),
    ("label only", {"label_only": True}),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--zeros", choices=["auto", "drop", "clip"], default="auto")
    ap.add_argument("--json", action="store_true", help="print every run's report as JSON lines instead")
    args = ap.parse_args()
    truth = Truth()
    d1 = truth.d + 1
    budgets = [("d+1", d1), ("2(d+1)", 2 * d1), ("(k-1)(d+1)", (truth.k - 1) * d1), ("k(d+1)", truth.k * d1),
               ("2k(d+1)", 2 * truth.k * d1), ("5k(d+1)", 5 * truth.k * d1)]
    x_test = load_csv()["test"][0]
    header = "| policy | " + " | ".join(f"{name} = {n}" for name, n in budgets) + " |"
    lines = [header, "|---" * (len(budgets) + 1) + "|"]
    for pname, kw in POLICIES:
        cells = []
        for _, n in budgets:
            at, au, ok, pd = [], [], 0, []
            for seed in range(1, args.seeds + 1):
                rep = run_attack(LocalOracle(truth, **kw), truth, n, seed, args.zeros, x_test)
                if args.json:
                    print(json.dumps({"policy": pname, "budget": n, **rep}))
                at.append(rep["agreement_test"])
                au.append(rep["agreement_uniform"])
                ok += rep["method"] == "equation_solving"
                pd.append(rep["max_abs_prob_diff_uniform"])
            cells.append(f"{100 * np.mean(at):.2f} / {100 * np.mean(au):.2f} ({ok}/{args.seeds})")
        lines.append(f"| {pname} | " + " | ".join(cells) + " |")
    if not args.json:
        print(f"agreement test / uniform in % (mean of {args.seeds} query seeds), (equation solving succeeded "
              f"in n of {args.seeds}; otherwise the label-only fallback); d = {truth.d}, k = {truth.k}, "
              f"unknowns (k-1)(d+1) = {(truth.k - 1) * d1}; zeros = {args.zeros}\n")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
