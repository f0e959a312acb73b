"""Distributed unlearning on GPUs (nccl; DDP and FSDP2) against one GPU, on the
shipped Fashion-MNIST MAE. Not a test: a check to run on a machine with N >= 2 GPUs.

    python benchmarks/check_distributed.py --out runs/dist                       # 1 GPU, the reference
    torchrun --nproc_per_node=N benchmarks/check_distributed.py --out runs/dist  # N GPUs, compared

Each call writes <out>/<case>-<world size>.safetensors (encoder) and .json (loss
curve), resumes each case from its middle checkpoint, and prints JSON (rank 0):
per case the largest loss and weight differences of the resumed run from the
uninterrupted one and, with N GPUs, of the N-GPU run from the 1-GPU run.
"""
import argparse
import json
import os
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

import l2l_fast
from l2l_fast import load_model
from l2l_fast.data.assets import load_demo_images

RUN = dict(steps=20, batch_size=64, lr=1e-3, mask="random:0.5", progress=False)
CASES = {"ddp": {}, "fsdp": {"fsdp": True}}


def unlearn(log, device, **kwargs):
    images, labels = load_demo_images("train")
    forget, retain = images[labels == 0], images[(labels >= 2) & (labels <= 5)]
    model = load_model("demo")
    return l2l_fast.unlearn(model, forget, retain, callback=log.append, device=device, **RUN,
                            **kwargs).encoder


def largest_differences(a_path: Path, b_path: Path) -> dict:
    """Loss curves compared step by step; the attention key biases, whose true gradient
    is zero, drift by up to lr per step under Adam and are listed apart."""
    a, b = load_file(a_path.with_suffix(".safetensors")), load_file(b_path.with_suffix(".safetensors"))
    a_log, b_log = ({r["step"]: r["loss"] for r in json.loads(p.with_suffix(".json").read_text())}
                    for p in (a_path, b_path))
    weights = {k: (a[k].float() - b[k].float()).abs().max().item() for k in a}
    return {"loss_rel": max(abs(a_log[s] - b_log[s]) / abs(b_log[s]) for s in a_log),
            "weight_abs": max(v for k, v in weights.items() if not k.endswith("qkv.bias")),
            "qkv_bias_abs": max(v for k, v in weights.items() if k.endswith("qkv.bias")),
            "bit_identical": all(torch.equal(a[k], b[k]) for k in a)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cuda", help="cpu (gloo) only to try the script")
    args = parser.parse_args()
    out, device = Path(args.out), torch.device(args.device)
    world, main_rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0")) == 0
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    out.mkdir(parents=True, exist_ok=True)
    cases = {"ddp": {}} if world == 1 else CASES

    def save(name, encoder, log):
        if main_rank:
            save_file({k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()},
                      out / f"{name}.safetensors")
            (out / f"{name}.json").write_text(json.dumps(log))

    def run_after_barrier(name: str, **options) -> None:
        if world > 1:
            dist.barrier()
        log = []
        save(name, unlearn(log, device, checkpoint_every=10, **options), log)

    for case, kwargs in cases.items():
        folder = out / f"{case}-{world}-checkpoints"
        if main_rank:
            shutil.rmtree(folder, ignore_errors=True)
        run_after_barrier(f"{case}-{world}", checkpoint_dir=str(folder), **kwargs)
        if main_rank:
            for path in folder.glob("step-00000020.*"):
                path.unlink()
        run_after_barrier(f"{case}-{world}-resumed", resume_from=str(folder), **kwargs)
    if main_rank:
        report = {case: {"resumed_vs_straight": largest_differences(out / f"{case}-{world}-resumed",
                                                                     out / f"{case}-{world}")}
                  for case in cases}
        if world > 1:
            for case in cases:
                report[case]["vs_one_gpu"] = largest_differences(out / f"{case}-{world}", out / "ddp-1")
        name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
        print(json.dumps({"world_size": world, "device": name, **report}, indent=2))
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
