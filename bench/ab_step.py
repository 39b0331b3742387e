#!/usr/bin/env python3
"""A/B of whole training steps: the same trainers built from two (or more)
commits, timed in turn by sbp-bench in one device call.

    python3 bench/ab_step.py [--rounds 2] [--steps 30] [--warmup 5] \\
        base=.devpkg/basepkg/trainers new=.devpkg/benchpkg/trainers

Every NAME.so of the first folder that every other folder also holds is run
once per side per round, the sides in turn (base, new, base, new, ...), so
that a drift of the machine over the call hits both. Prints one markdown row
per trainer: each side's medians (one per round) and the speed of each later
side against the first (first side's median of medians / this side's). A
trainer that fails on one side is reported, not skipped silently, and the
exit status is then 1.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys


def run_bench(bench, so, warmup, steps):
    """(median_ms, device name) of one sbp-bench run, or (None, error text)."""
    p = subprocess.run([bench, so, "--warmup", str(warmup), "--steps", str(steps)],
                       capture_output=True, text=True)
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            try:
                j = json.loads(line)
                return (float(j["median_ms"]), j.get("device_name", "")), None
            except (ValueError, KeyError) as e:
                return None, f"unreadable JSON ({e})"
    return None, (p.stderr.strip() or p.stdout.strip() or f"exit {p.returncode}").splitlines()[-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sides", nargs="+", metavar="LABEL=DIR", help="a side: label and its trainers' folder")
    ap.add_argument("--bench", default=os.environ.get("SBP_BENCH", ".devpkg/bin/sbp-bench"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    a = ap.parse_args()
    sides = []
    for spec in a.sides:
        label, sep, folder = spec.partition("=")
        if not sep or not label or not os.path.isdir(folder):
            sys.exit(f"ab_step.py: '{spec}' is not LABEL=DIR with an existing DIR")
        sides.append((label, folder))
    if len(sides) < 2:
        sys.exit("ab_step.py: give at least two sides")
    names = sorted(n for n in os.listdir(sides[0][1])
                   if n.endswith(".so") and all(os.path.isfile(os.path.join(f, n)) for _, f in sides[1:]))
    if not names:
        sys.exit("ab_step.py: no trainer (.so) that every side holds")

    times = {(n, l): [] for n in names for l, _ in sides}
    errors, devices = [], set()
    for r in range(a.rounds):
        for n in names:
            for label, folder in sides:
                got, err = run_bench(a.bench, os.path.join(folder, n), a.warmup, a.steps)
                if err:
                    errors.append(f"{n} ({label}, round {r + 1}): {err}")
                else:
                    times[(n, label)].append(got[0])
                    devices.add(got[1])

    base = sides[0][0]
    head = "| trainer | " + " | ".join(f"{l} ms" for l, _ in sides) + " | " + \
        " | ".join(f"{l} vs {base}" for l, _ in sides[1:]) + " |"
    print(f"{', '.join(sorted(d for d in devices if d)) or 'device not named'}: sbp-bench --warmup {a.warmup} "
          f"--steps {a.steps}, {a.rounds} rounds, sides in turn")
    print(head)
    print("|---|" + "---:|" * (2 * len(sides) - 1))
    for n in names:
        cells, med = [], {}
        for label, _ in sides:
            t = times[(n, label)]
            med[label] = statistics.median(t) if t else None
            cells.append(" / ".join(f"{x:.2f}" for x in t) if t else "failed")
        for label, _ in sides[1:]:
            ok = med[base] and med[label]
            cells.append(f"{med[base] / med[label]:.3f}x" if ok else "-")
        print(f"| {n[:-3]} | " + " | ".join(cells) + " |")
    for e in errors:
        print(f"ab_step.py: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
