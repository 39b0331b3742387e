#!/usr/bin/env python3
"""Reference gradients for test/numerics/Inputs/patch_mlp_small.mlir, from PyTorch autograd.

Run on a machine with PyTorch and the `safetensors` package (CPU-only torch is enough):

    python3 test/numerics/make_patch_mlp_fixtures.py --out test/numerics/fixtures/patch_mlp_small

Writes params.safetensors, batch.safetensors, keep.txt, grads_full.safetensors and
grads_sbp.safetensors into --out (see test/numerics/README.md). The parameters and the batch are
drawn in float32 from a fixed seed and stored as they are; the reference math runs in float64 on
the CPU from those float32 values, and the gradients are rounded to float32 only for storage, so
the fixtures carry no float32 error of their own.

The model (PyTorch conventions, Linear y = x W^T + b with W [out, in]):
  images [8,1,28,28] -> 7x7 patches, tokens [8,16,49] (t = i*4 + j, f = c*49 + py*7 + px)
  -> patch_embed -> + pos_embed
  -> 2 blocks: x = x + fc2(act(fc1(LayerNorm(x))))   (act: exact GELU in block 0, ReLU in block 1)
  -> final LayerNorm -> mean over tokens -> head -> mean cross-entropy.
SBP: both MLP branches are SBP regions sharing one keep mask; the branch output y is replaced by
torch.where(keep[t], y, y.detach()) before the residual add (Alg. 1 of the paper). The residual
stream is untouched, so the forward (and the loss) is exactly the full one.
"""

import argparse
import os
import sys

try:
    import torch
    import torch.nn.functional as F
    from safetensors.torch import save_file
except ImportError as e:  # Keep the failure readable on a machine without the deps.
    sys.exit(f"make_patch_mlp_fixtures.py needs torch and safetensors: {e}")

BATCH = 8
CHANNELS = 1
IMAGE = 28
PATCH = 7
GRID = IMAGE // PATCH  # 4x4 patch grid
TOKENS = GRID * GRID  # 16
PATCH_DIM = CHANNELS * PATCH * PATCH  # 49
DIM = 16
HIDDEN = 32
CLASSES = 10
DEPTH = 2
LN_EPS = 1e-6
ACTIVATIONS = ("gelu", "relu")  # per block

# SBP mask: grid, keep ratio 0.5 (stride 2), start 1: keep tokens with (i + j) % 2 == 1.
KEEP_RATIO = 0.5
GRID_START = 1
KEEP_INDICES = [1, 3, 4, 6, 9, 11, 12, 14]

# A ReLU pre-activation closer to zero than this could change sign between the float64
# reference and a float32 trainer, and then the gradients legitimately differ.
RELU_MARGIN = 1e-5
# The SBP gradients of every parameter below the head must differ from the full ones by at
# least this (relative to the tensor's largest magnitude), so that comparing an SBP dump
# against grads_full fails by a wide margin at rtol 1e-4.
MIN_SBP_DIFFERENCE = 1e-2


def param_shapes():
    """Parameter names and shapes, in the model's order; names are the PyTorch module names."""
    shapes = [
        ("patch_embed.weight", (DIM, PATCH_DIM)),
        ("patch_embed.bias", (DIM,)),
        ("pos_embed", (1, TOKENS, DIM)),
    ]
    for k in range(DEPTH):
        shapes += [
            (f"blocks.{k}.norm.weight", (DIM,)),
            (f"blocks.{k}.norm.bias", (DIM,)),
            (f"blocks.{k}.mlp.fc1.weight", (HIDDEN, DIM)),
            (f"blocks.{k}.mlp.fc1.bias", (HIDDEN,)),
            (f"blocks.{k}.mlp.fc2.weight", (DIM, HIDDEN)),
            (f"blocks.{k}.mlp.fc2.bias", (DIM,)),
        ]
    shapes += [
        ("norm.weight", (DIM,)),
        ("norm.bias", (DIM,)),
        ("head.weight", (CLASSES, DIM)),
        ("head.bias", (CLASSES,)),
    ]
    return shapes


def draw_params(gen):
    """float32 parameters with non-trivial values, so that every gradient term matters."""
    params = {}
    for name, shape in param_shapes():
        noise = torch.randn(shape, generator=gen, dtype=torch.float32)
        if name == "pos_embed":
            params[name] = 0.2 * noise
        elif name.endswith("norm.weight"):
            params[name] = 1.0 + 0.1 * noise
        elif name.endswith(".bias"):
            params[name] = 0.1 * noise
        else:
            params[name] = 0.2 * noise
    return params


def draw_batch(gen):
    images = torch.randn((BATCH, CHANNELS, IMAGE, IMAGE), generator=gen, dtype=torch.float32)
    labels = torch.randint(0, CLASSES, (BATCH,), generator=gen, dtype=torch.int32)
    if bool((labels == labels[0]).all()):
        sys.exit("labels drawn all equal; pick another --seed")
    return images, labels


def grid_keep_indices():
    """The fixed SBP mask, derived from the rule (ARCHITECTURE.md, "Masks")."""
    stride = round(1 / KEEP_RATIO)
    kept = [i * GRID + j for i in range(GRID) for j in range(GRID) if (i + j) % stride == GRID_START]
    assert kept == KEEP_INDICES, kept
    return kept


def patchify(images):
    """[B,C,28,28] -> [B,16,C*49]; token t = i*4 + j, feature f = c*49 + py*7 + px."""
    b = images.shape[0]
    tokens = images.reshape(b, CHANNELS, GRID, PATCH, GRID, PATCH)
    tokens = tokens.permute(0, 2, 4, 1, 3, 5).reshape(b, TOKENS, PATCH_DIM)
    # Same order as F.unfold, i.e. as a Conv2d(C, D, 7, stride 7) weight flattened to [D, C*49].
    unfolded = F.unfold(images, kernel_size=PATCH, stride=PATCH).transpose(1, 2)
    assert torch.equal(tokens, unfolded)
    return tokens


def forward(p, images, labels, branch_gate=None, relu_inputs=None):
    """Mean cross-entropy loss. branch_gate(y) is applied to each MLP branch output."""
    x = F.linear(patchify(images), p["patch_embed.weight"], p["patch_embed.bias"])
    x = x + p["pos_embed"]
    for k, act in enumerate(ACTIVATIONS):
        h = F.layer_norm(x, (DIM,), p[f"blocks.{k}.norm.weight"], p[f"blocks.{k}.norm.bias"], LN_EPS)
        h = F.linear(h, p[f"blocks.{k}.mlp.fc1.weight"], p[f"blocks.{k}.mlp.fc1.bias"])
        if act == "gelu":
            h = F.gelu(h)  # exact (erf) GELU, as nn.GELU()
        else:
            if relu_inputs is not None:
                relu_inputs.append(h.detach())
            h = F.relu(h)
        y = F.linear(h, p[f"blocks.{k}.mlp.fc2.weight"], p[f"blocks.{k}.mlp.fc2.bias"])
        if branch_gate is not None:
            y = branch_gate(y)
        x = x + y
    x = F.layer_norm(x, (DIM,), p["norm.weight"], p["norm.bias"], LN_EPS)
    logits = F.linear(x.mean(dim=1), p["head.weight"], p["head.bias"])
    return F.cross_entropy(logits, labels.long())


def loss_and_grads(params32, images32, labels, branch_gate=None, relu_inputs=None):
    """float64 autograd from the float32 values; returns (loss, {name: grad}) in float64."""
    p = {n: t.to(torch.float64).requires_grad_(True) for n, t in params32.items()}
    loss = forward(p, images32.to(torch.float64), labels, branch_gate, relu_inputs)
    names = list(p)
    grads = torch.autograd.grad(loss, [p[n] for n in names])
    return loss.detach(), dict(zip(names, grads))


def rel_diff(a, b):
    """max|a - b| / max|b|, the definition compare_safetensors.py uses."""
    return float((a - b).abs().max() / b.abs().max())


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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="fixture directory to write")
    ap.add_argument("--seed", type=int, default=20240601, help="torch seed for params and batch")
    args = ap.parse_args()

    torch.use_deterministic_algorithms(True)
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    params = draw_params(gen)
    images, labels = draw_batch(gen)
    keep = grid_keep_indices()

    relu_inputs = []
    loss_full, grads_full = loss_and_grads(params, images, labels, relu_inputs=relu_inputs)
    margin = min(float(z.abs().min()) for z in relu_inputs)
    if margin < RELU_MARGIN:
        sys.exit(f"a ReLU input is {margin:.3g} from zero (< {RELU_MARGIN}); pick another --seed")

    keep_mask = torch.zeros(TOKENS, dtype=torch.bool)
    keep_mask[keep] = True
    row_keep = keep_mask.view(1, TOKENS, 1)

    def sbp_gate(y):  # Alg. 1: kept rows on the gradient path, dropped rows without gradient.
        return torch.where(row_keep, y, y.detach())

    loss_sbp, grads_sbp = loss_and_grads(params, images, labels, branch_gate=sbp_gate)
    # The branches are point-wise, so SBP leaves the forward exact.
    assert torch.equal(loss_sbp, loss_full), (loss_sbp, loss_full)

    # Cross-check the SBP semantics another way: zero the branch output's gradient at dropped rows.
    def masked_grad_gate(y):
        y.register_hook(lambda g: g * row_keep)
        return y

    _, grads_hook = loss_and_grads(params, images, labels, branch_gate=masked_grad_gate)
    for n in grads_sbp:
        assert torch.allclose(grads_hook[n], grads_sbp[n], rtol=1e-12, atol=1e-15), n

    for n, g in grads_full.items():
        assert float(g.abs().max()) > 0.0, f"gradient of {n} is zero"
    # SBP must change exactly the gradients below the last block, and by a wide margin.
    for n in grads_sbp:
        d = rel_diff(grads_sbp[n], grads_full[n])
        above_blocks = n.startswith("norm.") or n.startswith("head.")
        if above_blocks:
            assert d == 0.0, (n, d)
        elif d < MIN_SBP_DIFFERENCE:
            sys.exit(f"SBP changes {n} by only {d:.3g} (< {MIN_SBP_DIFFERENCE}); pick another --seed")

    # One metadata key: safetensors writes the metadata map in no fixed order, and regenerating
    # the fixtures unchanged should leave the files byte-identical.
    provenance = f"test/numerics/make_patch_mlp_fixtures.py --seed {args.seed}, torch {torch.__version__}"

    def as_f32(grads, loss):
        out = {n: g.to(torch.float32) for n, g in grads.items()}
        out["loss"] = loss.reshape(1).to(torch.float32)
        return out

    os.makedirs(args.out, exist_ok=True)
    out = lambda name: os.path.join(args.out, name)
    atomic_save_safetensors(out("params.safetensors"), params, provenance)
    atomic_save_safetensors(out("batch.safetensors"), {"images": images, "labels": labels}, provenance)
    atomic_save_safetensors(out("grads_full.safetensors"), as_f32(grads_full, loss_full),
                            f"{provenance}; keep 1.0")
    atomic_save_safetensors(out("grads_sbp.safetensors"), as_f32(grads_sbp, loss_sbp),
                            f"{provenance}; keep indices {' '.join(map(str, keep))}")
    keep_txt = (
        f"# SBP keep indices (token t = i*{GRID} + j on the {GRID}x{GRID} patch grid): grid mask, "
        f"keep {KEEP_RATIO}, start {GRID_START}, i.e. tokens with (i + j) % 2 == {GRID_START}\n"
        + " ".join(map(str, keep)) + "\n"
    )
    atomic_write_bytes(out("keep.txt"), keep_txt.encode())

    print(f"seed {args.seed}, torch {torch.__version__}, written to {args.out}")
    print(f"loss {float(loss_full):.9f} (full and SBP), labels {labels.tolist()}, keep {keep}")
    print(f"min |ReLU input| {margin:.3g}")
    print(f"{'parameter':<26} {'|grad| full':>12} {'|grad| sbp':>12} {'sbp vs full':>12}")
    for n in grads_full:
        print(f"{n:<26} {float(grads_full[n].norm()):12.6g} {float(grads_sbp[n].norm()):12.6g} "
              f"{rel_diff(grads_sbp[n], grads_full[n]):12.3g}")


if __name__ == "__main__":
    main()
