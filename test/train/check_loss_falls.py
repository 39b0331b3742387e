#!/usr/bin/env python3
"""Checks that training lowered the test loss: reads the final `test-loss X` of two sbp-train logs
(a short run, then a longer one from the same seed) and fails unless both are finite and the
longer run's loss is below the short run's by --margin."""
import argparse
import math
import re
import sys


def test_loss(path):
    losses = re.findall(r"test-loss (\S+)", open(path).read())
    if not losses:
        sys.exit(f"{path}: no `test-loss` line")
    return float(losses[-1])


ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("short")
ap.add_argument("long")
ap.add_argument("--margin", type=float, default=0.2)
args = ap.parse_args()
before, after = test_loss(args.short), test_loss(args.long)
print(f"test loss {before:.4f} -> {after:.4f}")
if not (math.isfinite(before) and math.isfinite(after)):
    sys.exit("FAIL: a loss is not finite")
if not after < before - args.margin:
    sys.exit(f"FAIL: the loss did not fall by {args.margin}")
