#!/usr/bin/env bash
# On a CUDA machine: build the extension (CUDA target), run the CUDA and Triton
# tests, the whole-step benchmarks (lean vs the authors' recipe, benchmarks/authors_recipe.py:
# their torch.randn_like noise, fp32 teacher, default matmul precision; on MAE ViT-L/16,
# MAGE ViT-B, Palette 256), the regression quick set against benchmarks/baselines/<gpu>.json
# (its baseline written under $OUT when there is none yet), the largest batch in 80 GB with the ImageNet wall-time
# estimate (STAGES="... ops" adds the operator benchmarks); JSON under $OUT (default
# benchmarks/results/gpu). Not yet timed on a device: expected 8-12 minutes, so a
# 10-minute call may end in the largest-batch stage; what is written survives, and
# `STAGES=largest` runs the rest in a second call. Needs no network: wheels of
# anything missing are taken from .gpu_wheels/ (see `pip download` under "GPU check"
# in benchmarks/README.md).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
STAGE=$(mktemp -d)
status=0
export TRITON_INTERPRET=0 PYTHONPATH="$STAGE"

if [ -d .gpu_wheels ]; then
  python -m pip install -q --no-index --find-links .gpu_wheels tqdm safetensors pyyaml pytest-benchmark 2>&1 | tail -3
fi

# Build with CMake into a staged copy of the package (no pip, no network).
cp -r l2l_fast "$STAGE/l2l_fast" && cp -r kernels "$STAGE/l2l_fast/kernels"
GEN=$(command -v ninja >/dev/null && echo "-G Ninja")
started=$(date +%s)
cmake -S . -B build/gpu $GEN -DL2L_FAST_TARGET=cuda -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90}" \
  -DPython_EXECUTABLE="$(command -v python)" -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$STAGE/l2l_fast" >"$OUT/cmake.log" 2>&1 \
  && cmake --build build/gpu -j "$(nproc)" >>"$OUT/cmake.log" 2>&1 || { status=1; tail -30 "$OUT/cmake.log"; }
echo "build: $(( $(date +%s) - started )) s"

ROOT=$PWD
OUT=$(realpath "$OUT")
cd "$STAGE"  # so that `import l2l_fast` finds the built copy, not the source tree
python - <<'PY' | tee "$OUT/backends.json"
import json, torch, l2l_fast
print(json.dumps({"backends": l2l_fast.backends(), "device": torch.cuda.get_device_name(),
                  "torch": torch.__version__}, indent=2))
PY
python "$ROOT/benchmarks/copy_bandwidth.py" > "$OUT/copy_bandwidth.json" || status=1
cat "$OUT/copy_bandwidth.json"

# STAGES picks what runs after the build (a second device call can take the rest).
STAGES=" ${STAGES:-tests steps regression input largest} "
if [[ $STAGES == *" tests "* ]]; then
  timeout "${TEST_TIMEOUT:-120}" python -m pytest -q -k "cuda" "$ROOT/tests/test_encoder_distance.py" \
    "$ROOT/tests/test_cuda_step_sync.py" "$ROOT/tests/test_gaussian_target.py" -p no:cacheprovider \
    --junitxml="$OUT/tests.xml" 2>&1 | tail -15 || status=1
fi
# Whole unlearning steps, lean vs the authors' recipe: one JSON per model, so that a
# timeout loses one model only.
if [[ $STAGES == *" steps "* ]]; then
  for model in mae_vit_l16_224 mage_vit_b_256 palette_256; do
    L2L_FAST_BENCH_DEVICE=cuda timeout "${STEP_TIMEOUT:-120}" python -m pytest -q \
      "$ROOT/benchmarks/bench_unlearning_step.py" -k "$model" -p no:cacheprovider \
      --benchmark-json "$OUT/step_$model.json" 2>&1 | tail -3 || status=1
    python "$ROOT/benchmarks/summarize.py" "$OUT/step_$model.json" | tee -a "$OUT/step_summary.txt"
  done
fi
if [[ $STAGES == *" largest "* ]]; then
  timeout "${LARGEST_TIMEOUT:-180}" python "$ROOT/benchmarks/largest_batch.py" --bisect 1 \
    --out "$OUT/largest_batch.json" 2>&1 | tail -9 || status=1
fi
# The regression quick set on the GPU: compared with the committed baseline of this GPU kind
# (benchmarks/baselines/h200.json) when there is one; the run's JSON is kept either way, and
# `python benchmarks/update_baselines.py $OUT/regression.json` writes or refreshes the baseline
# from it (here, at once, when none exists yet: copy it back from $OUT).
if [[ $STAGES == *" regression "* ]]; then
  kind=$(python "$ROOT/benchmarks/ratios.py" --kind cuda)
  compare=()
  [ -f "$ROOT/benchmarks/baselines/$kind.json" ] && compare=(--ratio-baseline "$ROOT/benchmarks/baselines/$kind.json")
  L2L_FAST_BENCH_DEVICE=cuda timeout "${REGRESSION_TIMEOUT:-180}" python -m pytest -q "$ROOT/benchmarks" -m regression \
    -p no:cacheprovider --rootdir "$ROOT" "${compare[@]}" --benchmark-json "$OUT/regression.json" 2>&1 \
    | sed -n '/ratios (/,$p' | grep -v '^-\|^Name\|^test_' | tee "$OUT/regression.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  if [ ${#compare[@]} -eq 0 ] && [ -f "$OUT/regression.json" ]; then
    python "$ROOT/benchmarks/update_baselines.py" "$OUT/regression.json" --baseline "$OUT/$kind.json" || status=1
  fi
fi
# Images/s the input pipeline delivers from an ImageNet-like JPEG folder (0/8/15 workers,
# cold and cached), to set against what the steps above consume.
if [[ $STAGES == *" input "* ]]; then
  (cd "$ROOT" && OUT="$OUT" timeout "${INPUT_TIMEOUT:-180}" bash benchmarks/gpu_input_stage.sh 2>&1 | tail -12) || status=1
fi
# The operator benchmarks (measured on an H200 before).
if [[ $STAGES == *" ops "* ]]; then
  L2L_FAST_BENCH_DEVICE=cuda L2L_FAST_BENCH_QUICK=1 timeout "${BENCH_TIMEOUT:-240}" python -m pytest -q \
    "$ROOT/benchmarks/bench_encoder_distance.py" "$ROOT/benchmarks/bench_gaussian_target.py" \
    -p no:cacheprovider --benchmark-json "$OUT/benchmarks.json" 2>&1 | tail -5 || status=1
  python "$ROOT/benchmarks/summarize.py" "$OUT/benchmarks.json" --bandwidth "$OUT/copy_bandwidth.json" \
    | tee "$OUT/summary.txt"
fi
exit $status
