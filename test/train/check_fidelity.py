#!/usr/bin/env python3
"""Checks an `sbp-train --grad-fidelity` CSV.

  --min X           every row's cosine is at least X (keep 1.0: the exact gradient)
  --below PARAM:X   PARAM's mean cosine over the batches is below X (SBP changed it)
  --batches N       the CSV holds N batches of every parameter
Prints one line per check; exit status 1 when any fails.
"""
import argparse
import csv
import sys

p = argparse.ArgumentParser()
p.add_argument("csv")
p.add_argument("--min", type=float)
p.add_argument("--below", action="append", default=[])
p.add_argument("--batches", type=int)
a = p.parse_args()
with open(a.csv, newline="") as f:
    rows = list(csv.DictReader(f))
if not rows:
    sys.exit("check_fidelity: error: no rows")
bad = 0
per_param = {}
for r in rows:
    per_param.setdefault(r["param"], []).append(float(r["cosine"]))
if a.batches is not None:
    counts = {len(v) for v in per_param.values()}
    ok = counts == {a.batches}
    bad += not ok
    print(f"{'OK  ' if ok else 'FAIL'} {len(per_param)} parameters x {sorted(counts)} batches")
if a.min is not None:
    low = min(rows, key=lambda r: float(r["cosine"]))
    ok = float(low["cosine"]) >= a.min
    bad += not ok
    print(f"{'OK  ' if ok else 'FAIL'} lowest cosine {float(low['cosine']):.9f} ({low['param']}, batch {low['batch']}) >= {a.min}")
for spec in a.below:
    name, limit = spec.rsplit(":", 1)
    if name not in per_param:
        sys.exit(f"check_fidelity: error: no parameter {name}")
    mean = sum(per_param[name]) / len(per_param[name])
    ok = mean < float(limit)
    bad += not ok
    print(f"{'OK  ' if ok else 'FAIL'} {name} mean cosine {mean:.6f} < {limit}")
sys.exit(1 if bad else 0)
