"""Builds l2l_fast._C by driving CMakeLists.txt (the one build definition).

The target follows the installed torch: CUDA kernels are built when torch is a
CUDA build and nvcc is found; L2L_FAST_TARGET=cpu|cuda overrides.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def build_target() -> str:
    forced = os.environ.get("L2L_FAST_TARGET", "").strip().lower()
    if forced:
        if forced not in ("cpu", "cuda"):
            raise ValueError(f"L2L_FAST_TARGET must be 'cpu' or 'cuda', got {forced!r}")
        return forced
    import torch

    has_nvcc = shutil.which("nvcc") is not None or bool(os.environ.get("CUDA_HOME"))
    return "cuda" if torch.version.cuda and has_nvcc else "cpu"


class CMakeExtension(Extension):
    def __init__(self, name: str):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: CMakeExtension) -> None:
        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_dir = Path(self.build_temp).resolve() / ext.name
        build_dir.mkdir(parents=True, exist_ok=True)
        target = build_target()
        print(f"l2l_fast: building the {target} target", flush=True)
        configure = [
            "cmake", str(ROOT),
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DL2L_FAST_TARGET={target}",
            "-DCMAKE_BUILD_TYPE=Release",
        ]
        if shutil.which("ninja"):
            configure += ["-G", "Ninja"]
        jobs = os.environ.get("MAX_JOBS", str(os.cpu_count() or 1))
        subprocess.check_call(configure, cwd=build_dir)
        subprocess.check_call(["cmake", "--build", ".", "-j", jobs], cwd=build_dir)


setup(
    packages=find_packages(include=["l2l_fast", "l2l_fast.*"]) + ["l2l_fast.kernels"],
    package_dir={"l2l_fast.kernels": "kernels"},
    package_data={"l2l_fast": ["assets/*"]},
    ext_modules=[CMakeExtension("l2l_fast._C")],
    cmdclass={"build_ext": CMakeBuild},
)
