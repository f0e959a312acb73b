"""Official release files into the project: `l2l-fast import`, run files' official
`model:` mapping, and the whole path from the CLI alone (issue 12's "done when")."""
import argparse

import pytest
import torch
import yaml
from conftest import FOLDER_CLASSES, make_folders

from l2l_fast import cli, load_model
from l2l_fast.adapters import adapter_for
from l2l_fast.data import ClassFolders
from l2l_fast.models import MAE, MAGE, PaletteUNet
from l2l_fast.models.masks import parse_mask, patch_keep
from l2l_fast.models.pixels import IMAGENET, SYMMETRIC, UNIT

TINY_MAE = dict(img_size=16, patch_size=4, in_chans=3, embed_dim=32, depth=2, num_heads=2,
                decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
TINY_MAGE = dict(img_size=16, embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=32, decoder_depth=1,
                 decoder_num_heads=2, tokenizer=dict(in_chans=3, ch=16, ch_mult=[1, 2], num_res_blocks=1,
                                                     z_channels=16, n_embed=32, norm_groups=8))
TINY_PALETTE = dict(image_size=16, in_channel=6, out_channel=3, inner_channel=16, channel_mults=[1, 2],
                    res_blocks=1, attn_res=[2], num_head_channels=16, norm_groups=8)
MEAN, STD = torch.tensor(IMAGENET.mean).view(1, 3, 1, 1), torch.tensor(IMAGENET.std).view(1, 3, 1, 1)


def release_mae(path, seed=0):
    """A release-layout MAE file: upstream's keys under "model", an argparse.Namespace under "args"."""
    torch.manual_seed(seed)
    model = MAE(**TINY_MAE)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    state = {k.split(".", 1)[1]: v for k, v in model.state_dict().items()}
    torch.save({"model": state, "args": argparse.Namespace(model="mae_vit_tiny", mask_ratio=0.75),
                "epoch": 399}, path)
    return state


def release_mage(path, with_vqgan=True):
    torch.manual_seed(0)
    model = MAGE(**TINY_MAGE)
    k, width = model.codebook_size, TINY_MAGE["embed_dim"]
    words = torch.randn(k + 1001, width)
    state = {
        "token_emb.word_embeddings.weight": words, "mlm_layer.bias": torch.randn(1, 1, k + 1001),
        **{f"token_emb.{n}": v for n, v in model.encoder.token_emb.state_dict().items() if "word" not in n},
        **{k_: v for k_, v in model.encoder.state_dict().items() if k_.startswith(("blocks.", "norm."))},
        **{k_: v for k_, v in model.decoder.state_dict().items() if not k_.startswith("mlm_layer.word") and
           k_ != "mlm_layer.bias"},
    }
    tokenizer = {f"vqgan.{n}": v for n, v in model.tokenizer.state_dict().items()}
    torch.save({"model": {**state, **(tokenizer if with_vqgan else {})}, "args": argparse.Namespace()}, path)
    return tokenizer


def write_yaml(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def demo_path(model, images, keep):
    """Upstream's demo, written out: ImageNet-normalise, MAE, unpatchify, paste in the
    normalised space, de-normalise, clip."""
    x = (images - MEAN) / STD
    with torch.no_grad():
        y = model.unpatchify(model(x, keep))
    p = model.patch_size
    mask = (~keep).float().view(-1, 1, *model.grid).repeat_interleave(p, 2).repeat_interleave(p, 3)
    pasted = x * (1 - mask) + y * mask
    return (pasted * STD + MEAN).clamp(0, 1)


def test_from_the_cli_alone_release_file_to_unlearned_generation(tmp_path, capsys):
    checkpoint, arch = tmp_path / "mae_visualize_vit_tiny.pth", write_yaml(tmp_path / "arch.yaml", TINY_MAE)
    release_mae(checkpoint)
    imported = tmp_path / "imported.safetensors"
    assert cli.main(["import", "--family", "mae", str(checkpoint), "--arch", str(arch), "--out", str(imported)]) == 0
    printed = capsys.readouterr().out
    original = load_model(imported)
    count = sum(p.numel() for p in original.parameters())
    assert "architecture: MAE(" in printed and f"parameters: {count:,}" in printed
    assert "pixels: (x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225], bounded" in printed
    assert original.pixels == IMAGENET

    data = make_folders(tmp_path / "data", per_class=3)
    unlearned = tmp_path / "unlearned.safetensors"
    run = write_yaml(tmp_path / "run.yaml", {
        "model": str(imported),
        "data": {"dataset": "folders", "root": str(data), "class_list": str(data / "classes.txt"),
                 "image_size": 16, "forget": [FOLDER_CLASSES[0]], "retain": FOLDER_CLASSES[1:]},
        "unlearn": {"steps": 2, "batch_size": 2, "lr": 1e-2, "mask": "inpaint:2", "progress": False},
        "output": str(unlearned),
    })
    assert cli.main(["unlearn", "--config", str(run), "--no-progress"]) == 0
    model = load_model(unlearned).eval()
    assert model.pixels == IMAGENET
    assert any(not torch.equal(a, b) for a, b in zip(model.encoder.state_dict().values(),
                                                      original.encoder.state_dict().values()))
    images = torch.stack([ClassFolders(data, FOLDER_CLASSES, image_size=16, channels=3)[i][0] for i in range(6)])
    keep = patch_keep(parse_mask("inpaint:2"), model.grid, len(images), torch.Generator().manual_seed(0))
    generated = adapter_for(model).generate(images, keep)
    assert generated.min() >= 0 and generated.max() <= 1
    torch.testing.assert_close(generated, demo_path(model, images, keep), atol=1e-4, rtol=0)

    # the same run straight from the release file
    direct = tmp_path / "direct.safetensors"
    raw = yaml.safe_load(run.read_text())
    raw.update(model={"family": "mae", "checkpoint": str(checkpoint), "arch": str(arch)}, output=str(direct))
    assert cli.main(["unlearn", "--config", str(write_yaml(run, raw)), "--no-progress"]) == 0
    for a, b in zip(load_model(direct).state_dict().values(), model.state_dict().values()):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_release_files_load_under_weights_only(tmp_path):
    from l2l_fast.models.loading import read_state_dict

    state = release_mae(tmp_path / "model.pth")
    for layout in ({"model": state, "args": argparse.Namespace(lr=1.0)}, {"state_dict": state}, state):
        torch.save(layout, tmp_path / "file.pth")
        loaded = read_state_dict(tmp_path / "file.pth")
        assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    torch.save({"model": state, "args": Exception("not allowed")}, tmp_path / "other.pth")
    with pytest.raises(Exception, match="[Uu]npickl|weights_only"):
        read_state_dict(tmp_path / "other.pth")


def test_mage_and_palette_import(tmp_path, capsys):
    mage_file, mage_arch = tmp_path / "mage-vitb-1600.pth", write_yaml(tmp_path / "mage.yaml", TINY_MAGE)
    release_mage(mage_file)
    out = tmp_path / "mage.safetensors"
    assert cli.main(["import", "--family", "mage", str(mage_file), "--arch", str(mage_arch), "--out", str(out)]) == 0
    model = load_model(out)
    assert isinstance(model, MAGE) and model.pixels == UNIT and "bounded" in capsys.readouterr().out

    torch.manual_seed(0)
    palette = PaletteUNet(**TINY_PALETTE)
    network = tmp_path / "100_Network.pth"
    torch.save({f"denoise_fn.{k.split('.', 1)[1]}": v for k, v in palette.state_dict().items()}, network)
    out = tmp_path / "palette.safetensors"
    arch = write_yaml(tmp_path / "palette.yaml", TINY_PALETTE)
    assert cli.main(["import", "--family", "palette", str(network), "--arch", str(arch), "--out", str(out)]) == 0
    loaded = load_model(out)
    assert loaded.pixels == SYMMETRIC
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), palette.state_dict().values()))


@pytest.mark.parametrize("family, needle", [("mage", "expected a MAGE checkpoint"),
                                            ("palette", "expected a Palette network")])
def test_a_file_of_another_family_is_one_line_naming_it(tmp_path, capsys, family, needle):
    checkpoint = tmp_path / "mae_visualize_vit_base.pth"
    release_mae(checkpoint)
    argv = ["import", "--family", family, str(checkpoint), "--out", str(tmp_path / "x.safetensors")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(checkpoint) in err and needle in err and "an MAE checkpoint" in err


def test_mage_without_its_tokenizer(tmp_path, capsys):
    from l2l_fast.models.release import load_release

    checkpoint, arch = tmp_path / "mage-vitb-1600.pth", write_yaml(tmp_path / "mage.yaml", TINY_MAGE)
    tokenizer = release_mage(checkpoint, with_vqgan=False)
    with pytest.raises(ValueError, match=f"{checkpoint}.*no VQGAN.*--tokenizer"):
        load_release("mage", checkpoint, arch=str(arch))
    vqgan = tmp_path / "vqgan_jax_strongaug.ckpt"
    torch.save({"state_dict": {k.removeprefix("vqgan."): v for k, v in tokenizer.items()}}, vqgan)
    model = load_release("mage", checkpoint, tokenizer=str(vqgan), arch=str(arch))
    assert all(torch.equal(model.tokenizer.state_dict()[k.removeprefix("vqgan.")], v) for k, v in tokenizer.items())


@pytest.mark.parametrize("model, key", [
    ({"family": "dalle", "checkpoint": "x.pth"}, "model.family"),
    ({"family": "mae", "checkpoint": "no/such.pth"}, "model.checkpoint"),
    ({"family": "mae"}, "model.checkpoint"),
    ({"family": "mae", "checkpoint": "CKPT", "arch": "mage_vit_base_patch16"}, "model.arch"),
    ({"family": "mae", "checkpoint": "CKPT", "tokenizer": "CKPT"}, "model.tokenizer"),
    ({"family": "mae", "checkpoint": "CKPT", "weights": 1}, "model"),
])
def test_run_file_official_model_is_checked_before_loading(tmp_path, capsys, model, key):
    checkpoint = tmp_path / "m.pth"
    checkpoint.write_bytes(b"")  # never read: every mistake is found before loading
    model = {k: (str(checkpoint) if v == "CKPT" else v) for k, v in model.items()}
    run = write_yaml(tmp_path / "run.yaml", {"model": model, "data": {"dataset": "demo", "forget": [0], "retain": [2]},
                                             "unlearn": {"steps": 1, "batch_size": 2}})
    assert cli.main(["unlearn", "--config", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{run}: {key}" in err


def test_the_architecture_is_found_from_the_file():
    from l2l_fast.models import presets, release

    meta = torch.device("meta")
    for name in ("mae_vit_base_patch16", "mae_vit_large_patch16", "mae_vit_huge_patch14"):
        state = {k.split(".", 1)[1]: v for k, v in presets.build(name, meta).state_dict().items()}
        assert release._mae_config(state, None) == presets.ARCHS[name][1]
        assert release._mae_config({}, argparse.Namespace(model=name)) == presets.ARCHS[name][1]
    for name, width, depth in (("mage_vit_base_patch16", 768, 12), ("mage_vit_large_patch16", 1024, 24)):
        state = {"token_emb.word_embeddings.weight": torch.empty(2025, width, device=meta),
                 **{f"blocks.{i}.norm1.weight": torch.empty(width, device=meta) for i in range(depth)}}
        assert release._mage_config(state) == presets.ARCHS[name][1]
    with pytest.raises(ValueError, match="match no mae preset"):
        release._mae_config({k.split(".", 1)[1]: v for k, v in MAE(**TINY_MAE).state_dict().items()}, None)
