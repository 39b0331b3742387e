#!/usr/bin/env bash
# The GPU tests, run on the GPU machine (device tool) from the repository root
# with .devpkg/ made by scripts/make-devpkg.sh and test/gpu/make-trainers.sh.
# That machine has no MLIR, so sbpc ran here: trainers travel prebuilt.
#
#  1. GoogleTest suites labelled cuda (CUDA kernels vs the CPU kernels, the
#     runtime's CUDA backend).
#  2. Gradient parity: the CUDA trainer's gradients of one batch against the
#     PyTorch fixtures and against the CPU trainer's (fp32: 1e-3), at keep 1.0
#     and with a fixed SBP mask.
#  3. The same for the small ViT in every attention SBP mode, fp32 and bf16.
#  4. The shape classes of the generated kernels: CUDA trainers vs the CPU trainer.
#  5. Training on Fashion-MNIST on the GPU: the patch-MLP in both modes reaches
#     the CPU floor; the ViT with SBP 0.5 lands within 1 point of full backprop.
#     TRAINING=0 skips these runs (the gradient and kernel checks take ~2 min).
# Prints a table last; logs under $OUT when set.
set -uo pipefail
cd "$(dirname "$0")/../.."
pkg=.devpkg
export LD_LIBRARY_PATH="$PWD/$pkg/lib:${LD_LIBRARY_PATH:-}"
out="${OUT:-/tmp/gpu-tests}"
mkdir -p "$out"
fix=test/numerics/fixtures/patch_mlp_small
results=()
record() { results+=("$(printf '%-58s %s' "$1" "$2")"); }
run() { # name, command...
  local name=$1; shift
  if "$@" > "$out/$name.log" 2>&1; then record "$name" PASS; else record "$name" "FAIL (see $name.log)"; fi
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"

# The runtime tests look for their fake trainers and tools where the build
# tree had them: link each missing path to the package (the build root itself
# may exist here: the kernel benchmarks build into build/ of the checkout).
if [ -f $pkg/BUILD_ROOT ]; then
  root=$(cat $pkg/BUILD_ROOT)
  mkdir -p "$root/test/runtime"
  [ -e "$root/bin" ] || ln -sfn "$PWD/$pkg/bin" "$root/bin"
  [ -e "$root/lib" ] || ln -sfn "$PWD/$pkg/lib" "$root/lib"
  [ -e "$root/test/runtime/trainers" ] || ln -sfn "$PWD/$pkg/fake-trainers" "$root/test/runtime/trainers"
fi
# Each suite under a time limit, so that a hang cannot hide the checks after it
# (unloading and reloading a CUDA trainer library once hung the kernel suite;
# trainers are now loaded with RTLD_NODELETE).
for t in sbp-cuda-kernels-tests sbprt-cuda-unit-tests sbprt-cuda-api-tests; do
  [ -x "$pkg/bin/$t" ] && run "$t" timeout 240 "$pkg/bin/$t"
done
# The bf16 attention suite again on the resident kernels. The run above is the
# tiled family's: the default, and what `auto` picks for the suite's batches of
# a few sequences (it wants a CTA per multiprocessor).
[ -x "$pkg/bin/sbp-cuda-kernels-tests" ] && run "attention-bf16-resident-kernels" env SBP_ATTN_KERNELS=resident \
    timeout 120 "$pkg/bin/sbp-cuda-kernels-tests" --gtest_filter='AttentionBf16*'

train=$pkg/bin/sbp-train
# have TRAINER: whether make-trainers.sh built it (PATCH_MLP=0, VIT_PRECISIONS skip some).
have() { [ -f "$pkg/trainers/$1.so" ]; }
for mode in full sbp; do
  have small_${mode}_cuda || continue
  keep=(); [ $mode = sbp ] && keep=(--keep-indices $fix/keep.txt)
  run "grads-$mode-cuda-dump" $train $pkg/trainers/small_${mode}_cuda.so --params $fix/params.safetensors \
      --batch $fix/batch.safetensors "${keep[@]}" --dump-grads "$out/grads_${mode}_cuda.safetensors"
  run "grads-$mode-cuda-vs-pytorch (rtol 1e-3)" python3 test/numerics/compare_safetensors.py \
      "$out/grads_${mode}_cuda.safetensors" $fix/grads_$mode.safetensors --rtol 1e-3 --ignore loss
  run "grads-$mode-cuda-vs-cpu-trainer (rtol 1e-3)" python3 test/numerics/compare_safetensors.py \
      "$out/grads_${mode}_cuda.safetensors" $pkg/trainers/grads_${mode}_cpu.safetensors --rtol 1e-3
done

# ViT (small fixture model): every attention mode, fp32 (1e-3, fixtures vit_small) and bf16
# (2e-2, fixtures vit_small_bf16: milder parameters, see test/numerics/README.md), against PyTorch
# and against the CPU trainer.
for prec in ${VIT_PRECISIONS:-fp32 bf16}; do
  tol=1e-3; fixdir=vit_small
  [ $prec = bf16 ] && tol=2e-2 && fixdir=vit_small_bf16
  vfix=test/numerics/fixtures/$fixdir
  for mode in full qkv query head; do
    keep=(); ref=grads_full; cpu=${fixdir}_grads_full_cpu
    if [ $mode != full ]; then
      ref=grads_sbp_$mode; cpu=${fixdir}_grads_sbp_${mode}_cpu
      keep=(--keep-indices $vfix/keep.txt); [ $mode = head ] && keep=(--keep-indices $vfix/keep_head.txt)
    fi
    name=vit-$mode-$prec
    have vit_small_${mode}_${prec}_cuda || continue
    run "$name-dump" $train $pkg/trainers/vit_small_${mode}_${prec}_cuda.so --params $vfix/params.safetensors \
        --batch $vfix/batch.safetensors "${keep[@]}" --dump-grads "$out/$name.safetensors"
    run "$name-vs-pytorch (rtol $tol)" python3 test/numerics/compare_safetensors.py \
        "$out/$name.safetensors" $vfix/$ref.safetensors --rtol $tol --ignore loss
    run "$name-vs-cpu-trainer (rtol $tol)" python3 test/numerics/compare_safetensors.py \
        "$out/$name.safetensors" $pkg/trainers/$cpu.safetensors --rtol $tol
    # bf16: the same trainer on the resident attention kernels (its few sequences get the tiled
    # ones under the default choice).
    [ $prec = bf16 ] || continue
    run "$name-resident-dump" env SBP_ATTN_KERNELS=resident $train $pkg/trainers/vit_small_${mode}_${prec}_cuda.so \
        --params $vfix/params.safetensors --batch $vfix/batch.safetensors "${keep[@]}" \
        --dump-grads "$out/$name-resident.safetensors"
    run "$name-resident-vs-pytorch (rtol $tol)" python3 test/numerics/compare_safetensors.py \
        "$out/$name-resident.safetensors" $vfix/$ref.safetensors --rtol $tol --ignore loss
  done
  # drop_head drawn per block: the drop_head trainer with other heads in each block.
  name=vit-head-perblock-$prec
  if have vit_small_head_${prec}_cuda; then
    run "$name-dump" $train $pkg/trainers/vit_small_head_${prec}_cuda.so --params $vfix/params.safetensors \
        --batch $vfix/batch.safetensors --keep-indices $vfix/keep_head_perblock.txt \
        --dump-grads "$out/$name.safetensors"
    run "$name-vs-pytorch (rtol $tol)" python3 test/numerics/compare_safetensors.py \
        "$out/$name.safetensors" $vfix/grads_sbp_head_perblock.safetensors --rtol $tol --ignore loss
    run "$name-vs-cpu-trainer (rtol $tol)" python3 test/numerics/compare_safetensors.py \
        "$out/$name.safetensors" $pkg/trainers/${fixdir}_grads_sbp_head_perblock_cpu.safetensors --rtol $tol
  fi
done

# ConvNeXt (small fixture model): dense and fixed-mask SBP, fp32 (1e-3) and bf16 (5e-2: the
# fixture's parameters are timm's init, not milder ones), against PyTorch (timm) and against the
# CPU trainer.
cfix=test/numerics/fixtures/convnext_small
for prec in fp32 bf16; do
  tol=1e-3; [ $prec = bf16 ] && tol=5e-2
  for mode in full sbp; do
    keep=(); [ $mode = sbp ] && keep=(--keep-indices $cfix/keep.txt)
    name=convnext-$mode-$prec
    have cnx_small_${mode}_${prec}_cuda || continue
    run "$name-dump" $train $pkg/trainers/cnx_small_${mode}_${prec}_cuda.so --params $cfix/params.safetensors \
        --batch $cfix/batch.safetensors "${keep[@]}" --dump-grads "$out/$name.safetensors"
    run "$name-vs-pytorch (rtol $tol)" python3 test/numerics/compare_safetensors.py \
        "$out/$name.safetensors" $cfix/grads_$mode.safetensors --rtol $tol --ignore loss
    run "$name-vs-cpu-trainer (rtol $tol)" python3 test/numerics/compare_safetensors.py \
        "$out/$name.safetensors" $pkg/trainers/cnx_small_grads_${mode}_cpu.safetensors --rtol $tol
  done
done
# ConvNeXt on Fashion-MNIST (bf16): SBP 0.5 within 1 point of full backprop, both above the
# patch-MLP's 86.5%.
training=${TRAINING:-1}
if [ "$training" != 0 ] && have cnx_fmnist_full_bf16_cuda; then
  for mode in full sbp; do
    rm -f "$out/cnx_train_$mode.csv"
    run "train-fashion-mnist-convnext-$mode-bf16" $train $pkg/trainers/cnx_fmnist_${mode}_bf16_cuda.so \
        --data $pkg/data --epochs ${CNX_EPOCHS:-10} --seed 1 --log "$out/cnx_train_$mode.csv" --eval-every-epoch
  done
  run "convnext accuracy floor 86.5%, gap < 1 point" python3 test/train/check_accuracy.py \
      "$out/cnx_train_full.csv" "$out/cnx_train_sbp.csv" --floor 86.5 --max-gap 1.0
  grep -h "epoch ${CNX_EPOCHS:-10}/${CNX_EPOCHS:-10}  loss" "$out"/train-fashion-mnist-convnext-*.log 2>/dev/null
fi

# Shape classes of the generated kernels (make-trainers.sh): every generator's code paths, fp32
# (1e-3) and bf16 (2e-2), dense and each attention SBP mode, against the fp32 CPU trainer on
# random parameters (same seed, so the same masks: device masks equal host masks).
for m in $pkg/trainers/sc_*.mlir; do
  [ -e "$m" ] || continue
  base=${m%.mlir}; name=$(basename $base)
  for mode in full qkv query head sbp; do
    for prec in fp32 bf16; do
      tol=1e-3; [ $prec = bf16 ] && tol=2e-2
      have ${name}_${mode}_${prec}_cuda || continue
      run "$name-$mode-$prec-dump" $train $pkg/trainers/${name}_${mode}_${prec}_cuda.so \
          --params $base.params.safetensors --batch $base.batch.safetensors --seed 5 \
          --dump-grads "$out/${name}_${mode}_$prec.safetensors"
      run "$name-$mode-$prec-vs-cpu-trainer (rtol $tol)" python3 test/numerics/compare_safetensors.py \
          "$out/${name}_${mode}_$prec.safetensors" $base.grads_${mode}_cpu.safetensors --rtol $tol
    done
  done
done

# ViT on Fashion-MNIST at its native 28x28 (7x7 patches of 4 px + class token): SBP-0.5 on the
# attention maps and MLPs of the last 4 of 6 blocks within 1 point of full backprop.
vit_epochs=${VIT_EPOCHS:-10}
vit_prec=${VIT_PRECISION:-bf16}
if [ "$training" != 0 ]; then
  for mode in full sbp; do
    rm -f "$out/vit_train_$mode.csv"
    run "train-fashion-mnist-vit-$mode-$vit_prec" $train $pkg/trainers/vit_fmnist_${mode}_${vit_prec}_cuda.so \
        --data $pkg/data --epochs $vit_epochs --seed 1 --log "$out/vit_train_$mode.csv" --eval-every-epoch
  done
  run "vit accuracy floor 85%, gap < 1 point" python3 test/train/check_accuracy.py \
      "$out/vit_train_full.csv" "$out/vit_train_sbp.csv" --floor 85 --max-gap 1.0
  grep -h "epoch $vit_epochs/$vit_epochs  loss" "$out"/train-fashion-mnist-vit-*.log 2>/dev/null
fi

for mode in full sbp; do
  [ "$training" != 0 ] || break
  have mnist_${mode}_cuda || continue
  rm -f "$out/train_$mode.csv"
  run "train-fashion-mnist-$mode-cuda" $train $pkg/trainers/mnist_${mode}_cuda.so --data $pkg/data \
      --epochs 5 --seed 1 --log "$out/train_$mode.csv" --eval-every-epoch
done
[ "$training" != 0 ] && have mnist_full_cuda && run "accuracy floor 84%, gap < 1 point" python3 test/train/check_accuracy.py \
    "$out/train_full.csv" "$out/train_sbp.csv" --floor 84 --max-gap 1.0
grep -h "epoch 5/5  loss" "$out"/train-fashion-mnist-*.log 2>/dev/null

echo
printf '%s\n' "${results[@]}"
! printf '%s\n' "${results[@]}" | grep -q FAIL
