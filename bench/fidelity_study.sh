#!/usr/bin/env bash
# fidelity_study.sh - the gradient fidelity study of docs/fidelity.md, on the CPU: how closely
# SBP's weight gradients follow the exact ones on the Fashion-MNIST ViT (samples/vit_fmnist.mlir),
# for grid against random masks and uniform against increasing and decreasing keep ratios
# (bench/fidelity/*.mlir; the paper's Figs. 2 and 3).
#
#   bash bench/fidelity_study.sh            # results in $OUT (default build/fidelity)
#
# 1. Partly trained parameters: the model without SBP (sbpc --strip-sbp), TRAIN_STEPS steps
#    (default 469, one epoch at batch 128), seed 1; also its training log with --log-grad-norms.
# 2. For each configuration: the trainer with sbpc --exact-step, then sbp-train --grad-fidelity
#    on BATCHES batches (default 16) at those parameters (seed 2: batches and masks), and on
#    INIT_BATCHES (default 8) at the initial parameters (seed 2) for comparison.
# 3. bench/fidelity_summary.py: the table of docs/fidelity.md; scripts/sbp-plot: the figures.
# Environment: OUT, BATCHES, INIT_BATCHES (0: none), TRAIN_STEPS, CONFIGS (names of
# bench/fidelity/*.mlir, default all six), DATA (default /usr/share/datasets/fashion-mnist),
# THREADS (sbp-train --threads, default 0 = all), PLOT_PYTHON (a python3 with matplotlib).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-build/fidelity}
batches=${BATCHES:-16}
init_batches=${INIT_BATCHES:-8}
steps=${TRAIN_STEPS:-469}
data=${DATA:-/usr/share/datasets/fashion-mnist}
threads=${THREADS:-0}
sbpc=build/bin/sbpc
train=build/bin/sbp-train
mkdir -p "$out"
read -r -a configs <<< "${CONFIGS:-uniform_grid uniform_random increasing_grid decreasing_grid increasing_random decreasing_random}"

if [[ ! -f $out/trained.safetensors ]]; then
  "$sbpc" samples/vit_fmnist.mlir --strip-sbp --target=cpu -o "$out/dense.so"
  "$train" "$out/dense.so" --data "$data" --steps "$steps" --seed 1 --threads "$threads" \
    --log "$out/dense_train.csv" --log-grad-norms --save-params "$out/trained.safetensors"
fi
for cfg in "${configs[@]}"; do
  [[ -f $out/$cfg.so ]] || "$sbpc" "bench/fidelity/$cfg.mlir" --target=cpu --exact-step -o "$out/$cfg.so"
  echo "== $cfg"
  "$train" "$out/$cfg.so" --data "$data" --params "$out/trained.safetensors" --seed 2 --threads "$threads" \
    --grad-fidelity "$batches" --fidelity-csv "$out/$cfg.trained.csv"
  if (( init_batches > 0 )); then
    "$train" "$out/$cfg.so" --data "$data" --seed 2 --threads "$threads" \
      --grad-fidelity "$init_batches" --fidelity-csv "$out/$cfg.init.csv"
  fi
done
python3 bench/fidelity_summary.py "$out" "${configs[@]}" | tee "$out/summary.md"
plot_python=${PLOT_PYTHON:-/usr/bin/python3}
"$plot_python" scripts/sbp-plot fidelity "$out/uniform_grid.trained.csv" "$out/uniform_random.trained.csv" \
  --label "grid, keep 0.5" --label "random, keep 0.5" -o "$out/fidelity_masks.png" \
  --title "Grid vs random masks: cosine(dW SBP, dW exact), ViT on Fashion-MNIST, $batches batches"
"$plot_python" scripts/sbp-plot fidelity "$out/uniform_grid.trained.csv" "$out/increasing_grid.trained.csv" \
  "$out/decreasing_grid.trained.csv" --label "uniform 0.5" --label "increasing 0.25..0.75" \
  --label "decreasing 0.75..0.25" -o "$out/fidelity_schedules.png" \
  --title "Keep-ratio schedules (grid): cosine(dW SBP, dW exact), ViT on Fashion-MNIST, $batches batches"
echo "results in $out"
