#!/usr/bin/env bash
# The MAE references of the audit studies, each the shipped MAE's recipe (l2l-fast pretrain's defaults:
# 3000 steps, batch 128, lr 1e-3, seed 0, the same masks and schedule) on a different training set:
#   benchmarks/results/canary_mae/canary_mae.safetensors         500 training images carry the canary glyph
#   benchmarks/results/canary_mae/retrained_mae.safetensors      the same data without those 500 images
#   benchmarks/results/retrained_mae_s1/retrained_mae.safetensors without split s1's forget classes 0 and 1
# Each checkpoint's metadata holds its wall time (pretrain.minutes). Run from the repository root:
#   bash benchmarks/studies/retrained_references.sh
set -euo pipefail
canary=benchmarks/results/canary_mae
classes=benchmarks/results/retrained_mae_s1
mkdir -p "$canary" "$classes"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
l2l-fast pretrain --family mae --canaries 500 --canary-seed 0 --out "$canary/canary_mae.safetensors"
l2l-fast pretrain --family mae --exclude-indices "$canary/canary_mae.canaries.json" \
    --out "$canary/retrained_mae.safetensors"
l2l-fast pretrain --family mae --exclude-classes 0 1 --out "$classes/retrained_mae.safetensors"
