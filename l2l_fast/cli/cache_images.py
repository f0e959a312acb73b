"""`l2l-fast cache-images --config run.yaml`: decode a run file's image folders into the
disk decode cache (unlearn.cache_dir) ahead of the GPU job, with a progress bar; the
run then reads every image from the cache (data/decode_cache.py)."""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..data.folders import FileImages
from ..data.loader import default_workers
from ..models.io import load_model
from .run import run_data
from .run_files import ConfigError, RunConfig


class _Reads(torch.utils.data.Dataset):
    def __init__(self, data: FileImages):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        found = self.data.read(index)
        return found.decoded, found.bad


def _tally(items):
    return sum(d for d, _ in items), [i for _, bad in items for i in bad]


def cache_images(config: RunConfig, progress: bool = True) -> dict[str, dict]:
    """{set name: {images, decoded, bad, file}} of the file-based sets of the run."""
    options = config.unlearn
    if options.cache_dir is None:
        raise ConfigError(f"{config.source}: cache-images needs unlearn.cache_dir, the folder of the disk cache")
    try:
        forget, retain = run_data(config, load_model(config.model))
    except (ValueError, FileNotFoundError) as error:
        raise ConfigError(f"{config.source}: data: {error}") from error
    workers = options.num_workers if options.num_workers is not None else default_workers()
    summary = {}
    for name, data in (("forget", forget), ("retain", retain)):
        if not isinstance(data, FileImages):
            continue
        data.use_cache("disk", options.cache_dir)
        loader = torch.utils.data.DataLoader(_Reads(data), batch_size=64, num_workers=workers, collate_fn=_tally)
        decoded, bad = 0, set()
        with tqdm(total=len(data), desc=f"cache {name}", unit="img", disable=not progress) as bar:
            for batch_decoded, batch_bad in loader:
                decoded += batch_decoded
                bad.update(batch_bad)
                bar.update(min(64, len(data) - bar.n))
        summary[name] = {"images": len(data), "decoded": decoded, "bad": sorted(str(data.paths[i]) for i in bad),
                         "file": str(data.cache.path)}
    return summary
