#!/usr/bin/env bash
# Rebuild one family's quality table on Fashion-MNIST, end to end:
#
#     bash benchmarks/quality_tables.sh vq          # -> benchmarks/results/quality_vq/
#     bash benchmarks/quality_tables.sh diffusion   # -> benchmarks/results/quality_diffusion/
#
# Steps: pretrain the generator (skipped when its checkpoint is there), its hole MSE beside the
# shipped MAE's, the tuning search on held-out *training* images (vq only; diffusion reuses the MAE's
# chosen setting, see its report), then the test-split table with the chosen setting over 3 seeds.
# The sizes below are what fitted a 2-core CPU in one session; each run's notes say which were used.
set -euo pipefail
family=${1:?usage: quality_tables.sh vq|diffusion}
out=benchmarks/results/quality_$family
mkdir -p "$out"
mae=l2l_fast/assets/mae_fashion_mnist.safetensors

case $family in
  vq)
    checkpoint=$out/mage_fm.safetensors
    [ -f "$checkpoint" ] || l2l-fast pretrain --family vq --out "$checkpoint" --steps 3000 \
      --tokenizer-steps 1500 --batch-size 64 --seed 0
    python benchmarks/family_quality.py "$mae" "$checkpoint" --images 200 --out "$out/hole_mse.json"
    tuning=benchmarks/results/quality_tuning_vq
    for split in s1 s2; do
      python benchmarks/quality_tuning.py --model "$checkpoint" --grid small --held-out 100 --split $split \
        --out $tuning
    done
    python benchmarks/quality_tuning.py --model "$checkpoint" --held-out 100 --summarize --out $tuning
    table_args=(--test-per-class 200)
    ;;
  diffusion)
    checkpoint=$out/palette_fm.safetensors
    [ -f "$checkpoint" ] || l2l-fast pretrain --family diffusion --out "$checkpoint" --steps 1000 \
      --batch-size 64 --seed 0
    python benchmarks/family_quality.py "$mae" "$checkpoint" --images 100 --sample-steps 20 \
      --out "$out/hole_mse.json"
    python benchmarks/sampler_gap.py "$checkpoint" --ddim 20 50 --images 100 --out "$out/sampler_gap.json"
    tuning=benchmarks/results/quality_tuning_mae
    table_args=(--test-per-class 50 --sample-steps 20 --steps 100 --batch-size 16)
    ;;
  *) echo "family must be vq or diffusion, got $family" >&2; exit 2 ;;
esac

read -r lr alpha < <(python -c "import json, sys; c = json.load(open(sys.argv[1]))['chosen']; \
print(c['lr'], c['alpha'])" "$tuning/results.json")
python benchmarks/quality.py --model "$checkpoint" --lr "$lr" --alpha "$alpha" --seeds 0 1 2 \
  "${table_args[@]}" --threads 1 --out "$out"
