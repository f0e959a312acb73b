import json

import pytest
import torch

from l2l_fast import load_model
from l2l_fast.training.files import read, save_tensors
from l2l_fast.models import MAE, save_model
from l2l_fast.models.masks import parse_mask, patch_keep
from l2l_fast.training.checkpointing import optimizer_tensors, restore_optimizer

TINY = dict(img_size=8, patch_size=4, in_chans=1, embed_dim=16, depth=1, num_heads=2,
            decoder_embed_dim=8, decoder_depth=1, decoder_num_heads=2)


def test_model_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = MAE(**TINY).eval()
    path = save_model(model, tmp_path / "m.safetensors", extra={"note": "x"})
    loaded = load_model(path).eval()
    x = torch.rand(2, 1, 8, 8)
    keep = patch_keep(parse_mask("inpaint:1"), model.grid, 2)
    assert torch.equal(model(x, keep), loaded(x, keep))
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left
    _, meta = read(path)
    assert meta["family"] == "mae" and meta["config"]["embed_dim"] == 16 and meta["note"] == "x"


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing.safetensors")
    save_tensors({"a": torch.zeros(1)}, {"family": "gan"}, tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="unknown model family 'gan'"):
        load_model(tmp_path / "bad.safetensors")


def test_optimizer_roundtrip():
    param = torch.nn.Parameter(torch.randn(3))
    optimizer = torch.optim.AdamW([param], lr=0.1)
    param.grad = torch.ones(3)
    optimizer.step()
    tensors, meta = optimizer_tensors(optimizer)
    json.dumps(meta)
    other = torch.optim.AdamW([torch.nn.Parameter(param.detach().clone())], lr=0.5)
    restore_optimizer(other, tensors, meta)
    for key, value in optimizer.state_dict()["state"][0].items():
        assert torch.equal(torch.as_tensor(other.state_dict()["state"][0][key]), torch.as_tensor(value))
    assert other.param_groups[0]["lr"] == 0.1
