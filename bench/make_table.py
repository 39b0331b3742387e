#!/usr/bin/env python3
"""Markdown table from the JSON lines of sbp-bench and torch_patch_mlp.py.

    python3 bench/make_table.py bench.jsonl [more.jsonl ...] [--baseline-precision fp32]

One row per run: model | mode | precision | img/s (median step) | step ms median (p10-p90) |
peak device memory | allocator peak / planned | x eager | x torch.compile.
The two ratio columns divide the row's img/s by that of PyTorch eager and torch.compile for the
same model at --baseline-precision (default fp32: the sbpc trainers compute in fp32).
Lines with an "error" key (written by run_benchmarks.sh for a failed run) show as failed rows;
other non-JSON lines are ignored.
"""
import argparse
import json
import sys

MODE_ORDER = {"sbpc": ["dense", "sbp"],
              "pytorch": ["eager", "compile", "checkpoint", "sbp", "sbp_gather", "sbp_compile"]}
PREC_ORDER = ["fp32", "tf32", "bf16"]


def fmt_bytes(b):
    if b is None:
        return "–"
    if abs(b) >= 2**30:
        return f"{b / 2**30:.2f} GiB"
    return f"{b / 2**20:.0f} MiB"


def load(paths):
    rows = []
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    d = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if "ok" in d and "where_vs_gather" in d:  # torch_patch_mlp.py --check line
                    d = dict(d, framework="check")
                rows.append(d)
    return rows


def label(d):
    fw = d.get("framework", "?")
    prefix = {"sbpc": "sbpc", "pytorch": "torch"}.get(fw, fw)
    return f"{prefix} {d.get('mode', '?')}"


def sort_key(d):
    mode = d.get("mode", "")
    base = mode.split("[")[0]
    order = MODE_ORDER.get(d.get("framework"), [])
    return (d.get("model", ""), 0 if d.get("framework") == "sbpc" else 1,
            PREC_ORDER.index(d["precision"]) if d.get("precision") in PREC_ORDER else 9,
            order.index(base) if base in order else 9, mode)


def table(rows, baseline_precision):
    runs = [d for d in rows if d.get("framework") in ("sbpc", "pytorch")]
    checks = [d for d in rows if d.get("framework") == "check"]
    base = {}
    for d in runs:
        if (d.get("framework") == "pytorch" and d.get("precision") == baseline_precision
                and "error" not in d and d.get("mode") in ("eager", "compile")):
            base[(d["model"], d["mode"])] = d["img_per_s"]

    out = []
    devices = sorted({d.get("device_name") for d in runs if d.get("device_name")})
    torch_versions = sorted({d.get("torch_version") for d in runs if d.get("torch_version")})
    if devices:
        out.append(f"Device: {', '.join(devices)}" +
                   (f"; PyTorch {', '.join(torch_versions)}" if torch_versions else ""))
        out.append("")
    out.append("| model | mode | precision | img/s (median step) | step ms median (p10–p90) "
               "| peak device memory | allocator peak / planned "
               f"| x eager ({baseline_precision}) | x torch.compile ({baseline_precision}) |")
    out.append("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for d in sorted(runs, key=sort_key):
        model = d.get("model", "?")
        if "error" in d:
            out.append(f"| {model} | {label(d)} | {d.get('precision', '')} | failed: "
                       f"{str(d['error'])[:80]} | | | | | |")
            continue
        ips = d["img_per_s"]
        ms = f"{d['median_ms']:.2f} ({d['p10_ms']:.2f}–{d['p90_ms']:.2f})"
        if d.get("framework") == "sbpc":
            alloc = f"planned {fmt_bytes(d.get('planned_total_bytes'))}"
        else:
            alloc = (f"alloc {fmt_bytes(d['torch_max_allocated_bytes'])}"
                     if "torch_max_allocated_bytes" in d else "–")
        ratios = []
        for m in ("eager", "compile"):
            b = base.get((model, m))
            ratios.append(f"{ips / b:.2f}x" if b else "–")
        out.append(f"| {model} | {label(d)} | {d.get('precision', '')} | {ips:,.0f} | {ms} | "
                   f"{fmt_bytes(d.get('peak_mem_bytes'))} | {alloc} | {ratios[0]} | {ratios[1]} |")
    out.append("")
    out.append("Peak device memory: cudaMemGetInfo (total - free), highest value seen after setup "
               "and after every step, minus the value before the model/trainer was created (CUDA "
               "context already up); includes the input batch. On CPU runs: VmHWM - VmRSS. "
               "Allocator peak: torch.cuda.max_memory_allocated; planned: the trainer's arena + "
               "parameter/gradient/optimizer state (sbp_trainer_get_info).")
    for c in checks:
        if "error" in c:
            out.append(f"SBP gradient check ({c.get('model')}): FAILED: {c['error']}")
            continue
        out.append(f"SBP gradient check ({c.get('model')}, {c.get('device')}): "
                   f"{'ok' if c.get('ok') else 'FAILED'}; sbp vs sbp_gather max rel diff "
                   f"{c.get('where_vs_gather', float('nan')):.2e}, keep=1 vs dense "
                   f"{max(c.get('keep1_where_vs_dense', 0), c.get('keep1_gather_vs_dense', 0)):.2e}")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("jsonl", nargs="+")
    ap.add_argument("--baseline-precision", default="fp32", choices=PREC_ORDER)
    a = ap.parse_args()
    rows = load(a.jsonl)
    if not rows:
        sys.exit("make_table.py: no JSON lines in " + " ".join(a.jsonl))
    print(table(rows, a.baseline_precision))


if __name__ == "__main__":
    main()
