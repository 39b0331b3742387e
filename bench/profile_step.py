#!/usr/bin/env python3
"""Where one training step's GPU time goes, by kernel category, for an sbpc
trainer and for torch.compile (ViT-Tiny by default), from one device call.

On the GPU machine (bench/profile_step.sh runs both halves):

  ncu --graph-profiling node --clock-control none --cache-control none \\
      --metrics gpu__time_duration.sum --csv --print-units base \\
      sbp-bench TRAINER.so --warmup 1 --steps 1 > sbpc.csv
  python3 bench/profile_step.py --ncu-csv sbpc.csv --torch-compile --out table.md

The sbpc half profiles the kernels of one replayed step with Nsight Compute
(the CUDA graph's nodes: the step, the optimizer and the mask draw). The
first, uncaptured step also plans every GEMM and times the weight-gradient
GEMMs' candidate algorithms, so only the kernels from the last
`beginStepKernel` on are counted. The torch half runs timm's model under torch.compile with
bf16 autocast and fused AdamW, warms up, and takes one step under
torch.profiler. Both count kernel launches and sum kernel time per category.
ncu serialises kernels and its times are per kernel, so compare categories
and counts, not the totals with the step time.
"""
import argparse
import csv
import json
import re
import sys

# Category of a kernel by name, first match wins (both sides' names). A fused
# kernel goes where its main op is: a LayerNorm group or a GELU group with the
# bias gradients folded into it is LayerNorm or GELU, and SBP's generated
# scatter of kept rows (with the next gathers and a bias gradient) is a
# scatter; "bias-gradient column sums" are then the kernels that only sum
# (sbpc's deferred launch, cuBLASLt's split-K reductions).
CATEGORIES = [
    ("attention", r"attn|flash|fmha|sdpa|attention|cudnn"),
    ("GEMM (cuBLASLt / cuBLAS / Triton mm)", r"gemm|nvjet|xmma|cutlass|sm90_|sm80_|_mm_|triton_tem|gemv"),
    ("LayerNorm fwd/bwd (+ fused residual add/cast)", r"layer_norm|layernorm|native_layer_norm"),
    ("GELU and its gradient", r"gelu"),
    ("masks, gathers, scatters", r"scatter_add_rows|gather_rows"),
    ("bias-gradient column sums", r"colsum|column_sums|bias_grad|reduce_kernel"),
    ("optimizer", r"adam|sgd|multi_tensor|optim"),
    ("masks, gathers, scatters", r"mask|gather|scatter|index|philox"),
    ("casts, adds, copies", r"cast|add|copy|fill|convert|elementwise|vectorized|unrolled|fused_"),
    ("loss, patchify, token ops", r"softmax|xent|cross_entropy|nll|patchify|cls_|take_token|pos_|mean_tokens"),
]


def category(name):
    low = name.lower()
    for cat, pattern in CATEGORIES:
        if re.search(pattern, low):
            return cat
    if low.startswith("triton_"):
        return "other Triton (fused elementwise/reductions)"
    return "other"


def summarise(kernels):
    """kernels: [(name, seconds)] -> {category: [count, seconds]}, total count, total s."""
    table = {}
    for name, t in kernels:
        c = table.setdefault(category(name), [0, 0.0])
        c[0] += 1
        c[1] += t
    return table, len(kernels), sum(t for _, t in kernels)


def read_ncu_csv(path):
    """[(name, seconds, dram bytes)] of the last step (bytes 0 where the CSV
    has no dram__bytes.sum)."""
    by_id = {}
    with open(path, newline="") as f:
        lines = [l for l in f if l.startswith('"')]  # skip the profiler's own log lines
    for row in csv.DictReader(lines):
        metric = row.get("Metric Name")
        if metric not in ("gpu__time_duration.sum", "dram__bytes.sum"):
            continue
        k = by_id.setdefault(row["ID"], [row["Kernel Name"], 0.0, 0.0])
        value = float(row["Metric Value"].replace(",", ""))
        if metric == "dram__bytes.sum":
            k[2] = value  # --print-units base: bytes
            continue
        unit = row.get("Metric Unit", "ns")
        scale = {"ns": 1e-9, "nsecond": 1e-9, "usecond": 1e-6, "us": 1e-6, "msecond": 1e-3, "ms": 1e-3}.get(unit, 1e-9)
        k[1] = value * scale
    kernels = [tuple(v) for _, v in sorted(by_id.items(), key=lambda kv: int(kv[0]))]
    return last_step(kernels)


def top_kernels(kernels, n):
    """The n kernel names that take the most time: launches, total ms, us a
    launch and (where the profile has DRAM bytes) achieved GB/s."""
    agg = {}
    for name, t, nbytes in kernels:
        short = re.sub(r"\(.*", "", name)[:90]
        a = agg.setdefault(short, [0, 0.0, 0.0])
        a[0] += 1
        a[1] += t
        a[2] += nbytes
    rows = ["| kernel | launches | ms | us each | GB/s |", "|---|---:|---:|---:|---:|"]
    for short, (count, t, nbytes) in sorted(agg.items(), key=lambda kv: -kv[1][1])[:n]:
        bw = f"{nbytes / t / 1e9:.0f}" if nbytes and t else ""
        rows.append(f"| `{short}` | {count} | {t * 1e3:.3f} | {t / count * 1e6:.1f} | {bw} |")
    return "\n".join(rows)


def last_step(kernels):
    """The kernels from the last step's first launch on (the runtime's
    beginStepKernel opens every step); all of them if none is named so."""
    starts = [i for i, k in enumerate(kernels) if "beginStepKernel" in k[0]]
    return kernels[starts[-1]:] if starts else kernels


def torch_compile_step(model_name, batch, img, classes, steps_warmup):
    import torch
    import torch.nn.functional as F
    import timm
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model = timm.create_model(model_name, pretrained=False, num_classes=classes, img_size=img).cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05, fused=True)
    cmodel = torch.compile(model)
    x = torch.randn(batch, 3, img, img, device="cuda")
    y = torch.randint(0, classes, (batch,), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(cmodel(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(steps_warmup):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    kernels = []
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA and not e.name.startswith(("Memcpy", "Memset")):
            kernels.append((e.name, e.device_time / 1e6))  # device_time is in us
    return kernels


def markdown(sides):
    cats = []
    for _, (table, _, _) in sides:
        for c in table:
            if c not in cats:
                cats.append(c)
    head = "| category | " + " | ".join(f"{n} kernels | {n} ms" for n, _ in sides) + " |"
    rule = "|---|" + "---:|---:|" * len(sides)
    rows = [head, rule]
    for c in cats:
        cells = []
        for _, (table, _, _) in sides:
            k, t = table.get(c, [0, 0.0])
            cells += [str(k), f"{t * 1e3:.2f}"]
        rows.append(f"| {c} | " + " | ".join(cells) + " |")
    total = []
    for _, (_, count, secs) in sides:
        total += [f"**{count}**", f"**{secs * 1e3:.2f}**"]
    rows.append("| total | " + " | ".join(total) + " |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ncu-csv", action="append", default=[], metavar="LABEL=FILE",
                    help="an sbpc trainer's step profiled by ncu (repeatable)")
    ap.add_argument("--torch-compile", action="store_true", help="also profile torch.compile")
    ap.add_argument("--model", default="vit_tiny_patch16_224")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--img", type=int, default=224)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--top", type=int, default=0, metavar="N",
                    help="also print each sbpc profile's N most expensive kernels")
    ap.add_argument("--out", help="also write the table (markdown) here")
    a = ap.parse_args()
    sides = []
    for spec in a.ncu_csv:
        label, _, path = spec.partition("=")
        kernels = read_ncu_csv(path)
        sides.append((label, summarise([(name, t) for name, t, _ in kernels])))
        if a.top:
            print(f"{label}: top {a.top} kernels of the step")
            print(top_kernels(kernels, a.top))
    if a.torch_compile:
        sides.append(("torch.compile", summarise(torch_compile_step(a.model, a.batch, a.img, a.classes, a.warmup))))
    if not sides:
        sys.exit("profile_step.py: nothing to profile (--ncu-csv, --torch-compile)")
    table = markdown(sides)
    print(json.dumps({label: {"kernels": count, "kernel_ms": secs * 1e3} for label, (_, count, secs) in sides}))
    print(table)
    if a.out:
        with open(a.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
