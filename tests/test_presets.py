"""Paper-size presets have the release files' shapes: built on the meta device (no memory)
and checked against an independent implementation (HF's ViTMAE) or against upstream's
shapes written out from its model code."""
import pytest
import torch

from l2l_fast.models import presets
from l2l_fast.models.loading import load_exact
from l2l_fast.models.mage_official import load_official_mage

META = torch.device("meta")


@pytest.mark.parametrize("name", ["mae_vit_base_patch16", "mae_vit_large_patch16", "mae_vit_huge_patch14"])
def test_mae_presets_match_hf_vitmae_shape_for_shape(name):
    transformers = pytest.importorskip("transformers")
    from l2l_fast.models.hf_mae import hf_to_mae_state

    config = presets.ARCHS[name][1]
    ours = presets.build(name, META)
    with torch.device(META):
        hf = transformers.ViTMAEForPreTraining(transformers.ViTMAEConfig(
            hidden_size=config["embed_dim"], num_hidden_layers=config["depth"],
            num_attention_heads=config["num_heads"], intermediate_size=4 * config["embed_dim"],
            image_size=config["img_size"], patch_size=config["patch_size"], decoder_hidden_size=512,
            decoder_num_hidden_layers=8, decoder_num_attention_heads=16, decoder_intermediate_size=2048))
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())
    load_exact(ours, hf_to_mae_state(hf.state_dict(), config["depth"], 8), "HF ViTMAE")  # every key and shape


def test_mae_vit_b_and_l_parameter_counts():
    # encoder, decoder and fixed position tables, counted from upstream's shapes by hand
    def count(d, depth, patch, grid, dd=512, ddepth=8):
        block = lambda w: 2 * 2 * w + (3 * w * w + 3 * w) + (w * w + w) + (4 * w * w + 4 * w) + (4 * w * w + w)
        encoder = patch * patch * 3 * d + d + d + (grid + 1) * d + depth * block(d) + 2 * d
        pixels = patch * patch * 3
        decoder = d * dd + dd + dd + (grid + 1) * dd + ddepth * block(dd) + 2 * dd + dd * pixels + pixels
        return encoder + decoder

    for name, (d, depth, patch) in {"mae_vit_base_patch16": (768, 12, 16), "mae_vit_large_patch16": (1024, 24, 16),
                                    "mae_vit_huge_patch14": (1280, 32, 14)}.items():
        model = presets.build(name, META)
        assert sum(p.numel() for p in model.parameters()) == count(d, depth, patch, (224 // patch) ** 2), name


@pytest.mark.parametrize("name, width, depth, decoder_width", [("mage_vit_base_patch16", 768, 12, 768),
                                                                ("mage_vit_large_patch16", 1024, 24, 1024)])
def test_mage_presets_take_upstreams_shapes(name, width, depth, decoder_width):
    model = presets.build(name, META)
    vocab, positions = 1024 + 1000 + 1, 256 + 1  # models_mage.py: codebook, classes, [MASK]; 16 x 16 + class
    shapes = {"token_emb.word_embeddings.weight": [vocab, width],
              "token_emb.position_embeddings.weight": [positions, width],
              "token_emb.LayerNorm.weight": [width], "token_emb.LayerNorm.bias": [width],
              "norm.weight": [width], "norm.bias": [width],
              "decoder_embed.weight": [decoder_width, width], "decoder_embed.bias": [decoder_width],
              "decoder_pos_embed_learned": [1, positions, decoder_width],
              "decoder_norm.weight": [decoder_width], "decoder_norm.bias": [decoder_width],
              "mlm_layer.fc.weight": [width, decoder_width], "mlm_layer.fc.bias": [width],
              "mlm_layer.ln.weight": [width], "mlm_layer.ln.bias": [width], "mlm_layer.bias": [1, 1, vocab]}
    for prefix, w, count in (("blocks", width, depth), ("decoder_blocks", decoder_width, 8)):
        for i in range(count):
            for part, shape in {"norm1.weight": [w], "norm1.bias": [w], "attn.qkv.weight": [3 * w, w],
                                "attn.qkv.bias": [3 * w], "attn.proj.weight": [w, w], "attn.proj.bias": [w],
                                "norm2.weight": [w], "norm2.bias": [w], "mlp.fc1.weight": [4 * w, w],
                                "mlp.fc1.bias": [4 * w], "mlp.fc2.weight": [w, 4 * w], "mlp.fc2.bias": [w]}.items():
                shapes[f"{prefix}.{i}.{part}"] = shape
    state = {k: torch.empty(v, device=META) for k, v in shapes.items()}
    state.update({f"vqgan.{k}": v for k, v in model.tokenizer.state_dict().items()})
    load_official_mage(model, state)  # raises on any missing key or shape mismatch
    tokenizer = model.tokenizer.state_dict()  # config/vqgan.yaml: ch 128, z 256, 1024 codes, RGB
    assert tokenizer["encoder.conv_in.weight"].shape == (128, 3, 3, 3)
    assert tokenizer["quantize.embedding.weight"].shape == (1024, 256)
    assert model.grid == (16, 16)


def test_palette_places2_preset():
    model = presets.build("palette_inpainting_places2", META)
    state = model.state_dict()
    # inpainting_places2.json: 6 -> 64 channels in, 64 * 8 = 512 at the bottom (16 heads of 32), 3 out, 256 px
    assert state["encoder.input_blocks.0.0.weight"].shape == (64, 6, 3, 3)
    assert state["encoder.middle_block.1.qkv.weight"].shape == (3 * 512, 512, 1)
    assert state["decoder.out.2.weight"].shape == (3, 64, 3, 3)
    assert model.image_shape == (3, 256, 256) and model.train_schedule.num_timesteps == 2000


def test_unknown_arch_is_named():
    with pytest.raises(ValueError, match="arch must be one of"):
        presets.arch_config("mae_vit_giant", "mae")
    with pytest.raises(ValueError, match="mae_vit_base_patch16"):
        presets.arch_config("mage_vit_base_patch16", "mae")
