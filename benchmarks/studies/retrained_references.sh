#!/usr/bin/env bash
# The MAE models of the audit studies, each the shipped MAE's recipe (l2l-fast pretrain: batch 128, lr 1e-3,
# seed 0, its masks, warm-up + cosine over the run) for STEPS steps (default 600; the shipped MAE ran 3000,
# which the shared 2-core machine could not afford five times over), on five training sets:
#   benchmarks/results/canary_mae/canary_mae.safetensors        Fashion-MNIST train, 500 images carrying the
#                                                               canary glyph (their indices: canary_mae.canaries.json)
#   benchmarks/results/canary_mae/retrained_mae.safetensors     the same without those 500 images; also the
#                                                               class-level study's Original
#   benchmarks/results/retrained_mae_s1/retrained_mae.safetensors  that, also without split s1's forget
#                                                               classes 0 and 1
#   benchmarks/results/canary_mae_2000/{canary_mae,retrained_mae}.safetensors  as the first two, 2000 canaries
# Each checkpoint's metadata holds its wall time (pretrain.minutes). From the repository root:
#   bash benchmarks/studies/retrained_references.sh
set -euo pipefail
canary=benchmarks/results/canary_mae
classes=benchmarks/results/retrained_mae_s1
steps=${STEPS:-600}
mkdir -p "$canary" "$classes"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
l2l-fast pretrain --family mae --steps "$steps" --canaries 500 --canary-seed 0 --out "$canary/canary_mae.safetensors"
l2l-fast pretrain --family mae --steps "$steps" --exclude-indices "$canary/canary_mae.canaries.json" \
    --out "$canary/retrained_mae.safetensors"
l2l-fast pretrain --family mae --steps "$steps" --exclude-indices "$canary/canary_mae.canaries.json" \
    --exclude-classes 0 1 --out "$classes/retrained_mae.safetensors"
# 500 canaries in 600 steps left only a faint trace of the glyph (benchmarks/results/canary_mae/README.md);
# the canary study runs on 2000 canaries:
canary=benchmarks/results/canary_mae_2000
mkdir -p "$canary"
l2l-fast pretrain --family mae --steps "$steps" --canaries 2000 --canary-seed 0 --out "$canary/canary_mae.safetensors"
l2l-fast pretrain --family mae --steps "$steps" --exclude-indices "$canary/canary_mae.canaries.json" \
    --out "$canary/retrained_mae.safetensors"
