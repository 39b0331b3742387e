#!/usr/bin/env python3
"""PyTorch + timm baselines for ConvNeXt training: step time and peak memory, one JSON line.

    python3 bench/torch_convnext.py --mode compile --precision bf16 --steps 30 --warmup 10

timm's `convnext_tiny` (--model; no pretrained weights, timm's init, drop_path 0), 224 px, 1000
classes, batch 128, channels_last, one batch of N(0, 1) images and uniform labels that stays on the
device; mean cross-entropy; AdamW (lr 1e-3, weight decay 0.05 on matrices), fused. Modes: eager,
compile (torch.compile of the model, optimizer eager), checkpoint (activation checkpointing per
stage). Precision: fp32 (TF32 off) or bf16 (autocast, fp32 master weights). Timing and memory as
bench/torch_vit.py (bench/torch_timing.py).
"""
import argparse
import json
import sys

from torch_timing import memory_fields, proc_status_bytes, time_steps, timing_fields


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="convnext_tiny", help="timm model name")
    ap.add_argument("--mode", default="eager", choices=["eager", "compile", "checkpoint"])
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--img", type=int, default=224)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    import torch
    import torch.nn.functional as F
    import timm
    from torch.utils.checkpoint import checkpoint

    torch.manual_seed(a.seed)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    mem_base = mem_total = rss_base = None
    if cuda:
        free, total = torch.cuda.mem_get_info(device)
        mem_base, mem_total = total - free, total
        torch.cuda.reset_peak_memory_stats(device)
    else:
        rss_base = proc_status_bytes("VmRSS")

    model = timm.create_model(a.model, pretrained=False, num_classes=a.classes, drop_rate=0.0,
                              drop_path_rate=0.0).to(device).train()
    model = model.to(memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.999), eps=1e-8, **({"fused": True} if cuda else {}))
    gen = torch.Generator(device="cpu").manual_seed(a.seed + 1)
    images = torch.randn((a.batch, 3, a.img, a.img), generator=gen).to(device)
    images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, a.classes, (a.batch,), generator=gen).to(device)

    def forward_checkpoint(x):
        x = model.stem(x)
        for stage in model.stages:
            x = checkpoint(stage, x, use_reentrant=False)
        return model.forward_head(model.norm_pre(x))

    fwd = torch.compile(model) if a.mode == "compile" else model
    if a.mode == "checkpoint":
        fwd = forward_checkpoint

    def train_step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = F.cross_entropy(fwd(images), labels)
        loss.backward()
        opt.step()
        return loss.item()

    times, losses, first_step_ms, warmup_ms, mem_peak = time_steps(torch, train_step, a.warmup, a.steps, device)
    out = {
        "tool": "torch_convnext.py",
        "framework": "pytorch",
        "model": a.model,
        "mode": a.mode,
        "target": device.type,
        "precision": a.precision,
        "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch_version": torch.__version__,
        "timm_version": timm.__version__,
        "batch": a.batch,
        "steps": a.steps,
        "warmup": a.warmup,
        "final_loss": losses[-1],
    }
    out.update(timing_fields(times, a.batch, warmup_ms, first_step_ms))
    out.update(memory_fields(torch, device, mem_base, mem_peak, mem_total, rss_base))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
