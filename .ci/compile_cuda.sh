#!/usr/bin/env bash
# Compiles every csrc/cuda/*.cu with nvcc against the installed torch's headers
# (objects only, nothing is linked or installed). Works with a CPU-only torch:
# its wheel lacks c10/cuda/impl/cuda_cmake_macros.h, which a CUDA build
# generates, so a stand-in is written to a temporary include directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
NVCC="${NVCC:-nvcc}"
ARCH="${CUDA_ARCH:-sm_90}"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

TORCH_INCLUDES="$("$PYTHON" -c 'import torch.utils.cpp_extension as c; print(" ".join(c.include_paths()))')"
PY_INCLUDE="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
CXX11_ABI="$("$PYTHON" -c 'import torch; print(int(torch.compiled_with_cxx11_abi()))')"

MACROS_DIR="$TMP/include/c10/cuda/impl"
mkdir -p "$MACROS_DIR"
found=0
for inc in $TORCH_INCLUDES; do
  [[ -f "$inc/c10/cuda/impl/cuda_cmake_macros.h" ]] && found=1
done
if [[ $found -eq 0 ]]; then
  printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' > "$MACROS_DIR/cuda_cmake_macros.h"
fi

INCLUDE_FLAGS=(-I"$ROOT/csrc" -I"$TMP/include" -I"$PY_INCLUDE")
for inc in $TORCH_INCLUDES; do
  INCLUDE_FLAGS+=(-isystem "$inc")
done

shopt -s nullglob
sources=("$ROOT"/csrc/cuda/*.cu)
if [[ ${#sources[@]} -eq 0 ]]; then
  echo "compile_cuda: no csrc/cuda/*.cu files" >&2
  exit 1
fi

status=0
for src in "${sources[@]}"; do
  obj="$TMP/$(basename "${src%.cu}").o"
  echo "nvcc -c $(realpath --relative-to="$ROOT" "$src")"
  if ! "$NVCC" -c -std=c++17 -O3 -arch="$ARCH" --expt-relaxed-constexpr -lineinfo \
      -Xcompiler -fPIC -D_GLIBCXX_USE_CXX11_ABI="$CXX11_ABI" \
      "${INCLUDE_FLAGS[@]}" "$src" -o "$obj"; then
    status=1
  fi
done
exit $status
