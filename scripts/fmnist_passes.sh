#!/usr/bin/env bash
# The hardware-pass experiments of the issue notes on Fashion-MNIST FC 784-340-10 (loihi2 target).
# Needs a trained model: hwtune train --arch fc --dataset fashion-mnist --epochs 10 --twin \
#   --dtype float64 --seed 0 --out runs/fmnist-fc2
# Each command prints a before/after summary line; the records are in each model's hwtune.json
# (the --eval-only ones, which write no model, in a JSON file beside them).
set -euo pipefail
M=${1:-runs/fmnist-fc2}
O=${2:-runs/fmnist}
H="hwtune"
common=(--target loihi2 --seed 0 --lr 1e-4 --force)
for bits in 8 4 3 2; do
  $H quantize --bits "$bits" --steps 16 --epochs 0 "$M" -o "$O/w${bits}s16-noft" "${common[@]}"
  $H quantize --bits "$bits" --steps 16 --epochs 1 "$M" -o "$O/w${bits}s16" "${common[@]}"
done
for steps in 16 8; do
  $H latency --steps "$steps" --window-quantile 0.99 --epochs 1 "$O/w4s16" -o "$O/w4-lat${steps}" "${common[@]}"
done
for sigma in 0.05 0.1 0.2; do
  $H noise --jitter "$sigma" --eval-only "$O/w4s16" --target loihi2 --seed 0 --json > "$O/w4s16-jit${sigma}-eval.json"
done
$H noise --jitter 0.1 --epochs 1 "$O/w4s16" -o "$O/w4s16-noiseft" "${common[@]}"
for sigma in 0.05 0.1 0.2; do
  $H noise --jitter "$sigma" --eval-only "$O/w4s16-noiseft" --target loihi2 --seed 0 --json > "$O/w4s16-noiseft-jit${sigma}-eval.json"
done
