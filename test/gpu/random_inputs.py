#!/usr/bin/env python3
"""Random parameters and one batch for a model, as safetensors (standard library only).

    sbpc MODEL.mlir --emit=mlir-after=sbp-decompose | random_inputs.py --seed 1 PARAMS BATCH

Reads the decomposed model from stdin (every `sbp.param` and `sbp.input` line, the blocks'
parameters included) and writes PARAMS (each parameter drawn around its initialiser, so that no
LayerNorm weight is exactly 1 and no bias exactly 0: the kernels' gradients of gamma, beta and
bias then all depend on the data) and BATCH (images ~ N(0, 1), labels uniform over the classes,
the class count read from the head's bias). Deterministic for a seed.

The magnitudes are those of a trained ViT's early steps (weights ~0.02-0.05), mild enough that
bf16 trainers stay within their tolerance against an fp32 reference.
"""

import argparse
import json
import random
import re
import struct
import sys

PARAM = re.compile(r'sbp\.param "([^"]+)" : tensor<([0-9x]+)xf32> init ?<(\w+)')
INPUT = re.compile(r'sbp\.input "([^"]+)" : tensor<([0-9x]+)x(f32|i32)>')


def shape_of(text):
    return [int(d) for d in text.split("x")]


def count(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def write_safetensors(path, tensors):
    """tensors: list of (name, dtype 'F32'|'I32', shape, values)."""
    header, blobs, offset = {}, [], 0
    for name, dtype, shape, values in tensors:
        code = "f" if dtype == "F32" else "i"
        blob = struct.pack("<%d%s" % (len(values), code), *values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def param_values(rng, init, n):
    if init == "ones":
        return [1.0 + 0.1 * rng.gauss(0, 1) for _ in range(n)]
    if init == "zeros":
        return [0.02 * rng.gauss(0, 1) for _ in range(n)]
    return [0.04 * rng.gauss(0, 1) for _ in range(n)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("params")
    ap.add_argument("batch")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    text = sys.stdin.read()
    params = PARAM.findall(text)
    inputs = INPUT.findall(text)
    if not params or not inputs:
        sys.exit("random_inputs.py: error: no sbp.param / sbp.input lines on stdin")
    classes = None
    tensors = []
    for name, dims, init in params:
        shape = shape_of(dims)
        tensors.append((name, "F32", shape, param_values(rng, init, count(shape))))
        if name == "head.bias":
            classes = shape[0]
    write_safetensors(args.params, tensors)
    batch = []
    for name, dims, elem in inputs:
        shape = shape_of(dims)
        if elem == "f32":
            batch.append((name, "F32", shape, [rng.gauss(0, 1) for _ in range(count(shape))]))
        else:
            if classes is None:
                sys.exit("random_inputs.py: error: no head.bias to take the class count from")
            batch.append((name, "I32", shape, [rng.randrange(classes) for _ in range(count(shape))]))
    write_safetensors(args.batch, batch)


if __name__ == "__main__":
    main()
