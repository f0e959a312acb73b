"""The input pipeline of image folders: workers, decode caches, bad files, resume."""
import multiprocessing
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import l2l_fast
from l2l_fast.data import ClassFolders
from l2l_fast.data.loader import BadFilesError
from l2l_fast.training import checkpointing

from conftest import AE_FORGET, AE_RETAIN, RUN, ConvAutoencoder, run_recipe, tiny_model

CLASSES = ["n01", "n02", "n03"]
RUN_FOLDERS = dict(RUN, steps=6, precision="fp32")


def noisy_folders(root, per_class=4, shape=(20, 24)):
    """Random RGB images, JPEG and PNG, of three classes."""
    generator = np.random.default_rng(0)
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = generator.integers(0, 256, (*shape, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"img_{i}.{'png' if i % 2 else 'jpg'}", quality=95)
    return root


def pillow_reference(path, size=16):
    """Plain Pillow: grey, centre square, bicubic resize, / 255."""
    with Image.open(path) as image:
        image = image.convert("L")
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
        return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None]


def folder_sets(root):
    return (ClassFolders(root, CLASSES[:1], image_size=16, channels=1),
            ClassFolders(root, CLASSES[1:], image_size=16, channels=1))


def recipe_run(forget, retain, callback=None, **options):
    return run_recipe(tiny_model(), forget, retain, l2l_fast.UnlearnConfig(**{**RUN_FOLDERS, **options}),
                      callback=callback)


def same_weights(a, b):
    return all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_folder_runs_match_the_decoded_tensors_with_0_and_2_workers(tmp_path):
    root = noisy_folders(tmp_path)
    forget, retain = folder_sets(root)
    as_tensors = [torch.stack([pillow_reference(p) for p in data.paths]) for data in (forget, retain)]
    reference = l2l_fast.unlearn(tiny_model(), *as_tensors, **RUN_FOLDERS)
    for workers in (0, 2):
        run = recipe_run(*folder_sets(root), num_workers=workers, decode_cache="off")
        assert run.feed.num_workers == workers
        assert same_weights(reference, run.model), f"{workers} workers"


def test_a_memory_cache_decodes_each_image_once(tmp_path):
    root = noisy_folders(tmp_path)
    counts = {}
    for mode in ("off", "memory"):
        run = recipe_run(*folder_sets(root), num_workers=1, decode_cache=mode, steps=9)
        counts[mode] = run.feed.decoded
    assert run.retain.data.cache.filled() == 8  # the worker's decodes, seen by the main process
    # 9 steps of 4 + 4: the 4 forget images 9 times, the 8 retain images 4.5 times
    assert counts == {"off": 2 * 9 * 4, "memory": 4 + 8}


def test_caches_on_by_default_match_no_caches_up_to_rounding(tmp_path):
    """Cached targets were computed in other batches, so they equal the uncached ones up to
    the teacher's rounding (caches.py). Measured on AMD EPYC, 2 threads: losses 8e-8
    relative apart, weights 1-2 ulp (at most 3e-8 on weights up to 0.35); bounds 10x that."""
    root = noisy_folders(tmp_path)
    logs = {"default": [], "plain": []}
    default = recipe_run(*folder_sets(root), num_workers=0, callback=logs["default"].append)
    assert default.forget.data.cache is not None and default.caches["targets"].filled.all()
    plain = recipe_run(*folder_sets(root), num_workers=0, decode_cache="off", cache_targets=False,
                       callback=logs["plain"].append)
    assert plain.forget.data.cache is None and "targets" not in plain.caches
    for name in ("retain", "forget"):
        torch.testing.assert_close([r[name] for r in logs["default"]], [r[name] for r in logs["plain"]],
                                   rtol=1e-6, atol=0)
    ours, theirs = default.model.state_dict(), plain.model.state_dict()
    for key in ours:
        if key.endswith("attn.qkv.bias"):
            # the key bias: softmax ignores it, so its true gradient is 0 and Adam turns the
            # rounding noise of its gradient into lr-sized steps (1.4e-5 measured)
            dim = ours[key].numel() // 3
            ours[key], theirs[key] = ours[key][[*range(dim), *range(2 * dim, 3 * dim)]], \
                theirs[key][[*range(dim), *range(2 * dim, 3 * dim)]]
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-6, atol=1e-9, msg=key)
    images = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    keep = torch.ones(4, 16, dtype=torch.bool)
    with torch.no_grad():  # and so the trained encoders compute the same function
        torch.testing.assert_close(default.model.encoder(images, keep), plain.model.encoder(images, keep),
                                   rtol=1e-5, atol=1e-6)


class BatchRounding(nn.Module):
    """An encoder whose rounding depends on the batch it runs in, on every CPU, as kernels
    that split their work by batch shape do, but coarser (a grid near 1e-3 whose step is
    made of the whole batch), so that a wrong cache shows in the weights of a short run."""

    def __init__(self, encoder):
        super().__init__()
        self.inner = encoder

    def forward(self, x):
        out = self.inner(x)
        grid = 2 ** -10 * (1 + out.detach().abs().mean())
        return out + (torch.round(out.detach() / grid) * grid - out.detach())


def batch_rounding_autoencoder():
    torch.manual_seed(0)
    model = ConvAutoencoder()
    model.encoder = BatchRounding(model.encoder)
    return model, l2l_fast.adapt(model, "encoder", image_shape=(1, 8, 8), patch_size=2)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_resumed_run_repeats_the_straight_run_when_targets_depend_on_the_batch(tmp_path, threads):
    """Refilling the target cache after a resume would compute its rows in other batches;
    the checkpoints keep the rows, so the resume is exact even for such an encoder."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        options = dict(steps=8, batch_size=4, lr=1e-2, mask="inpaint:2", progress=False, seed=3)
        model, adapter = batch_rounding_autoencoder()
        straight = l2l_fast.unlearn(model, AE_FORGET, AE_RETAIN, adapter=adapter, **options)
        folder = tmp_path / "checkpoints"
        model, adapter = batch_rounding_autoencoder()
        recipe = l2l_fast.UnlearnRecipe(model, AE_FORGET, AE_RETAIN, l2l_fast.UnlearnConfig(
            **options, checkpoint_dir=str(folder), checkpoint_every=3), adapter=adapter)
        try:
            recipe.setup()
            assert "targets" in recipe.caches  # on by default for this model and mask
            recipe.train()
        finally:
            recipe.close()
        assert same_weights(straight, model)
        keep_only_step_6(folder)  # the run was killed after step 6
        model, adapter = batch_rounding_autoencoder()
        resumed = l2l_fast.unlearn(model, AE_FORGET, AE_RETAIN, adapter=adapter, resume_from=str(folder),
                                   checkpoint_every=3, **options)
        assert same_weights(straight, resumed)
        # without the kept rows the refilled cache rounds otherwise: the check above can fail
        keep_only_step_6(folder)
        for path in folder.glob("cached-rows-*"):
            path.unlink()
        model, adapter = batch_rounding_autoencoder()
        refilled = l2l_fast.unlearn(model, AE_FORGET, AE_RETAIN, adapter=adapter, resume_from=str(folder),
                                    checkpoint_every=3, **options)
        assert not same_weights(straight, refilled)
    finally:
        torch.set_num_threads(previous)


def test_deleted_and_truncated_files_are_replaced_and_counted(tmp_path):
    root = noisy_folders(tmp_path, per_class=6)
    deleted, truncated = root / CLASSES[1] / "img_2.jpg", root / CLASSES[2] / "img_4.jpg"
    sets = {workers: folder_sets(root) for workers in (0, 2)}
    deleted.unlink()  # after the sets were built
    truncated.write_bytes(truncated.read_bytes()[:200])
    runs = [recipe_run(*sets[workers], num_workers=workers, max_bad_fraction=0.2, steps=8,
                       checkpoint_dir=str(tmp_path / f"checkpoints{workers}")) for workers in (0, 2)]
    for run in runs:
        assert sorted(run.feed.bad["retain"].values()) == [str(deleted), str(truncated)]
        state = checkpointing.load(tmp_path / f"checkpoints{run.feed.num_workers}", 8)
        assert state.meta["bad_files"]["retain"] == sorted([str(deleted), str(truncated)])
    assert same_weights(runs[0].model, runs[1].model)
    # the replacement of a bad sample is the next readable one of the set
    retain = sets[0][1]
    index = retain.paths.index(deleted)
    assert retain.read(index).index == index + 1


def test_more_bad_files_than_allowed_stop_the_run_naming_them(tmp_path):
    root = noisy_folders(tmp_path)
    forget, retain = folder_sets(root)
    for path in retain.paths[:3]:
        path.unlink()
    with pytest.raises(BadFilesError, match=f"retain: [23] of 8 image files are unreadable or gone, more than "
                                            f"max_bad_fraction=0.1; first: {retain.paths[0]}"):
        recipe_run(forget, retain, num_workers=0, max_bad_fraction=0.1)


def test_a_changed_file_is_decoded_again(tmp_path):
    root = noisy_folders(tmp_path)
    data = ClassFolders(root, CLASSES[:1], image_size=16, channels=1)
    assert data.use_cache("disk", tmp_path / "cache") == "disk"
    first = data.read(1)
    assert first.decoded and not data.read(1).decoded
    path = data.paths[1]
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(path)
    status = os.stat(path)
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 1))
    again = data.read(1)
    assert again.decoded and torch.equal(again.pixels, torch.zeros(1, 16, 16, dtype=torch.uint8))


def _fill_half(root, cache_dir, half, queue):
    data = ClassFolders(root, CLASSES, image_size=16, channels=1)
    data.use_cache("disk", cache_dir)
    indices = range(len(data))[half::2]
    queue.put([data.read(i).decoded for i in indices])


def test_two_processes_share_one_disk_cache(tmp_path):
    root, cache_dir = noisy_folders(tmp_path / "images"), tmp_path / "cache"
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    children = [context.Process(target=_fill_half, args=(root, cache_dir, half, queue)) for half in (0, 1)]
    for child in children:
        child.start()
    decoded = [queue.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    assert all(all(d) for d in decoded)
    assert len(list(cache_dir.iterdir())) == 1  # one cache file, no temporary left
    data = ClassFolders(root, CLASSES, image_size=16, channels=1)
    data.use_cache("disk", cache_dir)
    for i, path in enumerate(data.paths):
        found = data.read(i)
        assert not found.decoded
        torch.testing.assert_close(found.pixels.float() / 255, pillow_reference(path), rtol=0, atol=0)


def keep_only_step_6(folder):
    for step in checkpointing.existing(folder):
        if step != 6:
            for suffix in (".json", ".safetensors"):
                (folder / f"step-{step:08d}{suffix}").unlink()
    assert checkpointing.existing(folder) == [6]


def test_a_resumed_run_with_a_disk_cache_repeats_the_straight_run(tmp_path):
    root = noisy_folders(tmp_path)
    straight = recipe_run(*folder_sets(root), num_workers=0, decode_cache="off", steps=8)
    folder = tmp_path / "checkpoints"
    options = dict(num_workers=2, prefetch=3, decode_cache="disk", cache_dir=str(tmp_path / "cache"), steps=8)
    recipe_run(*folder_sets(root), checkpoint_dir=str(folder), checkpoint_every=3, **options)
    keep_only_step_6(folder)  # the run was killed after step 6
    resumed = recipe_run(*folder_sets(root), resume_from=str(folder), **options)
    assert resumed.start == 6 and resumed.feed.decoded == 0  # every image from the cache
    assert same_weights(straight.model, resumed.model)


def test_the_default_worker_count_leaves_a_core(monkeypatch):
    from l2l_fast.data.loader import default_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_workers() == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun, 4 processes: 4 cores each
    assert default_workers() == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert default_workers() == 0


def test_unreadable_cache_mode_and_missing_cache_dir_are_errors(tmp_path):
    data = ClassFolders(noisy_folders(tmp_path), CLASSES, image_size=16, channels=1)
    with pytest.raises(ValueError, match="decode_cache='disk' needs cache_dir"):
        data.use_cache("disk")
    with pytest.raises(ValueError, match="decode_cache must be one of"):
        data.use_cache("ram")
    with pytest.raises(ValueError, match="decode_cache must be one of"):
        l2l_fast.UnlearnConfig(steps=1, batch_size=1, decode_cache="ram")
    shutil.rmtree(tmp_path / CLASSES[0])
    assert len(data) == 12  # the listing was made when the set was built


def test_cache_images_fills_the_disk_cache_of_a_run_file(tmp_path, capsys):
    import yaml

    from l2l_fast.cli.main import main as cli_main

    root = noisy_folders(tmp_path / "images")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    data = {"dataset": "folders", "root": str(root), "class_list": str(root / "classes.txt"), "forget": [0],
            "retain": [1, 2]}
    config = {"model": "demo", "data": data,
              "unlearn": {"steps": 1, "batch_size": 2, "cache_dir": str(tmp_path / "cache"), "num_workers": 1}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert cli_main(["cache-images", "--config", str(tmp_path / "run.yaml"), "--no-progress"]) == 0
    assert "forget: 4 images in" in capsys.readouterr().out
    from l2l_fast.cli.cache_images import cache_images
    from l2l_fast.cli.run_files import load_config

    again = cache_images(load_config(tmp_path / "run.yaml"), progress=False)
    assert {k: (v["images"], v["decoded"]) for k, v in again.items()} == {"forget": (4, 0), "retain": (8, 0)}
    del config["unlearn"]["cache_dir"]
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert cli_main(["cache-images", "--config", str(tmp_path / "run.yaml")]) == 2
    assert "cache-images needs unlearn.cache_dir" in capsys.readouterr().err
