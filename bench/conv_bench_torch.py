"""PyTorch (cuDNN) depth-wise 7x7 conv on the ConvNeXt-T stage shapes, the baseline of
bench/conv_bench.cu: bf16, channels_last, batch 128 (or --batch), forward, input gradient
and weight+bias gradient (aten.convolution_backward with one output mask each), median
microseconds of --iters calls timed with CUDA events after warm-up, cudnn.benchmark on.

    python3 bench/conv_bench_torch.py [--batch 128] [--iters 50]
"""
import argparse
import statistics


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    args = ap.parse_args()
    import torch

    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    K = 7
    print(f"torch {torch.__version__} cuDNN {torch.backends.cudnn.version()} depth-wise {K}x{K} conv, "
          f"bf16 channels_last, batch {args.batch}, median of {args.iters}, device: "
          f"{torch.cuda.get_device_name(dev)}")
    print("| shape (HxWxC) | kernel | us | GB/s | TFLOP/s |\n|---|---|---:|---:|---:|")

    def time_us(fn):
        for _ in range(args.warmup):
            fn()
        torch.cuda.synchronize()
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(args.iters + 1)]
        ev[0].record()
        for i in range(args.iters):
            fn()
            ev[i + 1].record()
        torch.cuda.synchronize()
        return statistics.median(ev[i].elapsed_time(ev[i + 1]) * 1000.0 for i in range(args.iters))

    total = 0.0
    for H, C in ((56, 96), (28, 192), (14, 384), (7, 768)):
        B = args.batch
        x = torch.randn(B, C, H, H, device=dev, dtype=torch.bfloat16).contiguous(
            memory_format=torch.channels_last)
        dy = torch.randn_like(x).contiguous(memory_format=torch.channels_last)
        w = (0.1 * torch.randn(C, 1, K, K, device=dev)).to(torch.bfloat16).contiguous(
            memory_format=torch.channels_last)
        b = (0.1 * torch.randn(C, device=dev)).to(torch.bfloat16)
        common = dict(stride=[1, 1], padding=[K // 2] * 2, dilation=[1, 1], transposed=False,
                      output_padding=[0, 0], groups=C)
        n = x.numel()
        flops = 2.0 * K * K * n
        act = 2.0 * n

        def fwd():
            return torch.nn.functional.conv2d(x, w, b, padding=K // 2, groups=C)

        def dgrad():
            return torch.ops.aten.convolution_backward(dy, x, w, [C], output_mask=[True, False, False],
                                                       **common)

        def wgrad():
            return torch.ops.aten.convolution_backward(dy, x, w, [C], output_mask=[False, True, True],
                                                       **common)

        for name, fn in (("dwconv fwd", fwd), ("dwconv dgrad", dgrad), ("dwconv wgrad+bgrad", wgrad)):
            us = time_us(fn)
            total += us
            print(f"| {H}x{H}x{C} | {name} | {us:.1f} | {2 * act / (us * 1e3):.0f} | "
                  f"{flops / (us * 1e6):.1f} |")
        del x, dy, w, b
    print(f"total (3 kernels x 4 shapes, one block each): {total:.1f} us")


if __name__ == "__main__":
    main()
