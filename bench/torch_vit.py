#!/usr/bin/env python3
"""PyTorch + timm baselines for ViT training: step time and peak memory, one JSON line.

    python3 bench/torch_vit.py --mode eager --precision bf16 --steps 50 --warmup 10

The model is timm's `vit_tiny_patch16_224` (--model; no pretrained weights, timm's own init),
224 px, 1000 classes, batch 256 by default, trained on one batch of synthetic N(0, 1) images and
uniform labels that stays on the device; mean cross-entropy; AdamW (lr 1e-3, weight decay 0.05 on
matrices except pos_embed / cls_token), fused=True on CUDA.

Modes:
  eager       plain PyTorch: model(images).
  compile     torch.compile(model) (default mode) for forward + backward; optimizer eager (fused).
  checkpoint  activation checkpointing per block: torch.utils.checkpoint.checkpoint(block, x,
              use_reentrant=False) around each of the blocks.
  sbp         a straightforward PyTorch SBP, the way the authors' models/vit_sbp.py runs it, on
              timm's own block weights: one keep mask per step (grid: stride and random start as in
              ARCHITECTURE.md "Masks"; or random), shared by the SBP blocks (default the last 8 of
              12), the class token always kept. In an SBP block both branches are SBP regions:
              attention: norm1 and qkv on all tokens; drop_qkv (default, --sbp-attn): kept queries
              attend over the kept keys/values with gradient, dropped queries over all keys under
              torch.no_grad(); (drop_query: kept queries over all keys); then proj on all tokens.
              MLP: norm2 + mlp on the gathered kept rows with gradient, on the dropped rows under
              no_grad. Rows are gathered with index_select and put back in token order by an
              index_select with the inverse permutation (a scatter). Attention is
              F.scaled_dot_product_attention, as in timm's fused path.

Precision: fp32 (TF32 off), tf32 (TF32 matmuls), bf16 (autocast bf16, fp32 master weights).

Timing and memory exactly as bench/torch_patch_mlp.py: per step a host clock around zero_grad +
mask sampling + forward + backward + optimizer step + loss.item(), torch.cuda.synchronize() before
and after; warm-up steps first (they include compilation: first_step_ms); median, p10/p90 of the
timed steps, img/s = batch / median. peak_mem_bytes = max over steps of (total - free) from
torch.cuda.mem_get_info minus the same before the model is built (CUDA context up);
torch_max_allocated_bytes / torch_max_reserved_bytes: the caching allocator's peaks since a
reset_peak_memory_stats() before the model is built. CPU: VmHWM at the end minus VmRSS before.

--selfcheck (instead of timing; fp32, TF32 off) checks on one batch that the sbp path with every
token kept gives eager's gradients, that checkpoint gives eager's gradients, that at the keep
ratio the gather/scatter SBP agrees with a second formulation (torch.where on the branch outputs,
a key mask for drop_qkv), and that SBP changes the gradients below the SBP blocks; one JSON line
(keys as torch_patch_mlp.py --check, so make_table.py lists it), exit 1 on a mismatch.
"""

import argparse
import json
import random
import sys

from torch_timing import memory_fields, proc_status_bytes, time_steps, timing_fields




def parse_blocks(text, depth):
    if text is None:  # the paper's configuration: the last 8 blocks
        return list(range(max(0, depth - 8), depth))
    if not text:
        return []
    start, _, end = text.partition(":")
    return list(range(int(start or 0), int(end or depth)))


def grid_keep_masks(G, r, torch):
    """All grid keep masks [G*G] bool for keep ratio r, one per start (mask_ops.generate_grid_mask2d)."""
    if r >= 1.0:
        return [torch.ones(G * G, dtype=torch.bool)]
    s = max(1, round(1 / r)) if r <= 0.5 else max(1, round(1 / (1 - r)))
    ii = torch.arange(G).view(G, 1)
    jj = torch.arange(G).view(1, G)
    masks = []
    for start in range(s):
        hit = ((ii + jj) % s == start).reshape(G * G)
        masks.append(hit if r <= 0.5 else ~hit)
    return masks


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="vit_tiny_patch16_224", help="timm model name")
    ap.add_argument("--name", default=None, help="model label in the JSON line (default: --model)")
    ap.add_argument("--mode", default="eager", choices=["eager", "compile", "checkpoint", "sbp"])
    ap.add_argument("--precision", default="bf16", choices=["fp32", "tf32", "bf16"])
    ap.add_argument("--fp32", action="store_true", help="same as --precision fp32")
    ap.add_argument("--compile-mode", default=None,
                    help="torch.compile mode (default: PyTorch's default mode)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--img", type=int, default=224, help="image size (the patch size is the model's)")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda if available)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch default)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    g = ap.add_argument_group("SBP (--mode sbp and --selfcheck)")
    g.add_argument("--keep", type=float, default=0.5, help="keep ratio of the patch tokens")
    g.add_argument("--mask", choices=["grid", "random"], default="grid")
    g.add_argument("--sbp-blocks", default=None, help="[start:end) of SBP blocks (default: the last 8)")
    g.add_argument("--sbp-attn", choices=["qkv", "query"], default="qkv",
                   help="attention SBP mode: drop_qkv (default, the paper's) or drop_query")
    ap.add_argument("--selfcheck", action="store_true",
                    help="instead of timing: check the sbp and checkpoint paths' gradients against "
                         "eager's on one batch (fp32, TF32 off); one JSON line, exit 1 on a mismatch")
    a = ap.parse_args()
    if a.fp32:
        a.precision = "fp32"
    if a.steps < 1 or a.warmup < 0:
        raise SystemExit("--steps must be >= 1 and --warmup >= 0")
    if not 0.0 < a.keep <= 1.0:
        raise SystemExit("--keep must be in (0, 1]")

    import torch
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint
    import timm

    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and device.index is None:  # the memory counters need an index
        device = torch.device("cuda", torch.cuda.current_device())
    cuda = device.type == "cuda"
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32" and not a.selfcheck
    torch.backends.cudnn.allow_tf32 = a.precision == "tf32" and not a.selfcheck
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

    model = timm.create_model(a.model, pretrained=False, num_classes=a.classes, img_size=a.img,
                              drop_rate=0.0, drop_path_rate=0.0).to(device).train()
    name = a.name or a.model
    depth = len(model.blocks)
    grid = model.patch_embed.grid_size
    if grid[0] != grid[1]:
        raise SystemExit(f"non-square patch grid {grid}")
    G = grid[0]
    P = model.num_prefix_tokens  # the class token (kept always)
    N = P + G * G
    sbp_blocks = parse_blocks(a.sbp_blocks, depth)
    sbp_set = set(sbp_blocks)
    if (a.mode == "sbp" or a.selfcheck) and not sbp_blocks:
        raise SystemExit("--mode sbp / --selfcheck need at least one SBP block (--sbp-blocks)")
    for i, blk in enumerate(model.blocks):
        if getattr(blk.attn, "gate", None) is not None:
            raise SystemExit(f"block {i}: gated attention is not supported by the sbp path")

    no_wd = set(getattr(model, "no_weight_decay", lambda: set())())
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and n not in no_wd]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and n not in no_wd)]
    opt_kwargs = dict(lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    if cuda:
        opt_kwargs["fused"] = True
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], **opt_kwargs)

    gen = torch.Generator(device="cpu").manual_seed(a.seed + 1)
    images = torch.randn((a.batch, 3, a.img, a.img), generator=gen).to(device)
    labels = torch.randint(0, a.classes, (a.batch,), generator=gen).to(device)
    input_bytes = images.numel() * images.element_size() + labels.numel() * labels.element_size()

    # --- masks: (keep [n_keep], drop [N - n_keep], inverse [N]) token index tensors ------------
    prefix = list(range(P))

    def mask_indices(keep_patch):
        """keep_patch [G*G] bool -> index tensors over the N tokens (prefix tokens kept)."""
        keep = torch.tensor(prefix + [P + t for t in keep_patch.nonzero().flatten().tolist()])
        drop = torch.tensor([P + t for t in (~keep_patch).nonzero().flatten().tolist()], dtype=torch.long)
        inv = torch.argsort(torch.cat([keep, drop]))
        return keep.to(device), drop.to(device), inv.to(device)

    grid_masks = [mask_indices(m) for m in grid_keep_masks(G, a.keep, torch)] if a.mask == "grid" else None

    def sample_mask():
        if a.mask == "grid":
            return grid_masks[random.randrange(len(grid_masks))]
        n_drop = int((1 - a.keep) * G * G)
        keep_patch = torch.ones(G * G, dtype=torch.bool)
        keep_patch[torch.randperm(G * G)[:n_drop]] = False
        return mask_indices(keep_patch)

    # --- the forward passes ------------------------------------------------------------------
    def run_blocks(x, block_fn):
        x = model.patch_embed(x)
        x = model._pos_embed(x)
        x = model.patch_drop(x)
        x = model.norm_pre(x)
        for i, blk in enumerate(model.blocks):
            x = block_fn(i, blk, x)
        x = model.norm(x)
        return model.forward_head(x)

    def sdpa(q, k, v, attn, mask=None):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attn.scale)

    def sbp_block(blk, x, mask, drop_qkv):
        """One timm Block with both branches as SBP regions (gather/scatter, vit_sbp.py's way)."""
        keep, drop, inv = mask
        attn = blk.attn
        B, n, _ = x.shape
        qkv = attn.qkv(blk.norm1(x)).reshape(B, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = attn.q_norm(q), attn.k_norm(k)
        qk = q.index_select(2, keep)
        if drop_qkv:
            o = sdpa(qk, k.index_select(2, keep), v.index_select(2, keep), attn)
        else:
            o = sdpa(qk, k, v, attn)
        if drop.numel():
            with torch.no_grad():
                od = sdpa(q.index_select(2, drop), k, v, attn)
            o = torch.cat([o, od], dim=2).index_select(2, inv)
        o = attn.norm(o.transpose(1, 2).reshape(B, n, attn.attn_dim))
        x = x + blk.drop_path1(blk.ls1(attn.proj_drop(attn.proj(o))))
        y = blk.mlp(blk.norm2(x.index_select(1, keep)))
        if drop.numel():
            with torch.no_grad():
                yd = blk.mlp(blk.norm2(x.index_select(1, drop)))
            y = torch.cat([y, yd], dim=1).index_select(1, inv)
        return x + blk.drop_path2(blk.ls2(y))

    def where_block(blk, x, row_keep, drop_qkv):
        """The same semantics written with torch.where (for --selfcheck only)."""
        attn = blk.attn
        B, n, _ = x.shape
        qkv = attn.qkv(blk.norm1(x)).reshape(B, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = attn.q_norm(q), attn.k_norm(k)
        with torch.no_grad():
            full = sdpa(q, k, v, attn)
        o = sdpa(q, k, v, attn, mask=row_keep.view(1, 1, 1, n) if drop_qkv else None)
        o = torch.where(row_keep.view(1, 1, n, 1), o, full)
        o = attn.norm(o.transpose(1, 2).reshape(B, n, attn.attn_dim))
        x = x + blk.drop_path1(blk.ls1(attn.proj_drop(attn.proj(o))))
        y = blk.mlp(blk.norm2(x))
        y = torch.where(row_keep.view(1, n, 1), y, y.detach())
        return x + blk.drop_path2(blk.ls2(y))

    drop_qkv = a.sbp_attn == "qkv"

    def loss_eager(fwd):
        return F.cross_entropy(fwd(images), labels)

    def loss_checkpoint():
        return F.cross_entropy(run_blocks(
            images, lambda i, blk, x: checkpoint(blk, x, use_reentrant=False)), labels)

    def loss_sbp(mask):
        return F.cross_entropy(run_blocks(
            images, lambda i, blk, x: sbp_block(blk, x, mask, drop_qkv) if i in sbp_set else blk(x)),
            labels)

    def loss_where(row_keep):
        return F.cross_entropy(run_blocks(
            images, lambda i, blk, x: where_block(blk, x, row_keep, drop_qkv) if i in sbp_set else blk(x)),
            labels)

    if a.selfcheck:
        names = [n for n, _ in model.named_parameters()]

        def grads(loss_fn):
            model.zero_grad(set_to_none=True)
            loss = loss_fn()
            loss.backward()
            return loss.item(), {n: p.grad.detach().double().clone() for n, p in model.named_parameters()}

        def rel(x, y):
            return float((x - y).abs().max() / y.abs().max().clamp_min(1e-30))

        l_dense, dense = grads(lambda: loss_eager(model))
        all_kept = mask_indices(torch.ones(G * G, dtype=torch.bool))
        l_sbp1, sbp1 = grads(lambda: loss_sbp(all_kept))
        _, ckpt = grads(loss_checkpoint)
        keep_patch = grid_keep_masks(G, a.keep, torch)[0] if a.mask == "grid" else None
        if keep_patch is None:
            keep_patch = torch.ones(G * G, dtype=torch.bool)
            keep_patch[torch.randperm(G * G)[:int((1 - a.keep) * G * G)]] = False
        mask = mask_indices(keep_patch)
        row_keep = torch.zeros(N, dtype=torch.bool)
        row_keep[mask[0].cpu()] = True
        row_keep = row_keep.to(device)
        _, where1 = grads(lambda: loss_where(torch.ones(N, dtype=torch.bool, device=device)))
        l_gather, gather = grads(lambda: loss_sbp(mask))
        l_where, where = grads(lambda: loss_where(row_keep))
        first = min(sbp_blocks)
        # embeddings and the blocks up to the first SBP block (not the final norm / head)
        below = [n for n in names if not n.startswith(("norm.", "fc_norm.", "head."))
                 and (not n.startswith("blocks.") or int(n.split(".")[1]) <= first)]
        res = {
            "where_vs_gather": max(rel(where[n], gather[n]) for n in names),
            "keep1_gather_vs_dense": max(rel(sbp1[n], dense[n]) for n in names),
            "keep1_where_vs_dense": max(rel(where1[n], dense[n]) for n in names),
            "keep1_loss_diff": abs(l_sbp1 - l_dense),
            "checkpoint_vs_dense": max(rel(ckpt[n], dense[n]) for n in names),
            "sbp_vs_dense_min_below": min(rel(gather[n], dense[n]) for n in below),
            "sbp_loss": l_gather,
            "dense_loss": l_dense,
            "kept_tokens": int(mask[0].numel()),
            "tokens": N,
        }
        tol = 1e-4
        ok = (res["where_vs_gather"] < tol and res["keep1_gather_vs_dense"] < tol
              and res["keep1_where_vs_dense"] < tol
              and res["keep1_loss_diff"] < tol and res["checkpoint_vs_dense"] < tol
              and (a.keep >= 1.0 or res["sbp_vs_dense_min_below"] > 1e-3)
              and abs(l_where - l_gather) < tol)
        res.update(ok=ok, model=name, tool="torch_vit.py --selfcheck", device=str(device),
                   sbp_attn=f"drop_{a.sbp_attn}", keep=a.keep, sbp_blocks=sbp_blocks,
                   torch_version=torch.__version__, timm_version=timm.__version__)
        print(json.dumps(res), flush=True)
        if not ok:
            raise SystemExit("torch_vit.py --selfcheck: gradients disagree (see the JSON line)")
        return

    fwd = model
    if a.mode == "compile":
        fwd = torch.compile(model, mode=a.compile_mode) if a.compile_mode else torch.compile(model)

    autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16)
                if a.precision == "bf16" else None)

    def compute_loss():
        if a.mode == "sbp":
            return loss_sbp(sample_mask())
        if a.mode == "checkpoint":
            return loss_checkpoint()
        return loss_eager(fwd)

    def train_step():
        opt.zero_grad(set_to_none=True)
        if autocast is not None:
            with autocast:
                loss = compute_loss()
        else:
            loss = compute_loss()
        loss.backward()
        opt.step()
        return loss.item()

    times, losses, first_step_ms, warmup_ms, mem_peak = time_steps(torch, train_step, a.warmup, a.steps, device)

    B = a.batch
    # Non-default settings go into the mode as "mode[...]" (make_table.py sorts on the part before
    # the bracket), so that variants get rows of their own.
    tags = []
    if a.mode == "compile" and a.compile_mode:
        tags.append(a.compile_mode)
    if a.mode == "sbp":
        if a.sbp_attn != "qkv":
            tags.append(f"drop_{a.sbp_attn}")
        if a.mask != "grid":
            tags.append(a.mask)
        if a.keep != 0.5:
            tags.append(f"keep {a.keep:g}")
        if sbp_blocks != parse_blocks(None, depth):
            tags.append(f"blocks {sbp_blocks[0]}:{sbp_blocks[-1] + 1}")
    variant = f"[{', '.join(tags)}]" if tags else ""
    is_sbp = a.mode == "sbp"
    out = {
        "tool": "torch_vit.py",
        "framework": "pytorch",
        "model": name,
        "mode": a.mode + variant,
        "target": device.type,
        "precision": a.precision,
        "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch_version": torch.__version__,
        "timm_version": timm.__version__,
        "timm_model": a.model,
        "img": a.img,
        "tokens": N,
        "batch": B,
        "steps": a.steps,
        "warmup": a.warmup,
        **timing_fields(times, B, warmup_ms, first_step_ms),
        "input_bytes": input_bytes,
        "param_elements": sum(p.numel() for p in model.parameters()),
        "optimizer": "AdamW(fused)" if cuda else "AdamW",
        "keep_ratios": [a.keep] if is_sbp else [],
        "sbp_blocks": sbp_blocks if is_sbp else [],
        "sbp_attn": f"drop_{a.sbp_attn}" if is_sbp else None,
        "mask": a.mask if is_sbp else None,
        "first_loss": losses[0],
        "last_loss": losses[-1],
    }
    out.update(memory_fields(torch, device, mem_base, mem_peak, mem_total, rss_base))
    if fwd is not model:
        try:  # internal counter; a number above 1 means recompiles
            from torch._dynamo.utils import counters
            out["dynamo_unique_graphs"] = int(counters["stats"]["unique_graphs"])
        except Exception:
            pass
    print(json.dumps(out), flush=True)
    peak = out["peak_mem_bytes"]
    print(f"torch_vit.py: {name} {out['mode']} {a.precision} ({device}): median {out['median_ms']:.3f} ms, "
          f"{out['img_per_s']:.1f} img/s, p10 {out['p10_ms']:.3f} p90 {out['p90_ms']:.3f} ms, "
          f"peak {peak / 2**20 if peak is not None else float('nan'):.1f} MiB", file=sys.stderr)


if __name__ == "__main__":
    main()
