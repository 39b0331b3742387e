#!/usr/bin/env python3
"""Checks that each argument is a non-empty PNG: the signature, an IHDR of
positive size and more than 1 KB of image."""
import struct
import sys

for path in sys.argv[1:]:
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        sys.exit(f"check_png: {path} is not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    if width < 100 or height < 100 or len(data) < 1024:
        sys.exit(f"check_png: {path} is {width}x{height}, {len(data)} bytes: empty")
    print(f"PNG {width}x{height} {len(data) // 1024} KB")
