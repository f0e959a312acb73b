#!/usr/bin/env bash
# gpu_check stage (issue 13): images/s the input pipeline delivers to the GPU from an
# ImageNet-like JPEG folder at 256 px, with 0, 8 and 15 workers, cold and cached.
# Compare with the images/s the paper-size step consumes (bench_unlearning_step).
set -euo pipefail
out="${OUT:-benchmarks/results/gpu_h200}"
mkdir -p "$out"
folder="$(mktemp -d)/imagenet_like"
python benchmarks/bench_input.py --write "$folder" --classes 4 --per-class 250 --rate --size 256 \
    --workers 0 8 15 --device cuda | tee "$out/input_rate.txt"
nproc >> "$out/input_rate.txt"
