#!/usr/bin/env python3
"""Elementwise arithmetic on safetensors files (Python 3 standard library only), for tests that
check identities between gradient dumps with compare_safetensors.py.

    tensor_arith.py scale IN OUT [NAME_PREFIX=FACTOR ...]   OUT = IN, tensors whose name starts
                                                           with a prefix multiplied by its factor
    tensor_arith.py add A B OUT                             OUT = A + B (the same names and shapes)

F32 and F64 tensors are computed in double and written as their own dtype; other tensors are
copied (scale) or must be equal (add).
"""

import argparse
import array
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_safetensors import DTYPES, FormatError, Tensor, read_safetensors  # noqa: E402


def write_safetensors(path, tensors):
    header, chunks, offset = {}, [], 0
    for name, t in tensors.items():
        values = array.array(DTYPES[t.dtype][0], t.values)
        if sys.byteorder != "little":
            values.byteswap()
        data = values.tobytes()
        header[name] = {"dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def is_float(t):
    return t.dtype in ("F32", "F64")


def scale(args):
    factors = []
    for spec in args.factors:
        prefix, _, factor = spec.rpartition("=")
        if not prefix:
            sys.exit(f"tensor_arith.py: expected NAME_PREFIX=FACTOR, got {spec!r}")
        factors.append((prefix, float(factor)))
    tensors = read_safetensors(args.input)
    used = set()
    for name, t in tensors.items():
        for prefix, factor in factors:
            if name.startswith(prefix) and is_float(t):
                t.values = array.array(t.values.typecode, (v * factor for v in t.values))
                used.add(prefix)
    unused = [p for p, _ in factors if p not in used]
    if unused:
        sys.exit(f"tensor_arith.py: no tensor of {args.input} starts with {unused}")
    write_safetensors(args.output, tensors)


def add(args):
    a, b = read_safetensors(args.a), read_safetensors(args.b)
    if set(a) != set(b):
        sys.exit(f"tensor_arith.py: the files hold different tensors: {sorted(set(a) ^ set(b))}")
    out = {}
    for name, t in a.items():
        u = b[name]
        if t.dtype != u.dtype or t.shape != u.shape:
            sys.exit(f"tensor_arith.py: tensor '{name}' differs in dtype or shape")
        if not is_float(t):
            if t.values != u.values:
                sys.exit(f"tensor_arith.py: integer tensor '{name}' differs")
            out[name] = t
            continue
        out[name] = Tensor(t.dtype, t.shape, array.array(t.values.typecode, (x + y for x, y in zip(t.values, u.values))))
    write_safetensors(args.output, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("scale")
    s.add_argument("input")
    s.add_argument("output")
    s.add_argument("factors", nargs="*")
    s.set_defaults(run=scale)
    d = sub.add_parser("add")
    d.add_argument("a")
    d.add_argument("b")
    d.add_argument("output")
    d.set_defaults(run=add)
    args = ap.parse_args()
    try:
        args.run(args)
    except FormatError as e:
        sys.exit(f"tensor_arith.py: {e}")


if __name__ == "__main__":
    main()
