#!/usr/bin/env bash
# Rebuild one family's quality tables on Fashion-MNIST, end to end:
#
#     bash benchmarks/studies/quality_tables.sh mae         # -> benchmarks/results/quality_mae{,_s2,_s3}/
#     bash benchmarks/studies/quality_tables.sh vq          # -> benchmarks/results/quality_vq/
#     bash benchmarks/studies/quality_tables.sh diffusion   # -> benchmarks/results/quality_diffusion/
#
# Steps: pretrain the generator (skipped when its checkpoint is there); its hole MSE, FID and
# accuracy beside the shipped MAE's (skipped when its .json is there); the tuning search on held-out
# *training* images (skipped when its record is there); then the test-split tables with the chosen
# setting over 3 seeds. Every table is resumable: what is already in its folder is kept, and only
# the missing masks and spreads over seeds run.
# The sizes below are what fitted a 2-core CPU; each run's notes say which were used.
set -euo pipefail
family=${1:?usage: quality_tables.sh mae|vq|diffusion}
out=benchmarks/results/quality_$family
mkdir -p "$out"
mae=l2l_fast/assets/mae_fashion_mnist.safetensors

wait_all() {  # wait_all PID...: fails when any of them failed
  local pid
  for pid; do wait "$pid"; done
}

tune() {  # tune MODEL FOLDER ARGS...: the search on s1 and s2 (a core each), unless FOLDER holds its record
  local model=$1 folder=$2 pids=(); shift 2
  [ -f "$folder/results.json" ] && return
  for split in s1 s2; do
    OMP_NUM_THREADS=1 python benchmarks/studies/quality_tuning.py --model "$model" --split $split --out "$folder" "$@" &
    pids+=($!)
  done
  wait_all "${pids[@]}"
  python benchmarks/studies/quality_tuning.py --model "$model" --summarize --out "$folder" "$@"
}

case $family in
  mae)
    checkpoint=demo
    tuning=benchmarks/results/quality_tuning_mae
    tune demo $tuning --grid full --held-out 500
    table_args=()
    ;;
  vq)
    checkpoint=$out/mage_fm.safetensors
    [ -f "$checkpoint" ] || l2l-fast pretrain --family vq --out "$checkpoint" --steps 3000 \
      --tokenizer-steps 1500 --batch-size 64 --seed 0
    [ -f "$out/hole_mse.json" ] ||
      python benchmarks/studies/family_quality.py "$mae" "$checkpoint" --images 200 --out "$out/hole_mse.json"
    tuning=benchmarks/results/quality_tuning_vq
    tune "$checkpoint" $tuning --grid small --held-out 100
    table_args=(--test-per-class 200 --no-ablation)
    ablation_args=(--test-per-class 200)
    ;;
  diffusion)
    checkpoint=$out/palette_fm.safetensors
    [ -f "$checkpoint" ] || l2l-fast pretrain --family diffusion --out "$checkpoint" --steps 3000 \
      --batch-size 64 --seed 0  # ~90 min here
    [ -f "$out/hole_mse.json" ] || python benchmarks/studies/family_quality.py "$mae" "$checkpoint" --images 100 \
      --sample-steps 20 --out "$out/hole_mse.json"
    if [ ! -f "$out/sampler_gap.json" ]; then  # DDPM over 1,000 steps: ~40 min here, a part per core
      pids=()
      for part in 1/2 2/2; do
        OMP_NUM_THREADS=1 python benchmarks/studies/sampler_gap.py "$checkpoint" --ddim 20 50 --images 300 \
          --batch-size 50 --part $part --out "$out/sampler_gap.json" &
        pids+=($!)
      done
      wait_all "${pids[@]}"
    fi
    tuning=benchmarks/results/quality_tuning_diffusion
    # a third of the other families' budget: on a core of its own a Palette run costs ~2 min here, its
    # RETAIN LABEL run ~6 min (DDIM targets at every step); the tables ~40 min, a mask per core
    tune "$checkpoint" $tuning --grid diffusion --batch-size 16 --sample-steps 20 --held-out 50
    table_args=(--test-per-class 50 --sample-steps 20 --batch-size 16 --no-ablation)
    ablation_args=(--test-per-class 50 --sample-steps 20 --batch-size 16)
    ;;
  *) echo "family must be mae, vq or diffusion, got $family" >&2; exit 2 ;;
esac

read -r steps lr alpha < <(python -c "import json, sys; c = json.load(open(sys.argv[1]))['chosen']; \
print(c['steps'], c['lr'], c['alpha'])" "$tuning/results.json")
tables=(--model "$checkpoint" --steps "$steps" --lr "$lr" --alpha "$alpha" --seeds 0 1 2 "${table_args[@]}"
  --threads 1 --resume)
if [ "$family" = diffusion ] && [ ! -f "$out/results.json" ]; then  # a mask per core, then merged
  pids=() parts=()
  for mask in inpaint:3 outpaint:3; do
    parts+=("$out/parts/${mask/:/_}")
    OMP_NUM_THREADS=1 python benchmarks/studies/quality.py "${tables[@]}" --masks $mask --out "${parts[-1]}" &
    pids+=($!)
  done
  wait_all "${pids[@]}"
  python benchmarks/studies/quality.py --merge "${parts[@]}" --out "$out"
fi
python benchmarks/studies/quality.py "${tables[@]}" --out "$out"
if [ "$family" = mae ]; then  # two further splits, inpainting only
  for split in s2 s3; do
    python benchmarks/studies/quality.py --split $split --masks inpaint:3 --no-ablation --steps "$steps" --lr "$lr" \
      --alpha "$alpha" --seeds 0 1 2 --threads 1 --resume --out "${out}_$split"
  done
fi
if [ "$family" != mae ]; then  # the alpha ablation over 3 seeds, in its own folder (the MAE's is in quality_mae)
  python benchmarks/studies/quality.py --model "$checkpoint" --steps "$steps" --lr "$lr" --alpha "$alpha" --seeds 0 1 2 \
    "${ablation_args[@]}" --threads 1 --ablation-only --resume --out "${out}_ablation"
fi
