# lit configuration of the sbp test suite.
import os

import lit.formats
from lit.llvm import llvm_config

config.name = "SBP"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.sbp_obj_root, "test")
config.excludes = ["Inputs", "fixtures", "CMakeLists.txt", "README.md", "lit.cfg.py", "lit.site.cfg.py",
                   "check_accuracy.py", "compare_safetensors.py", "make_patch_mlp_fixtures.py",
                   "check_fidelity.py", "check_budget.py", "check_png.py", "make_droppath_fixtures.py",
                   "tensor_arith.py",
                   "runtime", "cpu_kernels"]

# Tests that need a GPU say `REQUIRES: cuda`; CI has none. Tests that only
# compile CUDA say `REQUIRES: nvcc` (CI has the toolkit).
import shutil
import subprocess
if config.enable_cuda or (shutil.which("nvidia-smi") and
                          subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0):
    config.available_features.add("cuda")
if shutil.which("nvcc") or os.path.exists("/usr/local/cuda/bin/nvcc"):
    config.available_features.add("nvcc")

# The real dataset, from Debian's dataset-fashion-mnist package.
fashion = "/usr/share/datasets/fashion-mnist"
if os.path.isdir(fashion):
    config.available_features.add("fashion-mnist")
config.substitutions.append(("%fashion_mnist", fashion))

# scripts/sbp-plot needs matplotlib: the first Python that has it (Debian's
# python3-matplotlib installs into /usr/bin/python3).
for python in (config.python_executable, "/usr/bin/python3"):
    if python and subprocess.run([python, "-c", "import matplotlib"], capture_output=True).returncode == 0:
        config.available_features.add("matplotlib")
        config.substitutions.append(("%plot_python", python))
        break
config.substitutions.append(("%python", config.python_executable))
config.substitutions.append(("%sbp_src", config.sbp_src_root))
config.substitutions.append(("%sbp_obj", config.sbp_obj_root))

llvm_config.with_system_environment(["HOME", "TMPDIR", "OMP_NUM_THREADS"])
llvm_config.use_default_substitutions()
tool_dirs = [config.sbp_tools_dir, config.llvm_tools_dir]
llvm_config.add_tool_substitutions(["sbp-opt", "sbpc", "sbp-train", "sbp-embed-example"], tool_dirs)
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
llvm_config.with_environment("PATH", config.sbp_tools_dir, append_path=True)
