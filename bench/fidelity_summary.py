#!/usr/bin/env python3
"""The table of docs/fidelity.md from bench/fidelity_study.sh's CSVs.

  fidelity_summary.py DIR CONFIG...

For each configuration and parameter set (trained, init): the mean over weights
of SBP blocks (blocks.* .weight: attention qkv/proj, MLP fc1/fc2, norms) of the
per-weight mean cosine over batches; the same over the weights outside the SBP
blocks' reach (patch embedding, first blocks); the lowest per-weight mean; and
the mean norm ratio. Weights are what the paper's figures show.
"""
import csv
import os
import statistics
import sys

out, configs = sys.argv[1], sys.argv[2:]


def load(path):
    per = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r["param"].endswith(".weight"):
                per.setdefault(r["param"], []).append((float(r["cosine"]), float(r["norm_ratio"])))
    return per


print("| configuration | parameters | mean cosine, all weights | blocks 2-5 (SBP) | blocks 0-1 + embedding + head | lowest weight | mean norm ratio |")
print("|---|---|---:|---:|---:|---|---:|")
for cfg in configs:
    for which in ("trained", "init"):
        if not os.path.exists(f"{out}/{cfg}.{which}.csv"):
            continue
        per = load(f"{out}/{cfg}.{which}.csv")
        means = {p: statistics.fmean(c for c, _ in v) for p, v in per.items()}
        ratios = [statistics.fmean(r for _, r in v) for v in per.values()]
        sbp = [m for p, m in means.items() if any(p.startswith(f"blocks.{i}.") for i in range(2, 6))]
        rest = [m for p, m in means.items() if not any(p.startswith(f"blocks.{i}.") for i in range(2, 6))]
        low = min(means, key=means.get)
        print(f"| {cfg} | {which} | {statistics.fmean(means.values()):.4f} | {statistics.fmean(sbp):.4f} | "
              f"{statistics.fmean(rest):.4f} | {means[low]:.4f} ({low}) | {statistics.fmean(ratios):.3f} |")
