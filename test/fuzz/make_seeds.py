#!/usr/bin/env python3
"""Writes the hand-made seed inputs of the runtime fuzz targets into corpus/.

Small valid files of each format (and a gzipped variant where the reader
gunzips), so that the fuzzer starts from inputs that reach the deep checks.
Run it again after changing it; the outputs are committed.
"""
import gzip
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SPLIT = b"\n--sbp-fuzz-file--\n"  # FuzzSupport.h kSplitMarker


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def idx(dims, payload):
    magic = 0x0800 | len(dims)
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + bytes(payload)


def idx_seeds():
    train_images = idx([2, 4, 4], range(32))
    train_labels = idx([2], [0, 1])
    test_images = idx([1, 4, 4], [7] * 16)
    test_labels = idx([1], [1])
    files = [train_images, train_labels, test_images, test_labels]
    write("idx", "plain", SPLIT.join(files))
    write("idx", "gzipped", SPLIT.join(gzip.compress(f, mtime=0) for f in files))
    write("idx", "empty-test", SPLIT.join([train_images, train_labels, idx([0, 4, 4], []), idx([0], [])]))


def cifar_seeds():
    record = lambda label, fill: bytes([label]) + bytes([fill]) * 3072
    batches = [record(k, 10 * k) for k in range(5)] + [record(9, 255)]
    write("cifar", "one-record-each", SPLIT.join(batches))
    write("cifar", "gzipped", SPLIT.join(gzip.compress(b, mtime=0) for b in batches))


def safetensors(tensors, metadata=None):
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def safetensors_seeds():
    f32 = struct.pack("<6f", *range(6))
    i32 = struct.pack("<3i", 1, -2, 3)
    write("safetensors", "one-f32", safetensors([("w", "F32", [2, 3], f32)]))
    write("safetensors", "f32-i32-meta", safetensors(
        [("blocks.0.weight", "F32", [2, 3], f32), ("keep", "I32", [3], i32)],
        {"sbp.abi": "2", "sbp.step": "10"}))
    write("safetensors", "scalar-and-empty", safetensors([("s", "F32", [], f32[:4]), ("e", "F32", [0], b"")]))
    write("safetensors", "empty-header", safetensors([]))


def keep_indices_seeds():
    write("keep-indices", "one-line", b"0 1 2 5\n")
    write("keep-indices", "per-group", b"# group @m\n0 2 4\n\n# heads\n-\n1 2\n")
    write("keep-indices", "comments", b"  3\t4 # trailing\n#only a comment\n-2147483648 2147483647\n")


if __name__ == "__main__":
    idx_seeds()
    cifar_seeds()
    safetensors_seeds()
    keep_indices_seeds()
