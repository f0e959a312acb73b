import pytest
import torch

from l2l_fast.models import MAE
from l2l_fast.models.masks import parse_mask, patch_keep, pixel_keep

TINY = dict(img_size=16, patch_size=4, in_chans=2, embed_dim=32, depth=2, num_heads=4,
            decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return MAE(**TINY).eval()


def test_patchify_roundtrip(model):
    x = torch.randn(3, 2, 16, 16)
    patches = model.patchify(x)
    assert patches.shape == (3, 16, 32)
    assert torch.equal(patches[1, 5].reshape(4, 4, 2)[..., 0], x[1, 0, 4:8, 4:8])
    assert torch.equal(model.unpatchify(patches), x)


def test_encoder_sees_only_visible_patches(model):
    x = torch.randn(2, 2, 16, 16)
    keep = patch_keep(parse_mask("inpaint:2"), model.grid, 2)
    latent = model.encoder(x, keep)
    assert latent.shape == (2, 1 + 12, 32)
    hidden_changed = x + (1 - pixel_keep(keep, model.grid, 4)) * torch.randn_like(x)
    assert torch.allclose(model.encoder(hidden_changed, keep), latent, atol=1e-6)


@pytest.mark.parametrize("spec", ["inpaint:2", "outpaint:2", "random:0.6"])
def test_generate_changes_only_the_hole(model, spec):
    x = torch.rand(4, 2, 16, 16)
    keep = patch_keep(parse_mask(spec), model.grid, 4, torch.Generator().manual_seed(0))
    out = model.generate(x, keep)
    visible = pixel_keep(keep, model.grid, 4).bool().expand_as(x)
    assert torch.equal(out[visible], x[visible])
    assert not torch.allclose(out[~visible], x[~visible])


def test_loss_is_mse_on_hidden_patches(model):
    x = torch.rand(2, 2, 16, 16)
    keep = patch_keep(parse_mask("outpaint:2"), model.grid, 2)
    pred = model(x, keep)
    target = model.patchify(x)
    hidden = ~keep
    expected = (pred - target)[hidden].square().mean()
    assert torch.allclose(model.loss(x, keep), expected, rtol=1e-5)


def test_mixed_visible_counts_are_rejected(model):
    keep = torch.ones(2, 16, dtype=torch.bool)
    keep[0, 0] = False
    with pytest.raises(ValueError, match="same number"):
        model.encoder(torch.rand(2, 2, 16, 16), keep)


def official_state(model: MAE) -> dict:
    """The state dict an official facebookresearch/mae checkpoint of this size holds."""
    names = {}
    for key, value in model.state_dict().items():
        names[key.split(".", 1)[1]] = value.clone()
    return {"model": names}


def test_official_checkpoint_loads(tmp_path, model):
    from l2l_fast.models.mae_official import load_official_mae

    state = official_state(model)
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "norm.weight",
            "mask_token", "decoder_embed.weight", "decoder_blocks.0.mlp.fc2.bias", "decoder_pred.weight"} <= set(state["model"])
    torch.save(state, tmp_path / "mae_visualize_tiny.pth")
    loaded = load_official_mae(tmp_path / "mae_visualize_tiny.pth", model=MAE(**TINY)).eval()
    x = torch.rand(2, 2, 16, 16)
    keep = patch_keep(parse_mask("inpaint:2"), model.grid, 2)
    assert torch.equal(loaded(x, keep), model(x, keep))


def test_official_checkpoint_mismatch_lists_keys_and_shapes(model):
    from l2l_fast.models.mae_official import load_official_mae

    state = official_state(model)["model"]
    del state["decoder_pred.weight"]
    state["blocks.0.attn.qkv.weight"] = torch.zeros(3, 3)
    state["head.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as info:
        load_official_mae(state, model=MAE(**TINY))
    message = str(info.value)
    assert "missing keys: decoder.decoder_pred.weight" in message
    assert "unexpected keys: encoder.head.weight" in message
    assert "encoder.blocks.0.attn.qkv.weight: checkpoint [3, 3] vs model [96, 32]" in message
    with pytest.raises(ValueError, match="arch must be one of"):
        load_official_mae(state, arch="mae_vit_tiny")
