#!/usr/bin/env bash
# On a CUDA machine: build the extension, run the CUDA and Triton tests and the
# GPU benchmarks, and write JSON under $OUT (default benchmarks/results/gpu).
#
# The GPU machine has no internet: carry wheels of anything it lacks in
# .gpu_wheels/ (e.g. `pip download -d .gpu_wheels safetensors tqdm pytest-benchmark
# py-cpuinfo --python-version 3.12 --only-binary=:all:`) and the Fashion-MNIST files.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
status=0

if [ -d .gpu_wheels ]; then
  pip install -q --no-index --find-links .gpu_wheels safetensors tqdm pytest-benchmark || status=1
fi
L2L_FAST_TARGET=cuda MAX_JOBS=16 pip install -q --no-build-isolation --no-deps . 2>&1 | tail -20
python - <<'PY' | tee "$OUT/backends.json"
import json, torch, l2l_fast
print(json.dumps({"backends": l2l_fast.backends(), "device": torch.cuda.get_device_name(),
                  "torch": torch.__version__}, indent=2))
PY
python benchmarks/copy_bandwidth.py > "$OUT/copy_bandwidth.json" || status=1
cat "$OUT/copy_bandwidth.json"

(cd tests && pytest -q -k "cuda or triton or registration" --junitxml="../$OUT/tests.xml") || status=1
L2L_FAST_BENCH_DEVICE=cuda pytest -q benchmarks --benchmark-json "$OUT/benchmarks.json" || status=1
python benchmarks/summarize.py "$OUT/benchmarks.json" | tee "$OUT/summary.txt"
exit $status
