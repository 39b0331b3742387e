"""PyTorch scaled_dot_product_attention on ViT-Tiny's shapes, the baseline of
bench/attn_bench.cu: bf16, batch 256 (or --batch), T 197, 3 heads of 64, scale 1/8, each back
end that runs (cuDNN, FlashAttention-2, memory-efficient), forward alone and forward +
backward (backward = the difference), median microseconds of --iters calls timed with CUDA
events after warm-up, and the useful FLOP rate (FlashAttention's count: forward 4 T^2 Dh per
(batch, head), backward 2.5x that). Also the compact kept rows, T 99.

    python3 bench/attn_bench_torch.py [--batch 256] [--iters 50]
"""
import argparse
import statistics


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    args = ap.parse_args()
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    dev = torch.device("cuda")
    H, Dh = 3, 64
    print(f"torch {torch.__version__} cuDNN {torch.backends.cudnn.version()} SDPA bf16, batch "
          f"{args.batch}, {H} heads of {Dh}, median of {args.iters}, device: "
          f"{torch.cuda.get_device_name(dev)}")
    print("| back end | T | forward us | backward us | forward TFLOP/s | backward TFLOP/s |\n"
          "|---|---:|---:|---:|---:|---:|")

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

    backends = (("cuDNN", SDPBackend.CUDNN_ATTENTION), ("FlashAttention-2", SDPBackend.FLASH_ATTENTION),
                ("memory-efficient", SDPBackend.EFFICIENT_ATTENTION))
    for T in (197, 99):
        q, k, v = (torch.randn(args.batch, H, T, Dh, device=dev, dtype=torch.bfloat16,
                               requires_grad=True) for _ in range(3))
        dout = torch.randn(args.batch, H, T, Dh, device=dev, dtype=torch.bfloat16)
        fwd_flops = 4.0 * args.batch * H * T * T * Dh
        for name, backend in backends:
            try:
                with sdpa_kernel([backend]):
                    def fwd():
                        return F.scaled_dot_product_attention(q, k, v, scale=0.125)

                    def fwd_bwd():
                        torch.autograd.grad(fwd(), (q, k, v), dout)

                    f = time_us(fwd)
                    fb = time_us(fwd_bwd)
            except RuntimeError as e:
                print(f"| {name} | {T} | (not available: {str(e).splitlines()[0][:60]}) | | | |")
                continue
            b = fb - f
            print(f"| {name} | {T} | {f:.1f} | {b:.1f} | {fwd_flops / (f * 1e6):.1f} | "
                  f"{2.5 * fwd_flops / (b * 1e6):.1f} |")


if __name__ == "__main__":
    main()
