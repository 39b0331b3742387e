#!/usr/bin/env python3
"""Reference gradients for test/numerics/Inputs/vit_small.mlir, from PyTorch autograd.

Run on a machine with PyTorch, timm and the `safetensors` package (CPU-only torch is enough):

    python3 test/numerics/make_vit_fixtures.py --out test/numerics/fixtures/vit_small

Writes params.safetensors, batch.safetensors, keep.txt, keep_head.txt, keep_head_perblock.txt,
grads_full.safetensors, grads_sbp_qkv.safetensors, grads_sbp_query.safetensors,
grads_sbp_head.safetensors and grads_sbp_head_perblock.safetensors into --out
(see test/numerics/README.md). The parameters and the batch are drawn in float32 from a fixed seed
and stored as they are; the reference math runs in float64 on the CPU from those float32 values,
and the gradients are rounded to float32 only for storage, so the fixtures carry no float32 error
of their own.

The model is timm's VisionTransformer(img_size=16, patch_size=4, in_chans=3, num_classes=10,
embed_dim=24, depth=2, num_heads=3, mlp_ratio=2.0, qkv_bias=True, class_token=True,
global_pool='token', LayerNorm eps 1e-6), no dropout or drop-path:
  images [4,3,16,16] -> Conv2d(3, 24, 4, stride 4) patch embedding -> 16 tokens (4x4 grid, t = i*4 + j)
  -> [class token; tokens] + pos_embed: 17 tokens (token 0 is the class token)
  -> 2 pre-norm blocks: x = x + proj(attn(qkv(norm1(x)))); x = x + fc2(gelu(fc1(norm2(x))))
     (3 heads of 8, scale 8^-0.5, exact-erf GELU, hidden 48)
  -> final LayerNorm -> class token -> head -> mean cross-entropy over the batch.
grads_full comes from timm's module itself; the SBP references from a separate functional model
written from the semantics (ARCHITECTURE.md "SBP semantics", amazon-science/stochastic-backpropagation
models/vit_sbp.py), checked against timm with every token and head kept.

SBP: both blocks, both branches, one token mask shared by all four regions (grid mask, keep 0.5,
start 1 on the 4x4 grid; the class token always kept). MLP branch: kept rows with gradient,
dropped rows without. Attention branch: norm1, qkv and proj are ordinary (all tokens, with
gradient); only the attention map softmax(q k^T * scale) v changes:
  drop_qkv   kept queries attend over the kept keys/values with gradient; dropped queries attend
             over all keys without gradient (the forward changes);
  drop_query kept queries attend over all keys with gradient, dropped ones without (forward exact);
  drop_head  heads 0 and 2 with gradient, head 1 without (forward exact); the MLP branches still
             use the token mask. Per block (vit_sbp.py draws each block's heads anew): block 0
             keeps heads 0 and 2, block 1 keeps head 1 only (grads_sbp_head_perblock).
"""

import argparse
import os
import sys
from functools import partial

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from safetensors.torch import save_file
    import timm
    from timm.models.vision_transformer import VisionTransformer
except ImportError as e:  # Keep the failure readable on a machine without the deps.
    sys.exit(f"make_vit_fixtures.py needs torch, timm and safetensors: {e}")

BATCH = 4
CHANNELS = 3
IMAGE = 16
PATCH = 4
GRID = IMAGE // PATCH  # 4x4 patch grid
PATCHES = GRID * GRID  # 16
TOKENS = PATCHES + 1  # class token first
PATCH_DIM = CHANNELS * PATCH * PATCH  # 48
DIM = 24
HEADS = 3
HEAD_DIM = DIM // HEADS  # 8
HIDDEN = 48  # mlp_ratio 2.0
CLASSES = 10
DEPTH = 2
LN_EPS = 1e-6

# SBP token mask: grid, keep ratio 0.5 (stride 2), start 1: keep grid positions with
# (i + j) % 2 == 1, i.e. grid indices 1 3 4 6 9 11 12 14; token = grid index + 1; class token 0 kept.
KEEP_RATIO = 0.5
GRID_START = 1
KEEP_GRID = [1, 3, 4, 6, 9, 11, 12, 14]
KEEP_TOKENS = [0, 2, 4, 5, 7, 10, 12, 13, 15]
KEEP_HEADS = [0, 2]  # drop_head: heads on the gradient path, the same in both blocks
KEEP_HEADS_PER_BLOCK = [[0, 2], [1]]  # drop_head drawn per block: block 0, block 1
MODES = ("qkv", "query", "head")
# The heads groups sbpc makes of the model's one heads group @h: one per block (sbp-insert-masks).
HEAD_GROUPS = [f"h.blocks.{k}.attn" for k in range(DEPTH)]

# The SBP gradients of every parameter below the final norm must differ from the full ones by at
# least this (relative to the tensor's largest magnitude), so that comparing an SBP dump against
# grads_full (or one SBP mode against another) fails by a wide margin at rtol 1e-4.
MIN_SBP_DIFFERENCE = 1e-2
# float64 agreement required between two formulations of the same math.
TIGHT = 1e-12


def param_shapes():
    """Parameter names and shapes, in timm's state_dict order."""
    shapes = [
        ("cls_token", (1, 1, DIM)),
        ("pos_embed", (1, TOKENS, DIM)),
        ("patch_embed.proj.weight", (DIM, CHANNELS, PATCH, PATCH)),
        ("patch_embed.proj.bias", (DIM,)),
    ]
    for k in range(DEPTH):
        b = f"blocks.{k}"
        shapes += [
            (f"{b}.norm1.weight", (DIM,)),
            (f"{b}.norm1.bias", (DIM,)),
            (f"{b}.attn.qkv.weight", (3 * DIM, DIM)),
            (f"{b}.attn.qkv.bias", (3 * DIM,)),
            (f"{b}.attn.proj.weight", (DIM, DIM)),
            (f"{b}.attn.proj.bias", (DIM,)),
            (f"{b}.norm2.weight", (DIM,)),
            (f"{b}.norm2.bias", (DIM,)),
            (f"{b}.mlp.fc1.weight", (HIDDEN, DIM)),
            (f"{b}.mlp.fc1.bias", (HIDDEN,)),
            (f"{b}.mlp.fc2.weight", (DIM, HIDDEN)),
            (f"{b}.mlp.fc2.bias", (DIM,)),
        ]
    shapes += [
        ("norm.weight", (DIM,)),
        ("norm.bias", (DIM,)),
        ("head.weight", (CLASSES, DIM)),
        ("head.bias", (CLASSES,)),
    ]
    return shapes


def draw_params(gen, scale=1.0):
    """float32 parameters with non-trivial values (timm's init, std 0.02, would leave the
    attention maps nearly uniform and every gradient term but a few negligible). `scale`
    multiplies every standard deviation: 1 for the fp32 fixtures (sharp attention maps that
    expose any semantic slip), smaller for the bf16 ones, where sharp maps amplify rounding
    until even PyTorch's own bf16 autocast is at the 2e-2 tolerance."""
    params = {}
    for name, shape in param_shapes():
        noise = scale * torch.randn(shape, generator=gen, dtype=torch.float32)
        if name == "cls_token":
            params[name] = 0.5 * noise
        elif name == "pos_embed":
            params[name] = 0.3 * noise
        elif "norm" in name and name.endswith(".weight"):
            params[name] = 1.0 + 0.1 * noise
        elif name.endswith(".bias"):
            params[name] = 0.1 * noise
        else:  # matrices: logits q.k * scale have a standard deviation of about 24 * 0.25^2 = 1.5
            params[name] = 0.25 * noise
    return params


def draw_batch(gen):
    images = torch.randn((BATCH, CHANNELS, IMAGE, IMAGE), generator=gen, dtype=torch.float32)
    labels = torch.randint(0, CLASSES, (BATCH,), generator=gen, dtype=torch.int32)
    if bool((labels == labels[0]).all()):
        sys.exit("labels drawn all equal; pick another --seed")
    return images, labels


def grid_keep_tokens():
    """The fixed SBP token mask, derived from the rule (ARCHITECTURE.md, "Masks")."""
    stride = round(1 / KEEP_RATIO)
    kept = [i * GRID + j for i in range(GRID) for j in range(GRID) if (i + j) % stride == GRID_START]
    assert kept == KEEP_GRID, kept
    tokens = [0] + [g + 1 for g in kept]  # the class token is always kept
    assert tokens == KEEP_TOKENS, tokens
    return tokens


def make_timm_model():
    return VisionTransformer(
        img_size=IMAGE, patch_size=PATCH, in_chans=CHANNELS, num_classes=CLASSES, embed_dim=DIM,
        depth=DEPTH, num_heads=HEADS, mlp_ratio=HIDDEN / DIM, qkv_bias=True, class_token=True,
        global_pool="token", norm_layer=partial(nn.LayerNorm, eps=LN_EPS), act_layer=nn.GELU,
        drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0)


def timm_loss_and_grads(params32, images32, labels):
    """Plain backprop through timm's VisionTransformer in float64."""
    model = make_timm_model()
    sd = model.state_dict()
    expected = dict(param_shapes())
    if set(sd) != set(expected):
        sys.exit(f"timm {timm.__version__} state_dict names differ from the fixture's: "
                 f"{sorted(set(sd) ^ set(expected))}")
    for n, t in sd.items():
        if tuple(t.shape) != expected[n]:
            sys.exit(f"timm's {n} is {tuple(t.shape)}, the fixture's {expected[n]}")
    model.load_state_dict(params32, strict=True)
    model = model.double().train()
    images = images32.to(torch.float64)
    loss = F.cross_entropy(model(images), labels.long())
    named = dict(model.named_parameters())
    names = [n for n, _ in param_shapes()]
    grads = torch.autograd.grad(loss, [named[n] for n in names])
    return loss.detach(), dict(zip(names, grads))


# --- the independent SBP reference -------------------------------------------------------------

class Sbp:
    """One SBP configuration: mode in MODES, keep token indices (into the 17 tokens), kept heads:
    one list for every block, or one list per block (drop_head drawn per block, as vit_sbp.py).
    formulation 'gather' runs kept and dropped rows separately (vit_sbp.py's way);
    'where' runs everything once and detaches the dropped part (a second, independent check)."""

    def __init__(self, mode, keep_tokens, keep_heads, formulation="gather"):
        assert mode in MODES and formulation in ("gather", "where")
        self.mode = mode
        self.formulation = formulation
        self.keep = torch.tensor(sorted(keep_tokens), dtype=torch.long)
        self.drop = torch.tensor([t for t in range(TOKENS) if t not in keep_tokens], dtype=torch.long)
        self.row_keep = torch.zeros(TOKENS, dtype=torch.bool)
        self.row_keep[self.keep] = True
        per_block = keep_heads and isinstance(keep_heads[0], (list, tuple))
        self.keep_heads = [list(h) for h in keep_heads] if per_block else [list(keep_heads)] * DEPTH
        assert len(self.keep_heads) == DEPTH
        self.set_block(0)

    def set_block(self, k):
        """Selects block k's heads (the token mask is the same in every block)."""
        heads = self.keep_heads[k]
        self.heads_keep = torch.tensor(sorted(heads), dtype=torch.long)
        self.heads_drop = torch.tensor([h for h in range(HEADS) if h not in heads], dtype=torch.long)
        self.head_keep = torch.zeros(HEADS, dtype=torch.bool)
        self.head_keep[self.heads_keep] = True
        return self


def attention_map(q, k, v, key_mask=None):
    """softmax(q k^T * scale) v over the last two dims; key_mask [N] bool excludes keys."""
    s = (q @ k.transpose(-2, -1)) * HEAD_DIM ** -0.5
    if key_mask is not None:
        s = s.masked_fill(~key_mask, float("-inf"))
    return s.softmax(dim=-1) @ v


def sbp_attention_map(q, k, v, sbp):
    """q, k, v [B, heads, N, Dh] -> [B, heads, N, Dh] under the SBP mode."""
    if sbp is None:
        return attention_map(q, k, v)
    keep, drop = sbp.keep, sbp.drop
    if sbp.formulation == "where":
        if sbp.mode == "head":
            o = attention_map(q, k, v)
            return torch.where(sbp.head_keep.view(1, HEADS, 1, 1), o, o.detach())
        with torch.no_grad():
            full = attention_map(q, k, v)
        if sbp.mode == "qkv":  # kept queries over the kept keys only
            o = attention_map(q, k, v, key_mask=sbp.row_keep)
        else:
            o = attention_map(q, k, v)
        return torch.where(sbp.row_keep.view(1, 1, TOKENS, 1), o, full)
    # 'gather': index kept and dropped rows (or heads) apart, then scatter them back.
    out = torch.zeros_like(q)
    if sbp.mode == "head":
        if len(sbp.heads_keep):
            hk = sbp.heads_keep
            out[:, hk] = attention_map(q[:, hk], k[:, hk], v[:, hk])
        if len(sbp.heads_drop):
            with torch.no_grad():
                hd = sbp.heads_drop
                out[:, hd] = attention_map(q[:, hd], k[:, hd], v[:, hd])
        return out
    if sbp.mode == "qkv":
        out[:, :, keep] = attention_map(q[:, :, keep], k[:, :, keep], v[:, :, keep])
    else:
        out[:, :, keep] = attention_map(q[:, :, keep], k, v)
    if len(drop):
        with torch.no_grad():
            out[:, :, drop] = attention_map(q[:, :, drop], k, v)
    return out


def sbp_mlp(x, p, b, sbp):
    """The MLP branch mlp(norm2(x)) [B, N, D]; token-wise, so SBP only withholds gradient."""
    def branch(h):
        h = F.layer_norm(h, (DIM,), p[f"{b}.norm2.weight"], p[f"{b}.norm2.bias"], LN_EPS)
        h = F.gelu(F.linear(h, p[f"{b}.mlp.fc1.weight"], p[f"{b}.mlp.fc1.bias"]))  # exact (erf)
        return F.linear(h, p[f"{b}.mlp.fc2.weight"], p[f"{b}.mlp.fc2.bias"])

    if sbp is None:
        return branch(x)
    if sbp.formulation == "where":
        y = branch(x)
        return torch.where(sbp.row_keep.view(1, TOKENS, 1), y, y.detach())
    out = torch.zeros_like(x)
    out[:, sbp.keep] = branch(x[:, sbp.keep])
    if len(sbp.drop):
        with torch.no_grad():
            out[:, sbp.drop] = branch(x[:, sbp.drop])
    return out


def forward(p, images, labels, sbp=None, trace=None):
    """Mean cross-entropy loss of the ViT; trace collects each block's attention-map output."""
    bsz = images.shape[0]
    # Conv2d(C, D, P, stride P) as patchify + linear: token t = i*G + j, feature c*P*P + py*P + px.
    tok = images.reshape(bsz, CHANNELS, GRID, PATCH, GRID, PATCH).permute(0, 2, 4, 1, 3, 5)
    tok = tok.reshape(bsz, PATCHES, PATCH_DIM)
    x = F.linear(tok, p["patch_embed.proj.weight"].reshape(DIM, PATCH_DIM), p["patch_embed.proj.bias"])
    x = torch.cat([p["cls_token"].expand(bsz, 1, DIM), x], dim=1) + p["pos_embed"]
    for k in range(DEPTH):
        b = f"blocks.{k}"
        h = F.layer_norm(x, (DIM,), p[f"{b}.norm1.weight"], p[f"{b}.norm1.bias"], LN_EPS)
        qkv = F.linear(h, p[f"{b}.attn.qkv.weight"], p[f"{b}.attn.qkv.bias"])
        # [B, N, 3*D] -> 3 x [B, heads, N, Dh]; qkv rows: q (heads x Dh), then k, then v.
        q, kk, v = qkv.reshape(bsz, TOKENS, 3, HEADS, HEAD_DIM).permute(2, 0, 3, 1, 4)
        o = sbp_attention_map(q, kk, v, sbp.set_block(k) if sbp is not None else None)
        if trace is not None:
            trace.append(o.detach())
        o = o.transpose(1, 2).reshape(bsz, TOKENS, DIM)
        x = x + F.linear(o, p[f"{b}.attn.proj.weight"], p[f"{b}.attn.proj.bias"])
        x = x + sbp_mlp(x, p, b, sbp)
    x = F.layer_norm(x, (DIM,), p["norm.weight"], p["norm.bias"], LN_EPS)
    logits = F.linear(x[:, 0], p["head.weight"], p["head.bias"])
    return F.cross_entropy(logits, labels.long())


def loss_and_grads(params32, images32, labels, sbp=None, trace=None):
    """float64 autograd from the float32 values; returns (loss, {name: grad}) in float64."""
    p = {n: t.to(torch.float64).requires_grad_(True) for n, t in params32.items()}
    loss = forward(p, images32.to(torch.float64), labels, sbp, trace)
    names = [n for n, _ in param_shapes()]
    grads = torch.autograd.grad(loss, [p[n] for n in names])
    return loss.detach(), dict(zip(names, grads))


def unchanged_by(mode):
    """Parameters whose SBP gradient equals the full one in this mode (float64 rounding aside).

    With the head on the class token, only row 0 of the last block's output reaches the loss,
    and the class token is always kept. When the forward is exact (drop_query, drop_head), the
    last block therefore sees the full gradient at every row that matters: its MLP branch and
    attention output projection (row 0 only), and with drop_query also norm1 and qkv (query 0
    attends over all keys with gradient, as in plain backprop); drop_head withholds head 1 there,
    so norm1 and qkv change. The final norm and head see the same forward. drop_qkv changes the
    forward, and with it every gradient. Everything not listed must change by MIN_SBP_DIFFERENCE.
    """
    if mode == "qkv":
        return set()
    last = f"blocks.{DEPTH - 1}."
    names = {n for n, _ in param_shapes()}
    same = {n for n in names if n.startswith("norm.") or n.startswith("head.")}
    same |= {n for n in names if n.startswith(last) and not n.startswith((last + "norm1.", last + "attn.qkv."))}
    if mode == "query":
        same |= {n for n in names if n.startswith(last)}
    return same


def rel_diff(a, b):
    """max|a - b| / max|b|, the definition compare_safetensors.py uses."""
    return float((a - b).abs().max() / b.abs().max())


def max_rel(ga, gb):
    return max(rel_diff(ga[n], gb[n]) for n in gb)


def atomic_write_bytes(path, data):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_save_safetensors(path, tensors, provenance):
    tmp = f"{path}.tmp{os.getpid()}"
    save_file({n: t.contiguous() for n, t in tensors.items()}, tmp, metadata={"provenance": provenance})
    os.chmod(tmp, 0o644)  # safetensors creates its files 0600
    os.replace(tmp, path)


def fail(msg):
    sys.exit(f"make_vit_fixtures.py: check failed, nothing written: {msg}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="fixture directory to write")
    ap.add_argument("--seed", type=int, default=20240601, help="torch seed for params and batch")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiplies the parameters' standard deviations (0.4 for the bf16 fixtures)")
    args = ap.parse_args()

    torch.use_deterministic_algorithms(True)
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    params = draw_params(gen, args.scale)
    images, labels = draw_batch(gen)
    keep = grid_keep_tokens()
    all_tokens, all_heads = list(range(TOKENS)), list(range(HEADS))

    # 1. Plain backprop through timm's own module; our functional model must reproduce it.
    loss_full, grads_full = timm_loss_and_grads(params, images, labels)
    for n, g in grads_full.items():
        if not float(g.abs().max()) > 0.0:
            fail(f"gradient of {n} is zero")
    loss_ours, grads_ours = loss_and_grads(params, images, labels)
    checks = []  # (what, value, bound, ok)

    def check(what, value, ok, bound):
        checks.append((what, value, bound, ok))

    d = abs(float(loss_ours - loss_full))
    check("functional model vs timm: loss |diff|", d, d <= TIGHT, f"<= {TIGHT:g}")
    d = max_rel(grads_ours, grads_full)
    check("functional model vs timm: max grad rel", d, d <= TIGHT, f"<= {TIGHT:g}")

    # 2. Every SBP mode with everything kept is plain backprop (both formulations).
    for mode in MODES:
        for form in ("gather", "where"):
            l1, g1 = loss_and_grads(params, images, labels, Sbp(mode, all_tokens, all_heads, form))
            d = max(max_rel(g1, grads_full), abs(float(l1 - loss_full)))
            check(f"drop_{mode} ({form}) keep all vs timm: max rel", d, d <= TIGHT, f"<= {TIGHT:g}")

    # 3. The SBP references at the fixed masks, and a second formulation of each.
    results = {}
    trace_full = []
    loss_and_grads(params, images, labels, trace=trace_full)
    for mode in MODES:
        trace = []
        sbp = Sbp(mode, keep, KEEP_HEADS if mode == "head" else all_heads)
        loss_m, grads_m = loss_and_grads(params, images, labels, sbp, trace)
        loss_w, grads_w = loss_and_grads(params, images, labels,
                                         Sbp(mode, keep, sbp.heads_keep.tolist(), "where"))
        d = max(max_rel(grads_w, grads_m), abs(float(loss_w - loss_m)))
        check(f"drop_{mode}: gather vs where formulation, max rel", d, d <= TIGHT, f"<= {TIGHT:g}")
        d = abs(float(loss_m - loss_full))
        if mode == "qkv":
            check("drop_qkv: loss differs from full", d, d >= 1e-3, ">= 1e-3")
            # Block 0 sees the full input: its attention map is the full one at dropped rows ...
            drop_rows = sbp.drop
            dd = float((trace[0][:, :, drop_rows] - trace_full[0][:, :, drop_rows]).abs().max())
            check("drop_qkv: block 0 attention map at dropped rows vs full, max |diff|", dd,
                  dd <= TIGHT, f"<= {TIGHT:g}")
            # ... and the restricted one at kept rows.
            dk = rel_diff(trace[0][:, :, sbp.keep], trace_full[0][:, :, sbp.keep])
            check("drop_qkv: block 0 attention map at kept rows vs full, rel", dk, dk >= 1e-2, ">= 1e-2")
        else:
            check(f"drop_{mode}: loss equals full, |diff|", d, d <= TIGHT, f"<= {TIGHT:g}")
            for blk in range(DEPTH):
                dd = float((trace[blk] - trace_full[blk]).abs().max())
                check(f"drop_{mode}: block {blk} attention map vs full, max |diff|", dd,
                      dd <= TIGHT, f"<= {TIGHT:g}")
        for n in grads_m:
            d = rel_diff(grads_m[n], grads_full[n])
            if n in unchanged_by(mode):
                if d > TIGHT:
                    fail(f"drop_{mode} changes {n} by {d:.3g}, expected unchanged (see unchanged_by)")
            elif d < MIN_SBP_DIFFERENCE:
                fail(f"drop_{mode} changes {n} by only {d:.3g} (< {MIN_SBP_DIFFERENCE}); pick another --seed")
        results[mode] = (loss_m, grads_m)
    # The three modes must also be told apart by the fixtures, wherever they change anything.
    for a_, b_ in (("qkv", "query"), ("qkv", "head"), ("query", "head")):
        names = [n for n in grads_full if n not in unchanged_by(a_) | unchanged_by(b_)]
        d = min(rel_diff(results[a_][1][n], results[b_][1][n]) for n in names)
        check(f"drop_{a_} vs drop_{b_}: min grad rel where both change ({len(names)} tensors)", d,
              d >= MIN_SBP_DIFFERENCE, f">= {MIN_SBP_DIFFERENCE:g}")

    # 4. drop_head drawn per block (vit_sbp.py draws each block's heads anew): block 0 keeps
    # heads 0 and 2, block 1 head 1 only. Per-block lists equal to the shared one give the shared
    # result; the per-block result differs from it wherever block 1's heads can matter.
    sbp_pb = Sbp("head", keep, KEEP_HEADS_PER_BLOCK)
    loss_pb, grads_pb = loss_and_grads(params, images, labels, sbp_pb)
    loss_w, grads_w = loss_and_grads(params, images, labels, Sbp("head", keep, KEEP_HEADS_PER_BLOCK, "where"))
    d = max(max_rel(grads_w, grads_pb), abs(float(loss_w - loss_pb)))
    check("drop_head per block: gather vs where formulation, max rel", d, d <= TIGHT, f"<= {TIGHT:g}")
    l_same, g_same = loss_and_grads(params, images, labels, Sbp("head", keep, [KEEP_HEADS] * DEPTH))
    d = max(max_rel(g_same, results["head"][1]), abs(float(l_same - results["head"][0])))
    check("drop_head per block with the shared heads vs shared, max rel", d, d <= TIGHT, f"<= {TIGHT:g}")
    d = abs(float(loss_pb - loss_full))
    check("drop_head per block: loss equals full, |diff|", d, d <= TIGHT, f"<= {TIGHT:g}")
    for n in grads_pb:
        d_full = rel_diff(grads_pb[n], grads_full[n])
        d_shared = rel_diff(grads_pb[n], results["head"][1][n])
        if n in unchanged_by("head"):
            if max(d_full, d_shared) > TIGHT:
                fail(f"drop_head per block changes {n} by {max(d_full, d_shared):.3g}, expected unchanged")
        elif min(d_full, d_shared) < MIN_SBP_DIFFERENCE:
            fail(f"drop_head per block changes {n} by only {min(d_full, d_shared):.3g} against full or "
                 f"shared heads (< {MIN_SBP_DIFFERENCE}); pick another --seed")
    results["head_perblock"] = (loss_pb, grads_pb)

    print(f"seed {args.seed}, torch {torch.__version__}, timm {timm.__version__}")
    width = max(len(c[0]) for c in checks)
    for what, value, bound, ok in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {what:<{width}} {value:10.3g}  (need {bound})")
    bad = [c[0] for c in checks if not c[3]]
    if bad:
        fail("; ".join(bad))

    # One metadata key: safetensors writes the metadata map in no fixed order, and regenerating
    # the fixtures unchanged should leave the files byte-identical.
    scale_flag = f" --scale {args.scale:g}" if args.scale != 1.0 else ""
    provenance = (f"test/numerics/make_vit_fixtures.py --seed {args.seed}{scale_flag}, torch {torch.__version__}, "
                  f"timm {timm.__version__}")
    keep_str = " ".join(map(str, keep))

    def as_f32(grads, loss):
        out = {n: g.to(torch.float32) for n, g in grads.items()}
        out["loss"] = loss.reshape(1).to(torch.float32)
        return out

    os.makedirs(args.out, exist_ok=True)
    out = lambda name: os.path.join(args.out, name)
    atomic_save_safetensors(out("params.safetensors"), params, provenance)
    atomic_save_safetensors(out("batch.safetensors"), {"images": images, "labels": labels}, provenance)
    atomic_save_safetensors(out("grads_full.safetensors"), as_f32(grads_full, loss_full),
                            f"{provenance}; timm VisionTransformer, keep 1.0")
    for mode in MODES:
        loss_m, grads_m = results[mode]
        what = f"drop_{mode}, both blocks, attention and MLP branches, keep tokens {keep_str}"
        if mode == "head":
            what += f", attention heads kept {' '.join(map(str, KEEP_HEADS))}"
        atomic_save_safetensors(out(f"grads_sbp_{mode}.safetensors"), as_f32(grads_m, loss_m),
                                f"{provenance}; {what}")
    loss_pb, grads_pb = results["head_perblock"]
    heads_str = lambda hs: " ".join(map(str, hs)) or "-"
    atomic_save_safetensors(out("grads_sbp_head_perblock.safetensors"), as_f32(grads_pb, loss_pb),
                            f"{provenance}; drop_head, both blocks, attention and MLP branches, keep tokens "
                            f"{keep_str}, attention heads kept per block: " +
                            "; ".join(f"block {k}: {heads_str(h)}" for k, h in enumerate(KEEP_HEADS_PER_BLOCK)))
    comment = (f"# SBP keep indices into the {TOKENS} tokens (token 0 = class token, always kept; "
               f"token 1 + i*{GRID} + j = patch (i, j)): grid mask on the {GRID}x{GRID} patch grid, "
               f"keep {KEEP_RATIO}, start {GRID_START}, i.e. patches with (i + j) % 2 == {GRID_START}")
    atomic_write_bytes(out("keep.txt"), f"{comment}\n{keep_str}\n".encode())
    # drop_head models: the token group @m, then one heads group per block (sbpc draws the heads of
    # each block apart), each line naming its group.
    for name, heads in (("keep_head.txt", [KEEP_HEADS] * DEPTH), ("keep_head_perblock.txt", KEEP_HEADS_PER_BLOCK)):
        lines = [f"m: {keep_str}"] + [f"{g}: {heads_str(h)}" for g, h in zip(HEAD_GROUPS, heads)]
        atomic_write_bytes(out(name), (
            f"{comment}; then the attention heads (of {HEADS}) kept by drop_head in each block\n" +
            "\n".join(lines) + "\n").encode())

    print(f"written to {args.out}")
    print(f"labels {labels.tolist()}, keep tokens {keep}, keep heads {KEEP_HEADS}")
    print(f"loss full {float(loss_full):.9f}, " +
          ", ".join(f"drop_{m} {float(results[m][0]):.9f}" for m in MODES))
    print(f"{'parameter':<26} {'|grad| full':>12} {'qkv vs full':>12} {'query vs full':>14} "
          f"{'head vs full':>13} {'per-block vs head':>18}")
    for n in grads_full:
        print(f"{n:<26} {float(grads_full[n].norm()):12.6g} "
              f"{rel_diff(results['qkv'][1][n], grads_full[n]):12.3g} "
              f"{rel_diff(results['query'][1][n], grads_full[n]):14.3g} "
              f"{rel_diff(results['head'][1][n], grads_full[n]):13.3g} "
              f"{rel_diff(results['head_perblock'][1][n], results['head'][1][n]):18.3g}")


if __name__ == "__main__":
    main()
