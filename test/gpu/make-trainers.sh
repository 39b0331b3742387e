#!/usr/bin/env bash
# Builds (here, where sbpc runs) the trainers run-gpu-tests.sh needs, into
# .devpkg/trainers, plus the CPU trainer's gradients to compare against.
#   VIT_PRECISIONS="fp32 bf16"  precisions of the ViT fixture trainers (default both)
#   VIT_FP32_MODES="full qkv query head"  the fp32 ones (default all)
#   PATCH_MLP=0                 skip the patch-MLP trainers (fixture and Fashion-MNIST)
#   SHAPE_CLASSES=0             skip the shape-class trainers (below)
#   SOURCES_ONLY=1              write the CUDA trainers' generated sources (NAME.cu) instead of
#                               building them: test/gpu/build-trainers.sh builds them on the GPU
#                               machine (16 cores) in a minute
# Two nvcc builds run at a time.
set -euo pipefail
cd "$(dirname "$0")/../.."
pkg=.devpkg/trainers
mkdir -p $pkg
sbpc=build/bin/sbpc
tmp=$(mktemp -d)
trap 'rm -rf $tmp' EXIT

# cuda NAME ARGS...: sbpc ARGS --target=cuda -o $pkg/NAME.so, two at a time.
cuda() {
  local name=$1; shift
  if [ "${SOURCES_ONLY:-0}" = 1 ]; then
    $sbpc "$@" --target=cuda --emit=cpp -o $pkg/$name.cu
    return
  fi
  while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n; done
  $sbpc "$@" --target=cuda -o $pkg/$name.so &
}
# cpu_grads OUT MODEL KEEPFILE FIXTURES [SBPC ARGS...]: the CPU trainer's gradients of the fixture batch.
cpu_grads() {
  local out=$1 model=$2 keepfile=$3 fix=$4; shift 4
  local keep=(); [ -n "$keepfile" ] && keep=(--keep-indices $keepfile)
  $sbpc $model --target=cpu "$@" -o $tmp/cpu.so
  build/bin/sbp-train $tmp/cpu.so --params $fix/params.safetensors --batch $fix/batch.safetensors \
    "${keep[@]}" --dump-grads $pkg/$out.safetensors > /dev/null
}

if [ "${PATCH_MLP:-1}" != 0 ]; then
  fix=test/numerics/fixtures/patch_mlp_small
  small=test/numerics/Inputs/patch_mlp_small.mlir
  cuda small_full_cuda $small --keep=1.0
  cuda small_sbp_cuda $small
  cuda mnist_full_cuda samples/patch_mlp_mnist.mlir --keep=1.0
  cuda mnist_sbp_cuda samples/patch_mlp_mnist.mlir
  cpu_grads grads_full_cpu $small "" $fix --keep=1.0
  cpu_grads grads_sbp_cpu $small $fix/keep.txt $fix
fi

# ViT: the small fixture model (every attention mode) and the Fashion-MNIST ViT.
vin=test/numerics/Inputs
for prec in ${VIT_PRECISIONS:-fp32 bf16}; do
  modes="full qkv query head"; [ $prec = fp32 ] && modes=${VIT_FP32_MODES:-$modes}
  for mode in $modes; do
    if [ $mode = full ]; then cuda vit_small_full_${prec}_cuda $vin/vit_small_qkv.mlir --keep=1.0 --precision=$prec
    else cuda vit_small_${mode}_${prec}_cuda $vin/vit_small_$mode.mlir --precision=$prec; fi
  done
  cuda vit_fmnist_full_${prec}_cuda samples/vit_fmnist.mlir --keep=1.0 --precision=$prec
  cuda vit_fmnist_sbp_${prec}_cuda samples/vit_fmnist.mlir --precision=$prec
done
# The fp32 trainers are checked on vit_small, the bf16 ones on vit_small_bf16 (milder
# parameters: see test/numerics/README.md); the CPU trainer's gradients of both.
for fixdir in vit_small vit_small_bf16; do
  vfix=test/numerics/fixtures/$fixdir
  cpu_grads ${fixdir}_grads_full_cpu $vin/vit_small_qkv.mlir "" $vfix --keep=1.0
  for mode in qkv query head; do
    keepfile=$vfix/keep.txt; [ $mode = head ] && keepfile=$vfix/keep_head.txt
    cpu_grads ${fixdir}_grads_sbp_${mode}_cpu $vin/vit_small_$mode.mlir $keepfile $vfix
  done
  cpu_grads ${fixdir}_grads_sbp_head_perblock_cpu $vin/vit_small_head.mlir $vfix/keep_head_perblock.txt $vfix
done

# ConvNeXt: the small fixture model (timm's ConvNeXt, 2 stages; dense and a fixed SBP mask on the
# MLP branches and the downsampling) fp32 and bf16, the CPU trainer's gradients of both; the
# Fashion-MNIST ConvNeXt (sbp-zoo convnext --preset fmnist), full and SBP 0.5.
if [ "${CONVNEXT:-1}" != 0 ]; then
  cfix=test/numerics/fixtures/convnext_small
  for prec in fp32 bf16; do
    cuda cnx_small_full_${prec}_cuda $vin/convnext_small.mlir --keep=1.0 --precision=$prec
    cuda cnx_small_sbp_${prec}_cuda $vin/convnext_small.mlir --precision=$prec
  done
  cpu_grads cnx_small_grads_full_cpu $vin/convnext_small.mlir "" $cfix --keep=1.0
  cpu_grads cnx_small_grads_sbp_cpu $vin/convnext_small.mlir $cfix/keep.txt $cfix
  frontends/sbp-zoo convnext --preset fmnist --sbp 0,1 --keep 0.5 -o $pkg/cnx_fmnist.mlir
  cuda cnx_fmnist_full_bf16_cuda $pkg/cnx_fmnist.mlir --keep=1.0 --precision=bf16
  cuda cnx_fmnist_sbp_bf16_cuda $pkg/cnx_fmnist.mlir --precision=bf16
fi

# Shape classes of the generated kernels (codegen/EmitFusedKernels.cpp): small ViTs whose sizes
# put every generator on each of its code paths, CUDA trainers (fp32 and bf16, dense and each SBP
# attention mode) checked against the fp32 CPU trainer's gradients on random parameters.
#   NAME      sbp-zoo arguments                                what it exercises
#   w40       width 40, batch 3 (51 rows)                      rowwise with padded lanes (40 = 32 + 8),
#                                                              rows not a multiple of the 8 warps, vectors of 8
#   w36       width 36, MLP 36, batch 1 (17 rows)              vectors of 4
#   w30       width 30, MLP 30, batch 1                        vectors of 2
#   w33       width 33, head dim 11, batch 1                   scalar loads (odd sizes), odd GEMM strides
#   w1056     patch-MLP, width 1056, hidden 8, ReLU            wide rows (kC = 33), large column sums
shape_class() { # NAME vit|patch-mlp ZOO-ARGS...: every mode of one shape, random parameters and
  local name=sc_$1 kind=$2; shift 2    # batch, the CUDA sources and the CPU trainer's gradients
  local zoo=(frontends/sbp-zoo $kind --img 16 --patch 4 --classes 10 --sbp-blocks 0:1 --keep 0.5 "$@")
  local modes="full qkv query head"; [ $kind = patch-mlp ] && modes="full sbp"
  "${zoo[@]}" --name $name -o $pkg/$name.mlir
  $sbpc $pkg/$name.mlir --emit=mlir-after=sbp-decompose | python3 test/gpu/random_inputs.py --seed 3 \
    $pkg/$name.params.safetensors $pkg/$name.batch.safetensors
  for mode in $modes; do
    local src=$tmp/${name}_$mode.mlir keep=()
    case $mode in
      full) keep=(--keep=1.0); cp $pkg/$name.mlir $src ;;
      sbp) cp $pkg/$name.mlir $src ;;
      *) "${zoo[@]}" --name $name --attn-mode drop_$mode -o $src ;;
    esac
    for prec in fp32 bf16; do cuda ${name}_${mode}_${prec}_cuda $src "${keep[@]}" --precision=$prec; done
    $sbpc $src --target=cpu "${keep[@]}" -o $tmp/cpu.so
    build/bin/sbp-train $tmp/cpu.so --params $pkg/$name.params.safetensors --batch $pkg/$name.batch.safetensors \
      --seed 5 --dump-grads $pkg/$name.grads_${mode}_cpu.safetensors > /dev/null
  done
}
if [ "${SHAPE_CLASSES:-1}" != 0 ]; then
  shape_class w40 vit --dim 40 --heads 2 --mlp-ratio 2 --depth 2 --batch 3
  shape_class w36 vit --dim 36 --heads 3 --mlp-ratio 1 --depth 2 --batch 1
  shape_class w30 vit --dim 30 --heads 2 --mlp-ratio 1 --depth 2 --batch 1
  shape_class w33 vit --dim 33 --heads 3 --mlp-ratio 1 --depth 2 --batch 1
  shape_class w1056 patch-mlp --dim 1056 --hidden 8 --depth 2 --batch 2 --img 8 --act relu
  # Each shape class must really be generated: the vector widths 8, 4, 2, 1 of the elementwise
  # groups, rowwise groups narrower than a warp's multiple and 33 lanes wide.
  if [ "${SOURCES_ONLY:-0}" = 1 ]; then
    for want in "kV = 8" "kV = 4" "kV = 2" "kV = 1" "kN = 40," "kN = 1056," "_column_sums"; do
      grep -q -- "$want" $pkg/sc_*_cuda.cu || { echo "make-trainers.sh: no shape-class trainer has '$want'" >&2; exit 1; }
    done
  fi
fi
wait
