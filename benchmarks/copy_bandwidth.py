"""The card's device-to-device copy bandwidth (read + write bytes per second), as JSON."""
import json

import torch


def main() -> None:
    x = torch.empty(256 * 1024 * 1024, dtype=torch.float32, device="cuda")  # 1 GiB
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    rounds = 20
    start.record()
    for _ in range(rounds):
        y.copy_(x)
    end.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(end) / 1e3 / rounds
    print(json.dumps({
        "device": torch.cuda.get_device_name(),
        "copy_GBps": 2 * x.numel() * 4 / seconds / 1e9,
        "torch": torch.__version__,
    }, indent=2))


if __name__ == "__main__":
    main()
