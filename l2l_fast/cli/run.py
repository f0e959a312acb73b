"""Carry out a validated run file: load the model and data, unlearn, save."""
from __future__ import annotations

import collections
import dataclasses
import pickle
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError

from ..data import (
    ClassFolders, ImageFiles, class_split_folders, first_per_class, read_class_list, read_file_list,
)
from ..adapters import adapter_for
from ..models import save_model
from ..models.io import load_model
from ..models.hf_mae import is_hf_mae, to_mae
from ..training import checkpointing, distributed
from ..unlearning.recipe import unlearn
from .header import model_line, sets_line
from .run_files import ConfigError, RunConfig


def _class_names(config: RunConfig) -> list[str]:
    names = read_class_list(config.data.class_list)
    return [names[c] if isinstance(c, int) else c for c in config.data.retain]


def run_data(config: RunConfig, model):
    """(forget, retain) for unlearn: image tensors or datasets."""
    data = config.data
    if data.dataset == "folders":
        channels, height, _ = adapter_for(model).image_shape
        size = data.image_size or height
        if data.forget_files is not None:
            files = read_file_list(data.forget_files, data.root)
            forget = ImageFiles(files, image_size=size, channels=channels)
            retain = ClassFolders(data.root, _class_names(config), image_size=size, channels=channels,
                                  per_class=data.per_class, exclude=files)
            return forget, retain
        split = class_split_folders(
            data.root, data.class_list, forget=data.forget, retain=data.retain,
            image_size=size, channels=channels, per_class=data.per_class,
        )
        for folders in (split.forget, split.retain):
            found = collections.Counter(index for _, index in folders.samples)
            data.warn_short_classes({name: found[i] for i, name in enumerate(folders.classes)})
        return split.forget, split.retain
    images, labels = data.labelled()
    chosen = (data.retain if data.forget_indices is not None else data.forget + data.retain)
    data.warn_short_classes({name: int((labels == c).sum()) for c, name in zip(chosen, data.class_names(chosen))})
    retain_index = first_per_class(labels, data.retain, data.per_class).sort().values
    if data.forget_indices is not None:
        forget_index = torch.tensor(data.forget_indices)
        if forget_index.max() >= len(images):  # >= 0 is checked with the run file
            raise ConfigError(f"{config.source}: data.forget_indices must lie in [0, {len(images)})")
        retain_index = retain_index[~torch.isin(retain_index, forget_index)]
    else:
        forget_index = first_per_class(labels, data.forget, data.per_class).sort().values
    retain = images[retain_index]
    if config.unlearn.retain_budget is not None or config.unlearn.retain_holdout:  # the check reports per class
        retain = torch.utils.data.TensorDataset(retain, labels[retain_index])
    return images[forget_index], retain


def _header(config: RunConfig, model, forget: int, retain: int) -> None:
    options = config.unlearn
    saves = (f"checkpoints in {options.checkpoint_dir}" if options.checkpoint_dir else "no checkpoints")
    print(model_line(f"model {config.model if isinstance(config.model, str) else config.model['checkpoint']}",
                     model))
    print(sets_line(config.data, forget, retain))
    print(f"unlearn: {options.steps} steps of {options.batch_size} forget + {options.batch_size} retain images, "
          f"method {options.method}, mask {options.mask}, device {options.device or 'cpu'}, {saves}", flush=True)


def run(config: RunConfig, progress: bool = True, resume: bool = False):
    """Under torchrun every process runs this; only rank 0 saves the output.
    `resume` continues from the newest intact checkpoint in unlearn.checkpoint_dir."""
    try:
        model = load_model(config.model)
    except (ValueError, OSError, KeyError, SafetensorError, ImportError, pickle.UnpicklingError) as error:
        raise ConfigError(f"{config.source}: model: {config.model!r} cannot be loaded: {error}") from error
    try:
        forget, retain = run_data(config, model)
    except ConfigError:
        raise
    except (ValueError, FileNotFoundError) as error:
        raise ConfigError(f"{config.source}: data: {error}") from error
    options = config.unlearn
    options = dataclasses.replace(options, progress=progress and options.progress)
    if distributed.launched().is_main:
        _header(config, model, len(forget), len(retain))
    if resume:
        if not options.checkpoint_dir:
            raise ConfigError(f"{config.source}: --resume needs unlearn.checkpoint_dir, the run's checkpoint folder")
        options = dataclasses.replace(options, resume_from=options.checkpoint_dir)
    elif options.checkpoint_dir and checkpointing.existing(options.checkpoint_dir):
        raise ConfigError(f"{config.source}: {options.checkpoint_dir} holds the checkpoints of an unfinished run "
                          f"(step {checkpointing.existing(options.checkpoint_dir)[-1]}): continue it with --resume, "
                          "or delete that folder to start over")
    try:
        unlearn(model, forget, retain, config=options)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{config.source}: unlearn: {error}") from error
    if config.output and distributed.launched().is_main:
        saved = to_mae(model) if is_hf_mae(model) else model  # an HF ViTMAE is saved as this package's MAE
        path = save_model(saved, Path(config.output), extra={"unlearn": config.unlearn.recorded()})
        print(f"saved the unlearned model to {path}")
        if config.checkpoints_by_default:  # a finished run needs its checkpoints no more
            shutil.rmtree(options.checkpoint_dir, ignore_errors=True)
    return model
