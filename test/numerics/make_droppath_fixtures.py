#!/usr/bin/env python3
"""Reference gradients of the small ConvNeXt with stochastic depth (timm's drop_path) at fixed
per-sample keep masks, for test/numerics/convnext_grads_droppath.test.

Run on a machine with PyTorch, timm and the `safetensors` package (CPU-only torch is enough):

    python3 test/numerics/make_droppath_fixtures.py --out test/numerics/fixtures/convnext_droppath

The model is make_convnext_fixtures.py's (the same parameters and batch from the same seed) with
drop_path_rate chosen so that its four blocks get timm's rates 0, 0.1, 0.2, 0.3 (linspace(0, 0.3,
4), as Inputs/convnext_small_droppath.mlir declares them). timm's ConvNeXt always builds 4 stages:
built with depths (2, 2, 1, 1), linspace(0, R, 6) gives the first four blocks 0, 0.1, 0.2, 0.3 at
R = 0.5; the two extra stages are removed. The gradients come from timm's own modules in train mode:
each DropPath runs timm's drop_path function, only its Bernoulli draw is replaced by the fixed mask
of KEEP (samples kept per block), so timm's scaling (mask / keep_prob) is what is tested.

Writes params.safetensors, batch.safetensors, keep.txt (the masks in sbp-train --keep-indices
form, group names @dp.<block> of the .mlir), grads_droppath.safetensors (timm with drop path)
and grads_nodrop.safetensors (the same model without drop path, for the negative check).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import torch
    import torch.nn.functional as F
    import timm
    from timm.layers import DropPath
    from timm.models.convnext import ConvNeXt
    import make_convnext_fixtures as base
except ImportError as e:  # Keep the failure readable on a machine without the deps.
    sys.exit(f"make_droppath_fixtures.py needs torch, timm and safetensors: {e}")

DROP_PATH_RATE = 0.5  # of the 6-block model built; the kept 4 blocks get 0, 0.1, 0.2, 0.3
BLOCK_RATES = {"stages.0.blocks.0": 0.0, "stages.0.blocks.1": 0.1, "stages.1.blocks.0": 0.2,
               "stages.1.blocks.1": 0.3}
# Kept samples of each block with a rate (batch of 4); one block keeps none.
KEEP = {"stages.0.blocks.1": [0, 2, 3], "stages.1.blocks.0": [1, 2], "stages.1.blocks.1": []}
MIN_DIFFERENCE = 1e-2
# The all-kept identity holds up to the rounding of the reordered product
# (x * gamma) / (1 - p) vs x * (gamma / (1 - p)): measured 6.8e-8 with timm
# 1.0.29 / torch 2.11 on the H100 machine.
TIGHT = 1e-6


def make_timm_model(drop_path_rate):
    model = ConvNeXt(in_chans=base.CHANNELS, num_classes=base.CLASSES, depths=base.DEPTHS + (1, 1),
                     dims=base.DIMS + (base.DIMS[-1], base.DIMS[-1]), patch_size=base.PATCH,
                     kernel_sizes=base.KERNEL, ls_init_value=1e-6, drop_rate=0.0,
                     drop_path_rate=drop_path_rate)
    model.stages = model.stages[:len(base.DEPTHS)]
    return model


def fix_masks(model, keep):
    """Each block's DropPath draws KEEP's mask: timm's drop_path with bernoulli_ replaced."""
    for name, module in model.named_modules():
        if not name.endswith(".drop_path"):
            continue
        block = name[: -len(".drop_path")]
        rate = BLOCK_RATES[block]
        if rate == 0.0:
            if isinstance(module, DropPath):
                sys.exit(f"timm gives block {block} a DropPath, expected none at rate 0")
            continue
        if not isinstance(module, DropPath) or abs(module.drop_prob - rate) > 1e-6:
            sys.exit(f"timm's drop path of {block} is {module!r}, expected rate {rate}")
        mask = keep[block] if keep is not None else list(range(base.BATCH))

        def forward(x, module=module, mask=mask):
            real = torch.Tensor.bernoulli_

            def fixed(t, *args, **kwargs):
                values = torch.zeros(t.shape[0], dtype=t.dtype)
                values[mask] = 1.0
                return t.copy_(values.reshape(t.shape))
            torch.Tensor.bernoulli_ = fixed
            try:
                return timm.layers.drop.drop_path(x, module.drop_prob, module.training, module.scale_by_keep)
            finally:
                torch.Tensor.bernoulli_ = real
        module.forward = forward


def timm_grads(params32, images32, labels, drop_path_rate, keep):
    model = make_timm_model(drop_path_rate)
    model.load_state_dict(params32, strict=True)
    model = model.double().train()
    if drop_path_rate:
        fix_masks(model, keep)
    loss = F.cross_entropy(model(images32.to(torch.float64)), labels.long())
    named = dict(model.named_parameters())
    names = [n for n, _ in base.param_shapes()]
    grads = torch.autograd.grad(loss, [named[n] for n in names])
    return loss.detach(), dict(zip(names, grads))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="fixture directory to write")
    ap.add_argument("--seed", type=int, default=20261206, help="torch seed for params and batch")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    params = base.draw_params(gen)
    images, labels = base.draw_batch(gen)

    loss_nodrop, grads_nodrop = timm_grads(params, images, labels, 0.0, None)
    loss_dp, grads_dp = timm_grads(params, images, labels, DROP_PATH_RATE, KEEP)
    # Every sample kept: the model without drop path whose gamma is gamma / (1 - rate).
    scaled = {n: (t / (1 - BLOCK_RATES[n[: -len(".gamma")]]) if n.endswith(".gamma") else t)
              for n, t in params.items()}
    _, grads_scaled = timm_grads(scaled, images, labels, 0.0, None)
    _, grads_all = timm_grads(params, images, labels, DROP_PATH_RATE, None)
    expect_all = {n: (g / (1 - BLOCK_RATES[n[: -len(".gamma")]]) if n.endswith(".gamma") else g)
                  for n, g in grads_scaled.items()}
    all_kept = base.max_rel(grads_all, expect_all)
    dropped = [n for n in grads_dp if n.startswith("stages.1.blocks.1.")]
    zero = max(float(grads_dp[n].abs().max()) for n in dropped)
    below = [n for n in grads_dp if not n.startswith("head.") and not n.startswith("stages.1.blocks.1.")]
    diff = min(float((grads_dp[n] - grads_nodrop[n]).abs().max() / grads_nodrop[n].abs().max()) for n in below)
    checks = [
        ("every sample kept == gamma / (1 - rate)", all_kept, f"< {TIGHT}", all_kept < TIGHT),
        ("a block keeping no sample gets no gradient", zero, "== 0", zero == 0.0),
        ("drop-path grads differ from no-drop (min)", diff, f">= {MIN_DIFFERENCE}", diff >= MIN_DIFFERENCE),
    ]
    print(f"seed {args.seed}, torch {torch.__version__}, timm {timm.__version__}")
    for what, value, bound, ok in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {what:<48} {value:10.3g}  (need {bound})")
    if not all(c[3] for c in checks):
        sys.exit("make_droppath_fixtures.py: check failed, nothing written")

    provenance = (f"test/numerics/make_droppath_fixtures.py --seed {args.seed}, torch {torch.__version__}, "
                  f"timm {timm.__version__}")

    os.makedirs(args.out, exist_ok=True)
    out = lambda name: os.path.join(args.out, name)
    base.atomic_save_safetensors(out("params.safetensors"), params, provenance)
    base.atomic_save_safetensors(out("batch.safetensors"), {"images": images, "labels": labels}, provenance)
    base.atomic_save_safetensors(out("grads_droppath.safetensors"), base.as_f32(grads_dp, loss_dp),
                                 f"{provenance}; timm ConvNeXt, drop path rates {BLOCK_RATES}, masks {KEEP}")
    base.atomic_save_safetensors(out("grads_nodrop.safetensors"), base.as_f32(grads_nodrop, loss_nodrop),
                                 f"{provenance}; timm ConvNeXt without drop path")
    lines = [f"dp.{b}: {' '.join(map(str, k)) if k else '-'}" for b, k in KEEP.items()]
    comment = "# Kept samples of each block's drop path (timm's Bernoulli draw replaced by these masks)"
    base.atomic_write_bytes(out("keep.txt"), (comment + "\n" + "\n".join(lines) + "\n").encode())


if __name__ == "__main__":
    main()
