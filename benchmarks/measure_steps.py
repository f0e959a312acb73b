"""The whole-step table in one command: the lean step (first epoch, and with its caches
filled as in later epochs) against the authors' recipe, on the step benchmarks' models
and batches (step_models.py), interleaved so that a change of load on a shared machine
falls on every recipe alike.

    python benchmarks/measure_steps.py --repeats 3
    python benchmarks/measure_steps.py --repeats 3 --paper-sizes --flops   # batch 1+1 at the paper's sizes
    python benchmarks/measure_steps.py --models mae_vit_l16_224 --paper-sizes --profile DIR   # top ops of each recipe

Each repeat times `--rounds` steps of every recipe, one after another in a rotating order;
a repeat's time is its median step, a ratio is authors' median over the recipe's median in
the same repeat. Reported: the median over repeats, and the spread (min-max); with `--flops`,
the FLOP ratio beside it (authors' FLOPs / the recipe's, one step counted by torch's FLOP
counter). The JSON records the machine, the load before and after, the threads, PyTorch's
matmul precision and TF32 switches (left at their defaults) and each recipe's optimizer."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from authors_recipe import OPTIMIZER_IMPL  # noqa: E402
from conftest import clock, sync, timed  # noqa: E402
from step_models import CPU_RUNS, GPU_MODELS, build_step, has_caches, step_flops  # noqa: E402

RECIPES = ("authors", "lean", "lean_cached")
OPTIMIZERS = {"authors": f"torch.optim AdamW/Adam, {OPTIMIZER_IMPL} (torch's default on CUDA, the authors' target)",
              "lean": "AdamW, fused=True (l2l_fast.training.optim.SkippableAdamW)"}


def precision_state() -> dict:
    """PyTorch's fp32 matmul precision and TF32 switches as this run found them."""
    return {"float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}


def machine(device: str) -> dict:
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": device}
    try:
        with open("/proc/cpuinfo") as handle:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if device == "cuda":
        info["device_name"] = torch.cuda.get_device_name()
    return info


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def profile(steps: dict, label: str, device: str, out: Path, count: int = 1, top: int = 25) -> None:
    """torch.profiler's top ops (self CPU time) of `count` steps of each recipe, in out/<label>-<recipe>.txt."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    out.mkdir(parents=True, exist_ok=True)
    for recipe, step in steps.items():
        with profiler(activities=activities) as prof:
            for _ in range(count):
                step.run()
            sync(device)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)
        (out / f"{label}-{recipe}.txt").write_text(f"{label} {recipe}: {count} step(s), top {top} ops by self CPU time "
                                                  f"(torch threads {torch.get_num_threads()}, load {os.getloadavg()})\n"
                                                  f"optimizer: {OPTIMIZERS[recipe.split('_')[0]]}\n{table}\n")


def measure(name: str, precision: str, batch: int, device: str, repeats: int, rounds: int, flops: bool,
            profile_dir: Path | None = None, profile_steps: int = 1, only=RECIPES) -> list[dict]:
    recipes = [r for r in RECIPES if r in only and (r != "lean_cached" or has_caches(name, device))]
    steps = {r: build_step(name, r, precision, batch, device) for r in recipes}
    for step in steps.values():  # fills lean_cached's caches, warms up
        step.run()
        sync(device)
    if profile_dir is not None:
        profile(steps, f"{name}-{precision}-b{batch}", device, profile_dir, profile_steps)
    times = {r: [] for r in recipes}
    for _ in range(repeats):
        per_round = {r: [] for r in recipes}
        for k in range(rounds):
            for r in recipes[k % len(recipes):] + recipes[:k % len(recipes)]:
                per_round[r].append(timed(steps[r].run, device))
        for r in recipes:
            times[r].append(per_round[r])
    rows = []
    counted = {r: step_flops(steps[r]) for r in recipes} if flops else {}
    for r in recipes:
        medians = [statistics.median(t) for t in times[r]]
        ratios = [statistics.median(a) / m for a, m in zip(times["authors"], medians)]
        row = dict(model=name, precision=precision, batch=batch, recipe=r, images=steps[r].images,
                   repeat_medians_s=medians, median_s=statistics.median(medians),
                   images_per_s=steps[r].images / statistics.median(medians),
                   vs_authors=dict(median=statistics.median(ratios), min=min(ratios), max=max(ratios),
                                   per_repeat=ratios))
        if flops:
            row["flops"], row["flop_ratio"] = counted[r], counted["authors"] / counted[r]
        rows.append(row)
        print(line(row), flush=True)
    return rows


def line(row: dict) -> str:
    label = f"{row['model']}-{row['precision']}-b{row['batch']}-{row['recipe']}"
    text = f"  {label:<42}{row['median_s'] * 1e3:>10.1f} ms{row['images_per_s']:>9.1f} img/s"
    if row.get("flops"):
        text += f"{row['flops'] / row['images'] / 1e9:>8.1f} GFLOP/img"
    if row["recipe"] != "authors":
        v = row["vs_authors"]
        text += f"   {v['median']:.2f}x vs authors (spread {v['min']:.2f}-{v['max']:.2f})"
        if row.get("flop_ratio"):
            text += f", FLOP ratio {row['flop_ratio']:.2f}x"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5, help="steps of each recipe per repeat")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--paper-sizes", action="store_true", help="the GPU models at batch 1+1, fp32")
    parser.add_argument("--flops", action="store_true", help="count each step's FLOPs (one more step)")
    parser.add_argument("--models", nargs="*", help="a subset of the models")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="write each recipe's top ops (torch.profiler) here")
    parser.add_argument("--profile-steps", type=int, default=1, help="steps per recipe in a profile")
    parser.add_argument("--recipes", nargs="+", default=RECIPES, choices=RECIPES,
                        help="a subset of the recipes (authors is always measured: the ratios' reference)")
    parser.add_argument("--out", help="JSON to write")
    parser.add_argument("--summary", help="text table to write")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = ([(name, "fp32", 1) for name in GPU_MODELS] if args.paper_sizes
            else [(name, "fp32", batch) for name, batch in CPU_RUNS.items()])
    runs = [r for r in runs if not args.models or r[0] in args.models]
    header = dict(command=" ".join(["python", "benchmarks/measure_steps.py"] + sys.argv[1:]), commit=commit(),
                  date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  machine=machine(args.device), precision_state=precision_state(), optimizers=OPTIMIZERS,
                  repeats=args.repeats, rounds=args.rounds, clock=clock(args.device).__name__,
                  load_before=os.getloadavg())
    print(f"{header['machine']['cpu']}, {header['machine']['threads']} threads, load {header['load_before']}")
    rows = []
    for name, precision, batch in runs:
        print(f"\nunlearning step {precision} {name} batch {batch}+{batch}", flush=True)
        rows += measure(name, precision, batch, args.device, args.repeats, args.rounds, args.flops, args.profile,
                        args.profile_steps, {"authors", *args.recipes})
    header["load_after"] = os.getloadavg()
    print(f"\nload after: {header['load_after']}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({**header, "runs": rows}, handle, indent=2)
    if args.summary:
        with open(args.summary, "w") as handle:
            handle.write(summary({**header, "runs": rows}))


def summary(data: dict) -> str:
    m = data["machine"]
    text = [f"{data['command']}  (commit {data['commit']}, {data['date']})",
            f"machine: {m['cpu']}, {m['cores']} cores, {m['threads']} torch threads, torch {m['torch']}; "
            f"load average {data['load_before']} before, {data['load_after']} after",
            f"matmul precision: {data['precision_state']}",
            f"optimizers: {'; '.join(f'{k}: {v}' for k, v in data['optimizers'].items())}",
            f"{data['repeats']} repeats x {data['rounds']} interleaved steps per recipe; times ({data['clock']}) are medians; "
            "ratio = authors' median / recipe's median in the same repeat, median of repeats (spread min-max)"]
    group = None
    for row in data["runs"]:
        key = (row["model"], row["precision"], row["batch"])
        if key != group:
            group = key
            text.append(f"\nunlearning step {row['precision']} {row['model']} batch {row['batch']}+{row['batch']}")
        text.append(line(row))
    return "\n".join(text) + "\n"


if __name__ == "__main__":
    main()
