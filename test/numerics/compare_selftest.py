#!/usr/bin/env python3
"""Self-test of compare_safetensors.py (Python 3 standard library only).

Writes small safetensors files with its own writer (not the comparator's reader) and checks the
comparator's exit status and verdict on each case. Exits 1 if any case is judged wrong.

    compare_selftest.py [--comparator PATH]   (default: compare_safetensors.py beside this file)

--comparator exists so that the self-test itself can be shown to fail: point it at a broken
comparator (one that always exits 0, say) and the self-test must report failures.
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
NAN = float("nan")
INF = float("inf")


def safetensors_bytes(tensors, metadata=None):
    """tensors: {name: (dtype, shape, [values])} with dtype F32 or I32."""
    header, chunks, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (dtype, shape, values) in tensors.items():
        fmt = {"F32": "f", "I32": "i"}[dtype]
        chunk = struct.pack(f"<{len(values)}{fmt}", *values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(chunk)]}
        chunks.append(chunk)
        offset += len(chunk)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes with spaces
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def f32(shape, values):
    return ("F32", shape, values)


# A small "gradients" file: values of mixed magnitude, one element exactly zero.
W = [0.5, -1.25, 0.0, 2.0, -0.003, 0.75]
B = [1e-3, -2e-3, 4e-3]
BASE = {"w": f32([2, 3], W), "b": f32([3], B), "loss": f32([1], [2.3])}


def with_tensor(name, tensor, base=BASE):
    out = dict(base)
    out[name] = tensor
    return out


def without(name, base=BASE):
    return {n: t for n, t in base.items() if n != name}


def bytes_of(tensors):
    return safetensors_bytes(tensors, metadata={"note": "selftest"})


GOOD = bytes_of(BASE)

# (case, ACTUAL bytes, EXPECTED bytes, extra args, expected exit status, text the output must hold)
CASES = [
    ("identical files", GOOD, GOOD, [], 0, "PASSED: 3 tensor(s)"),
    ("within tolerance: 1e-5 of max|w| on one element", bytes_of(with_tensor(
        "w", f32([2, 3], [0.5, -1.25, 0.0, 2.0 + 2e-5, -0.003, 0.75]))), GOOD, [], 0, "rel 1.0"),
    # Elementwise this is a 100% error on the small element; normalised by max|w| it is 5e-5.
    ("small element badly off but within max-normalised tolerance", bytes_of(with_tensor(
        "w", f32([2, 3], [0.5, -1.25, 0.0, 2.0, -0.003 + 1e-4, 0.75]))), GOOD, [], 0, None),
    ("outside tolerance: 1e-3 of max|w|", bytes_of(with_tensor(
        "w", f32([2, 3], [0.5, -1.25, 0.0, 2.0, -0.003 + 2e-3, 0.75]))), GOOD, [], 1, "FAIL w"),
    ("nonzero where the expected tensor is all zeros", bytes_of(with_tensor("z", f32([2], [0.0, 1e-9]))),
     bytes_of(with_tensor("z", f32([2], [0.0, 0.0]))), [], 1, "FAIL z"),
    ("all zeros on both sides", bytes_of(with_tensor("z", f32([2], [0.0, 0.0]))),
     bytes_of(with_tensor("z", f32([2], [0.0, 0.0]))), [], 0, None),
    ("looser --rtol admits the 1e-3 error", bytes_of(with_tensor(
        "w", f32([2, 3], [0.5, -1.25, 0.0, 2.0, -0.003 + 2e-3, 0.75]))), GOOD, ["--rtol", "2e-3"], 0, None),
    ("shape mismatch, same element count", bytes_of(with_tensor("w", f32([3, 2], W))), GOOD, [], 1, "FAIL w"),
    ("dtype mismatch", bytes_of(with_tensor("b", ("I32", [3], [0, 0, 0]))), GOOD, [], 1, "FAIL b"),
    ("tensor missing from ACTUAL", bytes_of(without("b")), GOOD, [], 1, "missing from ACTUAL"),
    ("missing tensor is --ignore'd", bytes_of(without("loss")), GOOD, ["--ignore", "loss"], 0, None),
    ("extra tensor in ACTUAL", bytes_of(with_tensor("extra", f32([1], [0.0]))), GOOD, [], 1, "EXTRA extra"),
    ("extra tensor is --ignore'd", bytes_of(with_tensor("extra", f32([1], [0.0]))), GOOD,
     ["--ignore", "extra"], 0, None),
    ("NaN in ACTUAL", bytes_of(with_tensor("b", f32([3], [1e-3, NAN, 4e-3]))), GOOD, [], 1, "NaN or Inf"),
    ("NaN in ACTUAL fails even at a huge --rtol", bytes_of(with_tensor("b", f32([3], [1e-3, NAN, 4e-3]))),
     GOOD, ["--rtol", "1e30"], 1, "FAIL b"),
    ("NaN in EXPECTED", GOOD, bytes_of(with_tensor("b", f32([3], [NAN, -2e-3, 4e-3]))), [], 1, "FAIL b"),
    ("Inf in ACTUAL", bytes_of(with_tensor("b", f32([3], [1e-3, INF, 4e-3]))), GOOD, [], 1, "FAIL b"),
    ("--names skips a bad tensor", bytes_of(with_tensor("b", f32([3], [9.0, 9.0, 9.0]))), GOOD,
     ["--names", "w,loss"], 0, "PASSED: 2 tensor(s)"),
    ("--names includes the bad tensor", bytes_of(with_tensor("b", f32([3], [9.0, 9.0, 9.0]))), GOOD,
     ["--names", "b"], 1, "FAIL b"),
    ("--names names an absent tensor", GOOD, GOOD, ["--names", "nope"], 1, "missing from"),
    ("I32 tensors equal", bytes_of({"labels": ("I32", [4], [3, 1, 4, 1])}),
     bytes_of({"labels": ("I32", [4], [3, 1, 4, 1])}), [], 0, None),
    ("I32 tensors differ", bytes_of({"labels": ("I32", [4], [3, 1, 4, 2])}),
     bytes_of({"labels": ("I32", [4], [3, 1, 4, 1])}), [], 1, "FAIL labels"),
    ("nothing to compare", bytes_of({}), bytes_of({}), [], 1, "nothing to compare"),
    ("ACTUAL truncated in the data", GOOD[:-5], GOOD, [], 2, "truncated"),
    ("EXPECTED truncated in the header", GOOD, GOOD[:20], [], 2, "truncated"),
    ("ACTUAL shorter than the size field", GOOD[:4], GOOD, [], 2, "truncated"),
    ("ACTUAL empty", b"", GOOD, [], 2, "truncated"),
    ("trailing bytes after the data", GOOD + b"\0\0\0\0", GOOD, [], 2, "after the last tensor"),
    ("header is not JSON", struct.pack("<Q", 8) + b"{garbage", GOOD, [], 2, "not valid UTF-8 JSON"),
    ("absurd header size", struct.pack("<Q", 1 << 60) + b"{}", GOOD, [], 2, "implausible"),
    ("byte count does not match the shape", struct.pack("<Q", 64) + json.dumps(
        {"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}).encode().ljust(64) + b"\0" * 8,
     GOOD, [], 2, "data bytes"),
    ("unsupported dtype", struct.pack("<Q", 64) + json.dumps(
        {"w": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}).encode().ljust(64) + b"\0" * 4,
     GOOD, [], 2, "unsupported dtype"),
    ("ACTUAL does not exist", None, GOOD, [], 2, "cannot read"),
]


def run_case(comparator, tmp, index, case):
    name, actual, expected, extra, want_rc, want_text = case
    paths = []
    for role, data in (("actual", actual), ("expected", expected)):
        path = os.path.join(tmp, f"case{index}_{role}.safetensors")
        if data is not None:
            with open(path, "wb") as f:
                f.write(data)
        paths.append(path)
    proc = subprocess.run([sys.executable, comparator, *paths, "--rtol", "1e-4", *extra],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    errors = []
    if proc.returncode != want_rc:
        errors.append(f"exit status {proc.returncode}, want {want_rc}")
    if want_text is not None and want_text not in proc.stdout:
        errors.append(f"output lacks {want_text!r}")
    if "Traceback" in proc.stdout:
        errors.append("the comparator crashed with a traceback")
    return errors, proc.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--comparator", default=os.path.join(HERE, "compare_safetensors.py"))
    args = ap.parse_args()

    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for index, case in enumerate(CASES):
            errors, output = run_case(args.comparator, tmp, index, case)
            if errors:
                failed += 1
                print(f"FAIL {case[0]}: {'; '.join(errors)}")
                print("  | " + output.rstrip().replace("\n", "\n  | "))
            else:
                print(f"ok   {case[0]}")
    if failed:
        print(f"compare_selftest: {failed} of {len(CASES)} cases FAILED")
        return 1
    print(f"compare_selftest: all {len(CASES)} cases passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
