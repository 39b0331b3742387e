#!/usr/bin/env python3
"""Reference gradients for test/numerics/Inputs/convnext_small*.mlir, from PyTorch autograd.

Run on a machine with PyTorch, timm and the `safetensors` package (CPU-only torch is enough):

    python3 test/numerics/make_convnext_fixtures.py --out test/numerics/fixtures/convnext_small

Writes params.safetensors, batch.safetensors, keep.txt, grads_full.safetensors and
grads_sbp.safetensors into --out (see test/numerics/README.md). As make_vit_fixtures.py: the
parameters and the batch are drawn in float32 from a fixed seed and stored as they are; the
reference math runs in float64 from those values; gradients are rounded to float32 for storage.

The model is timm's ConvNeXt(in_chans=3, num_classes=10, depths=(2, 2), dims=(16, 32),
patch_size=4, LayerNorm eps 1e-6, no drop_path) (timm builds 4 stages: the model is built with two
extra ones that are then removed, see make_timm_model):
  images [4,3,32,32] -> stem: Conv2d(3, 16, 4, stride 4) + LayerNorm2d -> 8x8 grid
  -> stage 0: 2 ConvNeXtBlocks: x + gamma * fc2(gelu(fc1(norm(conv_dw(x))))) (7x7 depth-wise, pad 3)
  -> stage 1: downsample LayerNorm2d + Conv2d(16, 32, 2, stride 2) -> 4x4 grid; 2 blocks
  -> global average pool -> head.norm (LayerNorm) -> head.fc -> mean cross-entropy.
grads_full comes from timm's module itself. grads_sbp from a separate functional model written
from the semantics (ARCHITECTURE.md "SBP semantics", convnext_sbp.py): the MLP branch of every
block (norm .. gamma, after the depth-wise conv) and stage 1's downsampling reduction (the 2x2
conv after its LayerNorm) are SBP regions; their output rows at dropped grid positions are
computed but carry no gradient into the region. Masks: grid masks, keep 0.5, start 1 on each
stage's grid (@s0 on 8x8 for stage 0, @s1 on 4x4 for the downsampling and stage 1). The
functional model is first checked against timm with every position kept.
"""

import argparse
import os
import sys

try:
    import torch
    import torch.nn.functional as F
    from safetensors.torch import save_file
    import timm
    from timm.models.convnext import ConvNeXt
except ImportError as e:  # Keep the failure readable on a machine without the deps.
    sys.exit(f"make_convnext_fixtures.py needs torch, timm and safetensors: {e}")

BATCH = 4
CHANNELS = 3
IMAGE = 32
PATCH = 4
DIMS = (16, 32)
DEPTHS = (2, 2)
GRIDS = (IMAGE // PATCH, IMAGE // PATCH // 2)  # 8x8, then 4x4
KERNEL = 7
CLASSES = 10
EPS = 1e-6
KEEP_RATIO = 0.5
GRID_START = 1
GROUPS = ("s0", "s1")  # the model's mask group of each stage
MIN_SBP_DIFFERENCE = 1e-2
TIGHT = 1e-12


def param_shapes():
    """Parameter names and shapes, in timm's state_dict order."""
    shapes = [("stem.0.weight", (DIMS[0], CHANNELS, PATCH, PATCH)), ("stem.0.bias", (DIMS[0],)),
              ("stem.1.weight", (DIMS[0],)), ("stem.1.bias", (DIMS[0],))]
    for s, (dim, depth) in enumerate(zip(DIMS, DEPTHS)):
        if s > 0:
            d = f"stages.{s}.downsample"
            shapes += [(f"{d}.0.weight", (DIMS[s - 1],)), (f"{d}.0.bias", (DIMS[s - 1],)),
                       (f"{d}.1.weight", (dim, DIMS[s - 1], 2, 2)), (f"{d}.1.bias", (dim,))]
        for k in range(depth):
            b = f"stages.{s}.blocks.{k}"
            shapes += [(f"{b}.gamma", (dim,)), (f"{b}.conv_dw.weight", (dim, 1, KERNEL, KERNEL)),
                       (f"{b}.conv_dw.bias", (dim,)), (f"{b}.norm.weight", (dim,)), (f"{b}.norm.bias", (dim,)),
                       (f"{b}.mlp.fc1.weight", (4 * dim, dim)), (f"{b}.mlp.fc1.bias", (4 * dim,)),
                       (f"{b}.mlp.fc2.weight", (dim, 4 * dim)), (f"{b}.mlp.fc2.bias", (dim,))]
    shapes += [("head.norm.weight", (DIMS[-1],)), ("head.norm.bias", (DIMS[-1],)),
               ("head.fc.weight", (CLASSES, DIMS[-1])), ("head.fc.bias", (CLASSES,))]
    return shapes


def draw_params(gen):
    """float32 parameters with non-trivial values: timm's gamma 1e-6 would make every branch's
    gradient negligible, so gamma is drawn around 0.5 here."""
    params = {}
    for name, shape in param_shapes():
        noise = torch.randn(shape, generator=gen, dtype=torch.float32)
        fan_in = 1
        for d in shape[1:]:
            fan_in *= d
        if name.endswith("gamma"):
            params[name] = 0.5 + 0.1 * noise
        elif "norm" in name or name.startswith("stem.1") or name.endswith("downsample.0.weight"):
            params[name] = (1.0 if name.endswith(".weight") else 0.0) + 0.1 * noise
        elif name.endswith(".bias"):
            params[name] = 0.1 * noise
        else:
            params[name] = noise / fan_in ** 0.5
    return params


def draw_batch(gen):
    images = torch.randn((BATCH, CHANNELS, IMAGE, IMAGE), generator=gen, dtype=torch.float32)
    labels = torch.randint(0, CLASSES, (BATCH,), generator=gen, dtype=torch.int32)
    if bool((labels == labels[0]).all()):
        sys.exit("labels drawn all equal; pick another --seed")
    return images, labels


def grid_keep(g):
    """Kept positions (row-major) of the grid mask on a g x g grid (ARCHITECTURE.md, "Masks")."""
    stride = round(1 / KEEP_RATIO)
    return [i * g + j for i in range(g) for j in range(g) if (i + j) % stride == GRID_START]


def make_timm_model():
    """timm's ConvNeXt always builds 4 stages: build it with two more (of the last width, so that the
    head takes DIMS[-1] features) and keep the first two; forward_features runs self.stages as is."""
    model = ConvNeXt(in_chans=CHANNELS, num_classes=CLASSES, depths=DEPTHS + (1, 1),
                     dims=DIMS + (DIMS[-1], DIMS[-1]), patch_size=PATCH, kernel_sizes=KERNEL,
                     ls_init_value=1e-6, drop_rate=0.0, drop_path_rate=0.0)
    model.stages = model.stages[:len(DEPTHS)]
    return model


def timm_loss_and_grads(params32, images32, labels):
    model = make_timm_model()
    sd = model.state_dict()
    expected = dict(param_shapes())
    if set(sd) != set(expected):
        sys.exit(f"timm {timm.__version__} state_dict names differ from the fixture's: "
                 f"{sorted(set(sd) ^ set(expected))}")
    for n, t in sd.items():
        if tuple(t.shape) != expected[n]:
            sys.exit(f"timm's {n} is {tuple(t.shape)}, the fixture's {expected[n]}")
    if list(sd) != [n for n, _ in param_shapes()]:
        sys.exit(f"timm's state_dict order differs: {list(sd)}")
    model.load_state_dict(params32, strict=True)
    model = model.double().train()
    loss = F.cross_entropy(model(images32.to(torch.float64)), labels.long())
    named = dict(model.named_parameters())
    names = [n for n, _ in param_shapes()]
    grads = torch.autograd.grad(loss, [named[n] for n in names])
    return loss.detach(), dict(zip(names, grads))


# --- the independent functional model, channels-last, with SBP regions --------------------------

def sbp_region(f, x, keep):
    """f(x) on every row of x [B, H, W, C]; rows at grid positions not in `keep` (a flat list, or
    None for all) carry no gradient: they are computed again without autograd."""
    y = f(x)
    if keep is None:
        return y
    b, h, w, _ = y.shape
    mask = torch.zeros(h * w, dtype=torch.bool)
    mask[keep] = True
    mask = mask.reshape(1, h, w, 1)
    with torch.no_grad():
        y_const = f(x.detach())
    return torch.where(mask, y, y_const)


def functional_loss(p, images, labels, keeps):
    """keeps: the kept positions of each stage's grid, or (None, None) for plain backprop."""
    x = F.conv2d(images, p["stem.0.weight"], p["stem.0.bias"], stride=PATCH).permute(0, 2, 3, 1)
    x = F.layer_norm(x, (DIMS[0],), p["stem.1.weight"], p["stem.1.bias"], EPS)
    for s, (dim, depth) in enumerate(zip(DIMS, DEPTHS)):
        if s > 0:
            d = f"stages.{s}.downsample"
            n = F.layer_norm(x, (DIMS[s - 1],), p[f"{d}.0.weight"], p[f"{d}.0.bias"], EPS)
            conv = lambda v, d=d: F.conv2d(v.permute(0, 3, 1, 2), p[f"{d}.1.weight"], p[f"{d}.1.bias"],
                                           stride=2).permute(0, 2, 3, 1)
            # The region starts after the 2x2 cells are formed: rows of the output grid.
            x = sbp_region_cells(conv, n, keeps[s])
        for k in range(depth):
            b = f"stages.{s}.blocks.{k}"
            c = F.conv2d(x.permute(0, 3, 1, 2), p[f"{b}.conv_dw.weight"], p[f"{b}.conv_dw.bias"],
                         padding=KERNEL // 2, groups=dim).permute(0, 2, 3, 1)

            def mlp(v, b=b, dim=dim):
                v = F.layer_norm(v, (dim,), p[f"{b}.norm.weight"], p[f"{b}.norm.bias"], EPS)
                v = F.gelu(F.linear(v, p[f"{b}.mlp.fc1.weight"], p[f"{b}.mlp.fc1.bias"]))
                v = F.linear(v, p[f"{b}.mlp.fc2.weight"], p[f"{b}.mlp.fc2.bias"])
                return v * p[f"{b}.gamma"]
            x = x + sbp_region(mlp, c, keeps[s])
    pooled = F.layer_norm(x.mean(dim=(1, 2)), (DIMS[-1],), p["head.norm.weight"], p["head.norm.bias"], EPS)
    return F.cross_entropy(F.linear(pooled, p["head.fc.weight"], p["head.fc.bias"]), labels.long())


def sbp_region_cells(conv, n, keep):
    """The downsampling's SBP region: the 2x2 stride-2 conv of the normalised input; output rows
    at dropped positions of the coarse grid carry no gradient (so neither do their 2x2 cells)."""
    y = conv(n)
    if keep is None:
        return y
    b, h, w, _ = y.shape
    mask = torch.zeros(h * w, dtype=torch.bool)
    mask[keep] = True
    with torch.no_grad():
        y_const = conv(n.detach())
    return torch.where(mask.reshape(1, h, w, 1), y, y_const)


def functional_grads(params32, images32, labels, keeps):
    p = {n: t.to(torch.float64).requires_grad_(True) for n, t in params32.items()}
    loss = functional_loss(p, images32.to(torch.float64), labels, keeps)
    names = [n for n, _ in param_shapes()]
    grads = torch.autograd.grad(loss, [p[n] for n in names])
    return loss.detach(), dict(zip(names, grads))


def max_rel(a, b):
    return max(float((a[n] - b[n]).abs().max() / b[n].abs().max().clamp_min(1e-30)) for n in b)


def atomic_write_bytes(path, data):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def atomic_save_safetensors(path, tensors, provenance):
    tmp = f"{path}.tmp{os.getpid()}"
    save_file({n: t.contiguous() for n, t in tensors.items()}, tmp, metadata={"provenance": provenance})
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def as_f32(grads, loss):
    """A fixture's gradients and loss (as a 1-element tensor "loss"), float32."""
    out = {n: g.to(torch.float32) for n, g in grads.items()}
    out["loss"] = loss.reshape(1).to(torch.float32)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="fixture directory to write")
    ap.add_argument("--seed", type=int, default=20261206, help="torch seed for params and batch")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    params = draw_params(gen)
    images, labels = draw_batch(gen)
    keeps = tuple(grid_keep(g) for g in GRIDS)

    loss_full, grads_full = timm_loss_and_grads(params, images, labels)
    loss_f, grads_f = functional_grads(params, images, labels, (None, None))
    loss_all, grads_all = functional_grads(params, images, labels, tuple(list(range(g * g)) for g in GRIDS))
    loss_sbp, grads_sbp = functional_grads(params, images, labels, keeps)
    # SBP changes gradients of everything below the last region; the head's stay equal.
    below = [n for n in grads_full if not n.startswith("head.")]
    diff = min(float((grads_sbp[n] - grads_full[n]).abs().max() / grads_full[n].abs().max()) for n in below)
    checks = [
        ("functional == timm (dense)", max_rel(grads_f, grads_full), f"< {TIGHT}", max_rel(grads_f, grads_full) < TIGHT),
        ("functional keep-all == timm", max_rel(grads_all, grads_full), f"< {TIGHT}",
         max_rel(grads_all, grads_full) < TIGHT),
        ("loss unchanged by SBP", abs(float(loss_sbp - loss_full)), f"< {TIGHT}", abs(float(loss_sbp - loss_full)) < TIGHT),
        ("SBP grads differ from dense (min over params)", diff, f">= {MIN_SBP_DIFFERENCE}", diff >= MIN_SBP_DIFFERENCE),
    ]
    print(f"seed {args.seed}, torch {torch.__version__}, timm {timm.__version__}")
    for what, value, bound, ok in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {what:<48} {value:10.3g}  (need {bound})")
    if not all(c[3] for c in checks):
        sys.exit("make_convnext_fixtures.py: check failed, nothing written")

    provenance = f"test/numerics/make_convnext_fixtures.py --seed {args.seed}, torch {torch.__version__}, timm {timm.__version__}"

    os.makedirs(args.out, exist_ok=True)
    out = lambda name: os.path.join(args.out, name)
    atomic_save_safetensors(out("params.safetensors"), params, provenance)
    atomic_save_safetensors(out("batch.safetensors"), {"images": images, "labels": labels}, provenance)
    atomic_save_safetensors(out("grads_full.safetensors"), as_f32(grads_full, loss_full),
                            f"{provenance}; timm ConvNeXt, keep 1.0")
    atomic_save_safetensors(out("grads_sbp.safetensors"), as_f32(grads_sbp, loss_sbp),
                            f"{provenance}; MLP branches and stage 1 downsampling reduction, grid masks keep 0.5")
    lines = [f"{g}: {' '.join(map(str, k))}" for g, k in zip(GROUPS, keeps)]
    comment = (f"# SBP keep indices of each stage's grid mask (keep {KEEP_RATIO}, start {GRID_START}: positions "
               f"(i, j) with (i + j) % 2 == {GRID_START}, index i*W + j): @s0 on {GRIDS[0]}x{GRIDS[0]}, "
               f"@s1 on {GRIDS[1]}x{GRIDS[1]}")
    atomic_write_bytes(out("keep.txt"), (comment + "\n" + "\n".join(lines) + "\n").encode())


if __name__ == "__main__":
    main()
