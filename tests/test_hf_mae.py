"""HF transformers' ViTMAEForPreTraining as a family, checked against this package's MAE
(an independent implementation) with the same perturbed weights through the key map."""
import json

import pytest
import torch

from l2l_fast import unlearn
from l2l_fast.adapters import HFMAEAdapter, MAEAdapter, adapter_for
from l2l_fast.adapters.hf_mae import keep_first, keeping
from l2l_fast.models import MAE
from l2l_fast.models.hf_mae import load_hf_mae, mae_to_hf_state, to_mae
from l2l_fast.models.masks import parse_mask, patch_keep
from l2l_fast.models.pixels import IMAGENET

transformers = pytest.importorskip("transformers")

TINY = dict(img_size=16, patch_size=4, in_chans=3, embed_dim=32, depth=2, num_heads=2,
            decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)


def hf_config(**overrides):
    return transformers.ViTMAEConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, image_size=16,
        patch_size=4, num_channels=3, decoder_hidden_size=16, decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2, decoder_intermediate_size=64, layer_norm_eps=1e-6, **overrides)


def twins(seed=0):
    """A project MAE with perturbed weights and an HF model holding the same weights."""
    torch.manual_seed(seed)
    ours = MAE(**TINY).eval()
    with torch.no_grad():
        for param in ours.parameters():
            param.add_(0.1 * torch.randn_like(param))
    ours.pixels = IMAGENET
    hf = transformers.ViTMAEForPreTraining(hf_config()).eval()
    state = mae_to_hf_state(ours.state_dict(), TINY["depth"], TINY["decoder_depth"], hf.state_dict().keys())
    hf.load_state_dict(state, strict=True)
    hf.pixels = IMAGENET
    return ours, hf


def batch(n=3, seed=1, mask="inpaint:2"):
    images = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    keep = patch_keep(parse_mask(mask), (4, 4), n, torch.Generator().manual_seed(seed))
    return images, keep


@pytest.mark.parametrize("mask", ["inpaint:2", "random:0.5"])
def test_same_latents_predictions_and_generations(mask):
    ours, hf = twins()
    images, keep = batch(mask=mask)
    ours_adapter, hf_adapter = adapter_for(ours), adapter_for(hf)
    assert isinstance(hf_adapter, HFMAEAdapter) and isinstance(ours_adapter, MAEAdapter)
    x = IMAGENET.normalize(images)
    with torch.no_grad():
        latent = ours.encoder(x, keep)
        hf_latent = hf_adapter.encode(hf.vit, hf_adapter.prepare(images), keep)
        torch.testing.assert_close(hf_latent, latent, atol=1e-5, rtol=0)
        torch.testing.assert_close(hf_adapter.predict(x, keep), ours(x, keep), atol=1e-5, rtol=0)
        # HF's own forward (decoder and loss included) keeps exactly the visible patches
        with keeping(hf, int(keep[0].sum()), keep.shape[1]):
            hf_out = hf(pixel_values=x, noise=keep_first(keep))
    assert torch.equal(hf_out.mask.bool(), ~keep) and hf.config.mask_ratio == 0.75
    torch.testing.assert_close(hf_out.logits, ours(x, keep), atol=1e-5, rtol=0)
    torch.testing.assert_close(hf_out.loss, ours.loss(x, keep), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(hf_adapter.generate(images, keep), ours_adapter.generate(images, keep),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(hf_adapter.task_loss(images, keep), ours_adapter.task_loss(images, keep),
                               atol=1e-6, rtol=1e-5)


def test_one_unlearning_step_updates_both_encoders_alike():
    ours, hf = twins()
    forget, _ = batch(4, seed=2)
    retain, _ = batch(4, seed=3)
    options = dict(steps=1, batch_size=2, lr=1e-2, mask="inpaint:2", seed=5, progress=False, precision="fp32")
    before = {k: v.clone() for k, v in ours.encoder.state_dict().items()}
    unlearn(ours, forget, retain, **options)
    unlearn(hf, forget, retain, **options)
    assert any(not torch.equal(before[k], v) for k, v in ours.encoder.state_dict().items())
    mapped = to_mae(hf).state_dict()
    dim = TINY["embed_dim"]
    for key, value in ours.encoder.state_dict().items():
        theirs = mapped[f"encoder.{key}"]
        if key.endswith("attn.qkv.bias"):
            # the key bias has no gradient (softmax ignores a per-query constant): its "gradient" is
            # rounding noise that Adam scales up, so each implementation moves it its own way
            theirs, value = torch.cat([theirs[:dim], theirs[2 * dim:]]), torch.cat([value[:dim], value[2 * dim:]])
        torch.testing.assert_close(theirs, value, atol=1e-5, rtol=0, msg=key)
    assert hf.config.mask_ratio == 0.75  # restored after every call


def test_load_hf_mae_folder_offline(tmp_path):
    ours, hf = twins(seed=4)
    hf.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.25, 0.3], "do_normalize": True}))
    loaded = load_hf_mae(tmp_path)
    assert loaded.pixels.mean == (0.5, 0.4, 0.3) and loaded.pixels.std == (0.2, 0.25, 0.3)
    images, keep = batch()
    ours.pixels = loaded.pixels
    torch.testing.assert_close(adapter_for(loaded).generate(images, keep), adapter_for(ours).generate(images, keep),
                               atol=1e-5, rtol=0)
    converted = to_mae(loaded)
    assert converted.config["norm_eps"] == 1e-6 and converted.pixels == loaded.pixels
    torch.testing.assert_close(adapter_for(converted).generate(images, keep), adapter_for(ours).generate(images, keep),
                               atol=1e-6, rtol=0)


def test_load_hf_mae_refuses_other_folders(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        load_hf_mae(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(ValueError, match="expected 'vit_mae'"):
        load_hf_mae(tmp_path)
