#!/usr/bin/env python3
"""Fails when a library kernel name is written as a string literal outside
the kernel table (runtime/include/sbp/kernel_table.def).

The compiler, the emitter and the library headers must take kernel names and
argument orders from the table (sbpk::kernel::<name>, sbpk::lookupKernel,
<sbp/kernel_declarations.inc>). Scanned: compiler/, dialect/, the emitters in
codegen/ and the public library headers. Not scanned: tests (they name the
kernels they test), generated docs, and the library implementations, whose
only use of a name is the label of an error message.

usage: check_kernel_names.py <source root>
"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1])
table = (root / "runtime/include/sbp/kernel_table.def").read_text()
names = set(re.findall(r"^SBP_KERNEL(?:_VARIANT)?\((\w+),", table, re.M))
if len(names) < 10:
    sys.exit(f"check_kernel_names: found only {len(names)} rows in the table")

scanned = [
    *root.glob("compiler/**/*.cpp"), *root.glob("compiler/**/*.h"),
    *root.glob("dialect/**/*.cpp"), *root.glob("dialect/**/*.h"),
    *root.glob("codegen/*.cpp"), *root.glob("codegen/*.h"),
    *root.glob("codegen/cpu/include/**/*.h"), *root.glob("codegen/cuda/include/**/*.h"),
]
literal = re.compile(r'"(' + "|".join(sorted(names, key=len, reverse=True)) + r')"')
found = []
for path in sorted(set(scanned)):
    for number, line in enumerate(path.read_text().splitlines(), 1):
        for m in literal.finditer(line):
            found.append(f"{path.relative_to(root)}:{number}: \"{m.group(1)}\": {line.strip()}")
if found:
    print("kernel names written outside runtime/include/sbp/kernel_table.def "
          "(use sbpk::kernel::<name> or the table's rows):")
    print("\n".join(found))
    sys.exit(1)
print(f"check_kernel_names: {len(names)} kernels, {len(set(scanned))} files clean")
