"""Step timing shared by the PyTorch baselines (torch_patch_mlp.py, torch_vit.py).

Both measure exactly as sbp-bench does (bench/README.md): host timers around a
synchronised training step, the median over the timed steps, and the device's
peak memory in use (cudaMemGetInfo, total - free) over the whole run.
"""
import math


def percentile(values, q):
    """Linear interpolation between closest ranks (numpy's default); q in [0, 1]."""
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def proc_status_bytes(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def time_steps(torch, train_step, warmup, steps, device):
    """Runs warmup + steps calls of train_step() (which returns the loss as a float).

    Returns (times_ms of the timed steps, losses, first_step_ms, warmup_ms, mem_peak_bytes or None).
    A non-finite loss stops the run with an error.
    """
    import time

    cuda = device.type == "cuda"

    def used_now():
        free, total = torch.cuda.mem_get_info(device)
        return total - free

    mem_peak = used_now() if cuda else None
    times, losses = [], []
    first_step_ms = None
    warmup_ms = 0.0
    for i in range(warmup + steps):
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        losses.append(train_step())
        if cuda:
            torch.cuda.synchronize(device)
        ms = (time.perf_counter() - t0) * 1e3
        if i == 0:
            first_step_ms = ms
        if i < warmup:
            warmup_ms += ms
        else:
            times.append(ms)
        if cuda:
            mem_peak = max(mem_peak, used_now())
        if not math.isfinite(losses[-1]):
            raise SystemExit(f"loss is {losses[-1]} at step {i}")
    return times, losses, first_step_ms, warmup_ms, mem_peak


def memory_fields(torch, device, mem_base, mem_peak, mem_total, rss_base):
    """The JSON line's peak-memory fields, measured as sbp-bench does (bench/README.md)."""
    if device.type == "cuda":
        return {
            "peak_mem_bytes": mem_peak - mem_base,
            "peak_mem_method": "cudaMemGetInfo: max(total-free) after setup and after every step, "
                               "minus (total-free) before the model with the CUDA context up; "
                               "includes input_bytes",
            "device_used_base_bytes": mem_base,
            "device_used_peak_bytes": mem_peak,
            "device_total_bytes": mem_total,
            "torch_max_allocated_bytes": torch.cuda.max_memory_allocated(device),
            "torch_max_reserved_bytes": torch.cuda.max_memory_reserved(device),
        }
    hwm = proc_status_bytes("VmHWM")
    return {
        "peak_mem_bytes": hwm - rss_base if hwm is not None and rss_base is not None else None,
        "peak_mem_method": "VmHWM at the end minus VmRSS before the model; includes input_bytes",
    }


def timing_fields(times, batch, warmup_ms, first_step_ms):
    """The JSON line's step-time fields: median and spread of the timed steps, and img/s."""
    median = percentile(times, 0.5)
    p10, p90 = percentile(times, 0.1), percentile(times, 0.9)
    return {
        "median_ms": median,
        "p10_ms": p10,
        "p90_ms": p90,
        "mean_ms": sum(times) / len(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "warmup_total_ms": warmup_ms,
        "first_step_ms": first_step_ms,
        "img_per_s": batch * 1000.0 / median,
        "img_per_s_p10": batch * 1000.0 / p90,
        "img_per_s_p90": batch * 1000.0 / p10,
    }
