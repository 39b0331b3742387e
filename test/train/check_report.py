#!/usr/bin/env python3
"""Asserts that pruning really shrinks the SBP regions' backward.

Reads `sbpc --emit=report` on stdin and fails unless every SBP region's
backward FLOPs and saved activations with SBP are at most --max-ratio of those
without SBP (the report's last column), and at least one region is listed.
--skip REGION leaves a region out (e.g. a ViT's last MLP, which runs on the
class token's rows with and without SBP: nothing to prune).
"""
import argparse
import re
import sys

p = argparse.ArgumentParser()
p.add_argument("--max-ratio", type=float, required=True)
p.add_argument("--skip", action="append", default=[], help="a region to leave out (repeatable)")
a = p.parse_args()
lines = sys.stdin.read().splitlines()
start = lines.index("SBP regions:") + 1 if "SBP regions:" in lines else len(lines)
regions = [l for l in lines[start:] if re.search(r"(backward FLOPs|saved activations)\s", l)
           and l.split()[0] not in a.skip]
if not regions:
    sys.exit("check_report: error: no SBP region rows in the report")
bad = 0
for line in regions:
    ratio = float(line.rsplit(None, 1)[-1].rstrip("x"))
    ok = ratio <= a.max_ratio
    bad += not ok
    print(f"{'OK  ' if ok else 'FAIL'} {line.strip()}")
print(f"{len(regions) - bad} of {len(regions)} region rows at most {a.max_ratio}x")
sys.exit(1 if bad else 0)
