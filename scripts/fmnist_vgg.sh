#!/usr/bin/env bash
# The VGG-style conv net on Fashion-MNIST, end to end on the loihi2 target, and its benchmarks:
# train (float TTFS, exact gradient), then recipes/fmnist-vgg.yaml (4-bit / 16-step quantization
# with fine-tuning, conv-native export with the Loihi 2 resource map, the emulator on every test
# image against the quantized torch model, Lava fixed_pt on 100 images spike for spike), the 8-bit
# quantization (a quarter epoch of fine-tuning), then the
# emulator, training-speed and peak-memory benchmarks on that net (bench/*-vgg.json, bench/memory.json).
# Run from the repository root in the project env (make env; source .venv/bin/activate).
set -euo pipefail
mkdir -p runs
if [ ! -f runs/fmnist-vgg/hwtune.json ]; then
  OMP_NUM_THREADS=1 hwtune train --arch vgg --dataset fashion-mnist --epochs 20 --batch-size 64 --lr 1e-3 \
    --lr-decay 0.8 --decay-steps 1000 --augment shift-flip --seed 0 -o runs/fmnist-vgg --json > runs/fmnist-vgg-train.json
fi
hwtune run recipes/fmnist-vgg.yaml --force
OMP_NUM_THREADS=1 hwtune quantize runs/fmnist-vgg --bits 8 --steps 16 --epochs 0.25 -o runs/fmnist-vgg-w8 --force --json \
  > runs/fmnist-vgg-w8.json
OMP_NUM_THREADS=1 python scripts/bench_emulator.py --artifact runs/fmnist-vgg-deploy/artifact --samples 2000 --lava-samples 10 \
  --repeats 5 --out bench/emulator-vgg.json
OMP_NUM_THREADS=1 python scripts/bench_train.py --arch vgg --batch-size 64 --samples 6400 --repeats 3
python scripts/bench_memory.py --model runs/fmnist-vgg --arch vgg --train-epochs 0.2 --train-samples 12000 --samples 2000
