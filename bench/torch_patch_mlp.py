#!/usr/bin/env python3
"""PyTorch baselines for the sbp-zoo patch-MLP: step time and peak memory, one JSON line.

    python3 bench/torch_patch_mlp.py --mlir .devpkg/trainers/patch_mlp_bench_sbp.mlir \
        --mode compile --precision bf16 --steps 50 --warmup 10

The model is the one sbp-zoo writes (see frontends/sbp-zoo): patchify + linear patch embedding
+ learned position embedding, `depth` residual blocks x + fc2(act(fc1(LayerNorm(x)))), final
LayerNorm, mean over tokens, linear head, mean cross-entropy; AdamW with the model's
hyper-parameters (weight decay on matrices only, as the sbpc runtime does), fused=True on CUDA.
Its dimensions come from the .mlir (--mlir) or from the flags below.

Modes:
  eager       plain PyTorch.
  compile     torch.compile(model) (default mode) for forward + backward; optimizer eager (fused).
  sbp         eager SBP as ARCHITECTURE.md specifies it: one grid (or random) keep mask per step,
              shared by every SBP block; the MLP branch output y becomes
              torch.where(keep[t], y, y.detach()): kept rows on the gradient path, dropped rows
              without gradient. Exact semantics, but no memory or FLOP savings (autograd still
              saves and multiplies full-size tensors).
  sbp_gather  SBP as the authors' reference implementation runs it: the branch runs with
              gradient on the gathered kept rows and under torch.no_grad() on the dropped rows,
              and the two are scattered back; saves activations and backward FLOPs.
  sbp_compile the `sbp` variant under torch.compile (mask is a tensor input: no recompiles).

Precision: fp32 (TF32 off), tf32 (TF32 matmuls), bf16 (autocast bf16, fp32 master weights).

Timing: per step, a host clock around zero_grad + mask sampling + forward + backward +
optimizer step + loss.item(), with torch.cuda.synchronize() before and after; warm-up steps
first (they include torch.compile's compilation, reported as first_step_ms); median and p10/p90
of the timed steps.

Memory (CUDA): peak_mem_bytes = max over steps of (total - free) from torch.cuda.mem_get_info,
minus the same figure before the model is built (CUDA context already up) -- the method
sbp-bench uses for sbpc trainers; torch_max_allocated_bytes / torch_max_reserved_bytes are the
caching allocator's own peaks. CPU: VmHWM at the end minus VmRSS before the model is built.
"""

import argparse
import json
import os
import random
import re
import sys

from torch_timing import memory_fields, proc_status_bytes, time_steps, timing_fields


def parse_mlir(path):
    """Dimensions, SBP configuration and optimizer of an sbp-zoo patch-MLP .mlir."""
    with open(path) as f:
        text = f.read()
    cfg = {}
    m = re.search(r"Patch-MLP for (\d+)x(\d+)x(\d+) images: (\d+)x(\d+) patches \((\d+)x(\d+) tokens\), "
                  r"width (\d+), hidden (\d+), depth (\d+)\.", text)
    if not m:
        raise SystemExit(f"{path}: no sbp-zoo patch-MLP header comment "
                         "('// Patch-MLP for HxWxC images: ...'); pass the dimensions as flags")
    img_h, img_w, ch, ph, pw, gh, gw, dim, hidden, depth = map(int, m.groups())
    if img_h != img_w or ph != pw:
        raise SystemExit(f"{path}: only square images and patches are supported")
    cfg.update(img=img_h, channels=ch, patch=ph, dim=dim, hidden=hidden, depth=depth)
    m = re.search(r"sbp\.model @(\w+)", text)
    cfg["name"] = m.group(1) if m else os.path.splitext(os.path.basename(path))[0]
    m = re.search(r'sbp\.input "images" : tensor<(\d+)x', text)
    if not m:
        raise SystemExit(f"{path}: no images input")
    cfg["batch"] = int(m.group(1))
    m = re.search(r'sbp\.param "head\.weight" : tensor<(\d+)x', text)
    if not m:
        raise SystemExit(f"{path}: no head.weight parameter")
    cfg["classes"] = int(m.group(1))
    acts = re.findall(r"sbp\.(gelu|relu) ", text)
    cfg["act"] = acts[0] if acts else "gelu"
    if len(set(acts)) > 1:
        raise SystemExit(f"{path}: mixed activations are not supported")
    m = re.search(r"sbp\.mask_group @\w+ keep ([0-9.eE+-]+) (grid|random) \[(\d+), (\d+)\]", text)
    if m:
        cfg["keep"], cfg["mask"] = float(m.group(1)), m.group(2)
    else:
        cfg["keep"], cfg["mask"] = 1.0, "grid"
    cfg["sbp_blocks"] = sorted(int(b) for b in re.findall(r'name = "blocks\.(\d+)\.mlp"', text))
    m = re.search(r"#sbp\.adamw<lr = ([^,]+), beta1 = ([^,]+), beta2 = ([^,]+), eps = ([^,]+), "
                  r"weight_decay = ([^>]+)>", text)
    if m:
        lr, b1, b2, eps, wd = map(float, m.groups())
        cfg.update(lr=lr, beta1=b1, beta2=b2, eps=eps, weight_decay=wd)
    return cfg


def parse_blocks(text, depth):
    if not text:
        return []
    start, _, end = text.partition(":")
    return list(range(int(start or 0), int(end or depth)))




def run_check(torch, model, images, labels, T, sample_mask, cfg, device):
    """Gradient agreement of the SBP variants (see --check)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    names = [n for n, _ in model.named_parameters()]

    def grads(**kwargs):
        model.zero_grad(set_to_none=True)
        model(images, labels, **kwargs).backward()
        return {n: p.grad.detach().double().clone() for n, p in model.named_parameters()}

    def rel(x, y):
        return float((x - y).abs().max() / y.abs().max().clamp_min(1e-30))

    keep_rows, perm, n_keep = sample_mask()
    dense = grads()
    where = grads(keep_rows=keep_rows)
    gather = grads(perm=perm, n_keep=n_keep)
    all_rows = torch.ones_like(keep_rows)
    identity = torch.cat([torch.arange(T, device=device)] * 2)
    where1 = grads(keep_rows=all_rows)
    gather1 = grads(perm=identity, n_keep=T)
    first_sbp = min(cfg["sbp_blocks"])
    below = [n for n in names if n in ("patch_embed.weight", "patch_embed.bias", "pos_embed")
             or (n.startswith("blocks.") and int(n.split(".")[1]) <= first_sbp)]
    res = {
        "where_vs_gather": max(rel(where[n], gather[n]) for n in names),
        "keep1_where_vs_dense": max(rel(where1[n], dense[n]) for n in names),
        "keep1_gather_vs_dense": max(rel(gather1[n], dense[n]) for n in names),
        "sbp_vs_dense_min_below": min(rel(where[n], dense[n]) for n in below),
        "head_sbp_vs_dense": max(rel(where[n], dense[n]) for n in names
                                 if n.startswith("head.") or n.startswith("norm.")),
        "kept_tokens": int(keep_rows.sum()),
        "tokens": T,
    }
    ok = (res["where_vs_gather"] < 1e-4 and res["keep1_where_vs_dense"] == 0.0
          and res["keep1_gather_vs_dense"] < 1e-4 and res["sbp_vs_dense_min_below"] > 1e-3
          and res["head_sbp_vs_dense"] < 1e-4)
    res.update(ok=ok, model=cfg["name"], tool="torch_patch_mlp.py --check", device=str(device))
    print(json.dumps(res), flush=True)
    if not ok:
        raise SystemExit("torch_patch_mlp.py --check: SBP variants disagree (see the JSON line)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mlir", help="sbp-zoo patch-MLP .mlir to take the model from")
    ap.add_argument("--mode", default="eager",
                    choices=["eager", "compile", "sbp", "sbp_gather", "sbp_compile"])
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    ap.add_argument("--bf16", action="store_true", help="same as --precision bf16")
    ap.add_argument("--compile-mode", default=None,
                    help="torch.compile mode (default: PyTorch's default mode)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda if available)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch default)")
    ap.add_argument("--check", action="store_true",
                    help="instead of timing: check on one batch (fp32, TF32 off) that sbp and "
                         "sbp_gather give the same gradients, that they differ from the dense "
                         "ones below the SBP blocks, and that keep = 1 gives the dense ones; "
                         "prints one JSON line, exit 1 on a mismatch")
    g = ap.add_argument_group("model (without --mlir; with it, these override the file)")
    for flag, typ in [("--name", str), ("--img", int), ("--channels", int), ("--patch", int),
                      ("--dim", int), ("--hidden", int), ("--depth", int), ("--classes", int),
                      ("--batch", int), ("--keep", float), ("--lr", float),
                      ("--weight-decay", float)]:
        g.add_argument(flag, type=typ, default=None)
    g.add_argument("--act", choices=["gelu", "relu"], default=None)
    g.add_argument("--mask", choices=["grid", "random"], default=None)
    g.add_argument("--sbp-blocks", default=None, help="[start:end) of SBP blocks, e.g. 4:12")
    a = ap.parse_args()
    if a.bf16:
        a.precision = "bf16"
    if a.steps < 1 or a.warmup < 0:
        raise SystemExit("--steps must be >= 1 and --warmup >= 0")

    cfg = dict(name="patch_mlp", img=28, channels=1, patch=4, dim=64, hidden=128, depth=4,
               classes=10, batch=128, act="gelu", keep=0.5, mask="grid", sbp_blocks=[],
               lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.05)
    if a.mlir:
        cfg.update(parse_mlir(a.mlir))
    for key in ["name", "img", "channels", "patch", "dim", "hidden", "depth", "classes", "batch",
                "keep", "lr", "weight_decay", "act", "mask"]:
        if getattr(a, key) is not None:
            cfg[key] = getattr(a, key)
    if a.sbp_blocks is not None:
        cfg["sbp_blocks"] = parse_blocks(a.sbp_blocks, cfg["depth"])
    if cfg["img"] % cfg["patch"]:
        raise SystemExit(f"patch {cfg['patch']} does not divide image size {cfg['img']}")
    is_sbp = a.mode.startswith("sbp")
    if (is_sbp or a.check) and not cfg["sbp_blocks"]:
        raise SystemExit(f"--{'check' if a.check else 'mode ' + a.mode} needs SBP blocks "
                         "(an SBP .mlir or --sbp-blocks)")

    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = a.precision == "tf32"
    torch.manual_seed(a.seed)
    random.seed(a.seed)

    mem_base = rss_base = mem_total = None
    if cuda:
        torch.cuda.set_device(device)
        torch.empty(1, device=device)  # CUDA context up before the baseline
        torch.cuda.synchronize()
        free, total = torch.cuda.mem_get_info(device)
        mem_base, mem_total = total - free, total
        torch.cuda.reset_peak_memory_stats(device)
    else:
        rss_base = proc_status_bytes("VmRSS")

    B, C, IMG, P = cfg["batch"], cfg["channels"], cfg["img"], cfg["patch"]
    G = IMG // P
    T, PD, D, H = G * G, C * P * P, cfg["dim"], cfg["hidden"]
    sbp_set = set(cfg["sbp_blocks"])

    class Mlp(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(D, H)
            self.act = nn.GELU() if cfg["act"] == "gelu" else nn.ReLU()  # exact (erf) GELU
            self.fc2 = nn.Linear(H, D)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(D, eps=1e-6)
            self.mlp = Mlp()

        def branch(self, x):
            return self.mlp(self.norm(x))

        def forward(self, x, keep_rows=None, perm=None, n_keep=None):
            if perm is not None:  # sbp_gather
                xk = x.index_select(1, perm[:n_keep])
                with torch.no_grad():
                    yd = self.branch(x.index_select(1, perm[n_keep:]))
                yk = self.branch(xk)
                # rows in perm order -> token order (inverse permutation stored after perm)
                y = torch.cat([yk, yd], dim=1).index_select(1, perm[T:])
                return x + y
            y = self.branch(x)
            if keep_rows is not None:  # sbp / sbp_compile: Alg. 1 with torch.where
                y = torch.where(keep_rows, y, y.detach())
            return x + y

    class PatchMLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch_embed = nn.Linear(PD, D)
            self.pos_embed = nn.Parameter(torch.zeros(1, T, D))
            self.blocks = nn.ModuleList(Block() for _ in range(cfg["depth"]))
            self.norm = nn.LayerNorm(D, eps=1e-6)
            self.head = nn.Linear(D, cfg["classes"])
            for n, p in self.named_parameters():
                if n.endswith(".bias"):
                    nn.init.zeros_(p)
                elif n.endswith("norm.weight"):
                    nn.init.ones_(p)
                else:
                    nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04)

        def forward(self, images, labels, keep_rows=None, perm=None, n_keep=None):
            # token t = i*G + j, feature f = c*P*P + py*P + px (sbp.patchify)
            tok = images.reshape(B, C, G, P, G, P).permute(0, 2, 4, 1, 3, 5).reshape(B, T, PD)
            x = self.patch_embed(tok) + self.pos_embed
            for i, blk in enumerate(self.blocks):
                if i in sbp_set:
                    x = blk(x, keep_rows, perm, n_keep)
                else:
                    x = blk(x)
            x = self.norm(x).mean(dim=1)
            return F.cross_entropy(self.head(x), labels)

    model = PatchMLP().to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and n != "pos_embed"]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and n != "pos_embed")]
    opt_kwargs = dict(lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"])
    if cuda:
        opt_kwargs["fused"] = True
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], **opt_kwargs)

    gen = torch.Generator(device="cpu").manual_seed(a.seed + 1)
    images = torch.randn((B, C, IMG, IMG), generator=gen).to(device)
    labels = torch.randint(0, cfg["classes"], (B,), generator=gen).to(device)
    input_bytes = images.numel() * 4 + labels.numel() * 8

    # Masks (ARCHITECTURE.md "Masks"): one per step, shared by every SBP block.
    r = cfg["keep"]
    if (is_sbp or a.check) and cfg["mask"] == "grid":
        s = max(1, round(1 / r)) if r <= 0.5 else max(1, round(1 / (1 - r))) if r < 1 else 1
        ii = torch.arange(G).view(G, 1)
        jj = torch.arange(G).view(1, G)
        masks = []
        for start in range(s):
            hit = ((ii + jj) % s == start).reshape(T)
            masks.append(hit if r <= 0.5 else ~hit if r < 1 else torch.ones(T, dtype=torch.bool))
        # One separate [1,T,1] tensor per start: no views into a shared storage, so a compiled
        # model sees the same input layout every step.
        grid_rows = [m.view(1, T, 1).clone().to(device) for m in masks]
        # Permutations for sbp_gather: kept tokens first, then dropped; then the inverse.
        perms, counts = [], []
        for m in masks:
            perm = torch.cat([m.nonzero().flatten(), (~m).nonzero().flatten()])
            perms.append(torch.cat([perm, torch.argsort(perm)]))
            counts.append(int(m.sum()))
        grid_perms = [p.to(device) for p in perms]  # [2T] each

    def sample_mask():
        """(keep_rows [1,T,1] bool, perm [2T], n_keep) for this step."""
        if cfg["mask"] == "grid":
            start = random.randrange(len(grid_rows))
            return grid_rows[start], grid_perms[start], counts[start]
        n_drop = int((1 - r) * T)
        perm = torch.randperm(T, device=device)
        keep = torch.ones(T, dtype=torch.bool, device=device)
        keep[perm[:n_drop]] = False
        order = torch.cat([keep.nonzero().flatten(), (~keep).nonzero().flatten()])
        return keep.view(1, T, 1), torch.cat([order, torch.argsort(order)]), T - n_drop

    if a.check:
        run_check(torch, model, images, labels, T, sample_mask, cfg, device)
        return

    fwd = model
    if a.mode in ("compile", "sbp_compile"):
        fwd = torch.compile(model, mode=a.compile_mode) if a.compile_mode else torch.compile(model)

    autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16)
                if a.precision == "bf16" else None)

    def train_step():
        opt.zero_grad(set_to_none=True)
        kwargs = {}
        if is_sbp:
            keep_rows, perm, n_keep = sample_mask()
            if a.mode == "sbp_gather":
                kwargs = dict(perm=perm, n_keep=n_keep)
            else:
                kwargs = dict(keep_rows=keep_rows)
        if autocast is not None:
            with autocast:
                loss = fwd(images, labels, **kwargs)
        else:
            loss = fwd(images, labels, **kwargs)
        loss.backward()
        opt.step()
        return loss.item()

    times, losses, first_step_ms, warmup_ms, mem_peak = time_steps(torch, train_step, a.warmup, a.steps, device)

    out = {
        "tool": "torch_patch_mlp.py",
        "framework": "pytorch",
        "model": cfg["name"],
        "mode": a.mode + (f"[{a.compile_mode}]" if a.compile_mode and "compile" in a.mode else ""),
        "target": device.type,
        "precision": a.precision,
        "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch_version": torch.__version__,
        "batch": B,
        "steps": a.steps,
        "warmup": a.warmup,
        **timing_fields(times, B, warmup_ms, first_step_ms),
        "input_bytes": input_bytes,
        "param_elements": sum(p.numel() for p in model.parameters()),
        "keep_ratios": [r] if cfg["sbp_blocks"] else [],
        "sbp_blocks": cfg["sbp_blocks"] if is_sbp else [],
        "first_loss": losses[0],
        "last_loss": losses[-1],
    }
    out.update(memory_fields(torch, device, mem_base, mem_peak, mem_total, rss_base))
    if fwd is not model:
        try:  # internal counter; a number above 1 means recompiles (e.g. per mask)
            from torch._dynamo.utils import counters
            out["dynamo_unique_graphs"] = int(counters["stats"]["unique_graphs"])
        except Exception:
            pass
    print(json.dumps(out), flush=True)
    print(f"torch_patch_mlp.py: {cfg['name']} {a.mode} {a.precision} ({device}): median "
          f"{out['median_ms']:.3f} ms, {out['img_per_s']:.1f} img/s, p10 {out['p10_ms']:.3f} p90 {out['p90_ms']:.3f} ms, "
          f"peak {out['peak_mem_bytes'] / 2**20 if out['peak_mem_bytes'] is not None else float('nan'):.1f} MiB",
          file=sys.stderr)


if __name__ == "__main__":
    main()
