#!/usr/bin/env python3
"""Checks `sbpc --memory-budget ... --emit=report` against the documented rules.

Reads the report on stdin and fails unless: the chosen planned peak is at most
the budget; every candidate tried before it is over the budget; the candidates
come in the documented order (dense; then keep ratios from highest; within a
keep ratio SBP on the last k blocks, k = 1, 2, ...; the attention treatments
in the order given by --modes); and the peak breakdown adds up.
"""
import argparse
import re
import sys

p = argparse.ArgumentParser()
p.add_argument("--modes", default="drop_qkv")
a = p.parse_args()
text = sys.stdin.read()
budget = int(re.search(r"^  budget (\d+) B; dense plan (\d+) B", text, re.M).group(1))
parts = re.search(r"^  planned peak (\d+) B = arena (\d+) \+ parameters, gradients, optimizer state (\d+) \+ "
                  r"labels (\d+) \(the images are in the arena\) \+ reserve (\d+)$", text, re.M)
if not parts:
    sys.exit("check_budget: error: no planned peak breakdown")
peak, *terms = map(int, parts.groups())
rows = re.findall(r"^    (dense \(no SBP\)|keep ([0-9.]+), (.*?), last (\d+) of (\d+) blocks) +peak +(\d+) B  (fits|over)$",
                  text, re.M)
if not rows:
    sys.exit("check_budget: error: no candidates listed")
bad = []
if sum(terms) != peak:
    bad.append(f"breakdown {terms} does not add up to {peak}")
if peak > budget:
    bad.append(f"chosen peak {peak} > budget {budget}")
if int(rows[-1][5]) != peak or rows[-1][6] != "fits":
    bad.append("the last candidate listed is not the chosen one")
for r in rows[:-1]:
    if r[6] != "over" or int(r[5]) <= budget:
        bad.append(f"candidate '{r[0]}' ({r[5]} B) fits but was passed over")
modes = [("attention " + m) if m != "none" else "MLP only (attention dense)" for m in a.modes.split(",")]
expected = [("dense (no SBP)",)]
blocks = int(rows[1][4]) if len(rows) > 1 else 0
for keep in ("0.75", "0.5", "0.25"):
    for k in range(1, blocks + 1):
        for m in modes:
            expected.append((keep, m, str(k)))
got = [(r[0],) if r[0].startswith("dense") else (r[1], r[2], r[3]) for r in rows]
if got != expected[: len(got)]:
    bad.append(f"order differs from the documented one at {next(i for i, (g, e) in enumerate(zip(got, expected)) if g != e)}")
for b in bad:
    print("FAIL", b)
print(f"{'OK' if not bad else 'FAILED'}: {len(rows)} candidates, chosen peak {peak} B <= budget {budget} B")
sys.exit(1 if bad else 0)
