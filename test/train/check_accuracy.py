#!/usr/bin/env python3
"""Asserts what docs/training.md records for the Fashion-MNIST patch-MLP runs.

    check_accuracy.py FULL.csv SBP.csv --floor 84 --max-gap 1.0

Reads the last row of each sbp-train CSV log (test_acc), and fails unless both
reach the floor (percent) and differ by less than --max-gap points.
"""
import argparse
import csv
import sys


def final_accuracy(path):
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("test_acc")]
    if not rows:
        sys.exit(f"check_accuracy: error: {path} has no row with a test accuracy")
    acc = float(rows[-1]["test_acc"])
    return acc * 100 if acc <= 1.0 else acc


def main():
    p = argparse.ArgumentParser()
    p.add_argument("full")
    p.add_argument("sbp")
    p.add_argument("--floor", type=float, required=True)
    p.add_argument("--max-gap", type=float, required=True)
    a = p.parse_args()
    full, sbp = final_accuracy(a.full), final_accuracy(a.sbp)
    gap = abs(full - sbp)
    print(f"test accuracy: full backprop {full:.2f}%, SBP {sbp:.2f}%, gap {gap:.2f} points")
    ok = full >= a.floor and sbp >= a.floor and gap < a.max_gap
    print("PASS" if ok else f"FAIL: need both >= {a.floor}% and a gap < {a.max_gap}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
