#!/usr/bin/env python3
"""Compare two safetensors files tensor by tensor (Python 3 standard library only).

    compare_safetensors.py ACTUAL EXPECTED [--rtol 1e-4] [--names a,b] [--ignore loss]

Every tensor of EXPECTED must be in ACTUAL with the same shape, and ACTUAL must hold no tensor
that EXPECTED lacks; names given to --ignore are exempt from both and not compared. --names
restricts the comparison to the listed tensors (each must be in both files).

Error measure, per tensor:

    rel = max_i |a_i - e_i| / max_i |e_i|

i.e. the largest absolute error normalised by the expected tensor's largest magnitude, not an
elementwise relative error: gradients cross zero, and near a zero element |a_i - e_i| / |e_i| is
dominated by rounding noise and means nothing. If max|e| is 0, rel is 0 when ACTUAL is all zeros
too and infinite otherwise. A tensor passes if rel <= rtol and neither side holds a NaN or an
infinity.

Exit status: 0 if every compared tensor passes; 1 if any fails, a tensor is missing, extra or
of another shape or dtype, or there is nothing to compare; 2 for a usage error or an unreadable,
truncated or malformed file.
Supported dtypes: F32, F64, I32, I64 (little-endian, as the format prescribes).
"""

import argparse
import array
import json
import math
import struct
import sys

# safetensors dtype -> (array typecode, bytes per element)
DTYPES = {"F32": ("f", 4), "F64": ("d", 8), "I32": ("i", 4), "I64": ("q", 8)}
# Refuse absurd header sizes before reading them (the reference implementation caps it at 100 MB).
MAX_HEADER_BYTES = 100 * 1000 * 1000


class FormatError(Exception):
    pass


class Tensor:
    def __init__(self, dtype, shape, values):
        self.dtype = dtype
        self.shape = shape
        self.values = values


def _unique_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate key among {keys}")
    return dict(pairs)


def read_safetensors(path):
    """{name: Tensor} from a safetensors file; raises FormatError with a readable message."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise FormatError(f"cannot read: {e.strerror}")
    if len(blob) < 8:
        raise FormatError(f"truncated: {len(blob)} bytes, less than the 8-byte header size")
    (header_len,) = struct.unpack_from("<Q", blob, 0)
    if header_len > MAX_HEADER_BYTES:
        raise FormatError(f"header size {header_len} is implausible (corrupt file?)")
    if 8 + header_len > len(blob):
        raise FormatError(f"truncated: header of {header_len} bytes, file has {len(blob) - 8} after the size")
    try:
        header = json.loads(blob[8 : 8 + header_len].decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError) as e:
        raise FormatError(f"header is not valid UTF-8 JSON: {e}")
    if not isinstance(header, dict):
        raise FormatError("header is not a JSON object")

    data = memoryview(blob)[8 + header_len :]
    tensors = {}
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        where = f"tensor '{name}'"
        if not isinstance(entry, dict):
            raise FormatError(f"{where}: header entry is not an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in DTYPES:
            raise FormatError(f"{where}: unsupported dtype {dtype!r} (supported: {', '.join(DTYPES)})")
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise FormatError(f"{where}: bad shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise FormatError(f"{where}: bad data_offsets {offsets!r}")
        begin, end = offsets
        typecode, itemsize = DTYPES[dtype]
        count = math.prod(shape)
        if not 0 <= begin <= end:
            raise FormatError(f"{where}: bad data_offsets {offsets!r}")
        if end - begin != count * itemsize:
            raise FormatError(f"{where}: {end - begin} data bytes for shape {shape} of {dtype}")
        if end > len(data):
            raise FormatError(f"truncated: {where} ends at byte {end}, the data section has {len(data)}")
        values = array.array(typecode)
        if values.itemsize != itemsize:  # Only on an exotic platform.
            raise FormatError(f"this Python's array('{typecode}') is not {itemsize} bytes")
        values.frombytes(data[begin:end])
        if sys.byteorder != "little":
            values.byteswap()
        tensors[name] = Tensor(dtype, shape, values)
        spans.append((begin, end, name))

    # The format requires the data section to be covered exactly, without holes or overlaps.
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            what = "overlaps the previous tensor" if begin < position else "leaves a hole before it"
            raise FormatError(f"tensor '{name}' {what} (offset {begin}, expected {position})")
        position = end
    if position != len(data):
        raise FormatError(f"{len(data) - position} bytes after the last tensor (corrupt file?)")
    return tensors


def compare(actual, expected):
    """(max abs error, relative error, finite) of two equally long value sequences."""
    finite = all(math.isfinite(v) for v in actual) and all(math.isfinite(v) for v in expected)
    if not finite:
        return math.nan, math.nan, False
    max_err = max((abs(a - e) for a, e in zip(actual, expected)), default=0.0)
    scale = max((abs(e) for e in expected), default=0.0)
    if scale > 0:
        rel = max_err / scale
    else:
        rel = 0.0 if max_err == 0 else math.inf
    return float(max_err), float(rel), True


def shape_str(shape):
    return "[" + ",".join(map(str, shape)) + "]"


def split_names(text):
    return [n for n in (text or "").split(",") if n]


def main(argv):
    ap = argparse.ArgumentParser(
        description="Compare the tensors of two safetensors files (relative error max|a-e|/max|e|).")
    ap.add_argument("actual", help="safetensors file under test")
    ap.add_argument("expected", help="reference safetensors file")
    ap.add_argument("--rtol", type=float, default=1e-4, help="largest allowed max|a-e|/max|e| (default 1e-4)")
    ap.add_argument("--names", help="comma-separated tensors to compare (default: all of EXPECTED)")
    ap.add_argument("--ignore", help="comma-separated tensors to skip in either file")
    args = ap.parse_args(argv)
    if not args.rtol >= 0:
        ap.error("--rtol must be a non-negative number")

    files = {}
    for role, path in (("ACTUAL", args.actual), ("EXPECTED", args.expected)):
        try:
            files[role] = read_safetensors(path)
        except FormatError as e:
            print(f"error: {role} {path}: {e}", file=sys.stderr)
            return 2
    actual, expected = files["ACTUAL"], files["EXPECTED"]

    ignore = set(split_names(args.ignore))
    problems = []
    if args.names is not None:
        names = split_names(args.names)
        if not names:
            ap.error("--names is empty")
    else:
        names = sorted(n for n in expected if n not in ignore)
        for n in sorted(set(actual) - set(expected) - ignore):
            problems.append(f"EXTRA {n} {shape_str(actual[n].shape)}: in ACTUAL, not in EXPECTED")

    failures = 0
    width = max((len(n) for n in names), default=0)
    shape_width = max((len(shape_str(t.shape)) for t in expected.values()), default=0)
    for n in names:
        if n not in expected or n not in actual:
            where = " and ".join(r for r, t in (("EXPECTED", expected), ("ACTUAL", actual)) if n not in t)
            print(f"FAIL {n:<{width}}  missing from {where}")
            failures += 1
            continue
        a, e = actual[n], expected[n]
        if a.shape != e.shape or a.dtype != e.dtype:
            print(f"FAIL {n:<{width}}  {a.dtype}{shape_str(a.shape)} in ACTUAL, "
                  f"{e.dtype}{shape_str(e.shape)} in EXPECTED")
            failures += 1
            continue
        max_err, rel, finite = compare(a.values, e.values)
        ok = finite and rel <= args.rtol
        failures += not ok
        note = "" if finite else "  (NaN or Inf)"
        print(f"{'OK  ' if ok else 'FAIL'} {n:<{width}}  {shape_str(e.shape):<{shape_width}}  "
              f"max_abs {max_err:.3e}  rel {rel:.3e}{note}")
    for p in problems:
        print(f"FAIL {p}")
    failures += len(problems)

    compared = len(names)
    if compared == 0:
        print("FAIL nothing to compare")
        failures += 1
    if failures:
        print(f"FAILED: {failures} problem(s), {compared} tensor(s) checked at rtol {args.rtol:g} "
              f"(rel = max|a-e| / max|e|)")
        return 1
    print(f"PASSED: {compared} tensor(s) within rtol {args.rtol:g} (rel = max|a-e| / max|e|)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
