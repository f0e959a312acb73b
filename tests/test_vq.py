import pytest
import torch
import torch.nn.functional as F

import l2l_fast
from l2l_fast import load_model
from l2l_fast.adapters import VQAdapter, adapter_for
from l2l_fast.models import MAGE, VQTokenizer, load_official_mage, save_model
from l2l_fast.models.masks import parse_mask, patch_keep, pixel_keep
from l2l_fast.models.vq import VectorQuantizer
from l2l_fast.training.pretrain import pretrain
from l2l_fast.training.pretrain_vq import pretrain_tokenizer

from conftest import MAGE_D as D, MAGE_K as K, MAGE_L as L, MAGE_TOKENIZER as TOK
from conftest import MAGE_FORGET as FORGET, MAGE_RETAIN as RETAIN, mage_images as images, mage_model as tiny_model
from conftest import assert_low_precision_close_to_fp32, official_mage_shapes, official_vqgan_shapes, random_state, same, state


def keep_for(spec: str, batch: int) -> torch.Tensor:
    return patch_keep(parse_mask(spec), (4, 4), batch, torch.Generator().manual_seed(0))


# tokenizer

def test_tokenizer_shapes():
    tokenizer = tiny_model().tokenizer
    ids = tokenizer.encode(images(3, 0))
    assert ids.shape == (3, L) and ids.dtype == torch.long and 0 <= ids.min() and ids.max() < K
    assert tokenizer.decode(ids).shape == (3, 1, 8, 8)
    assert tokenizer.decode(ids[:, :8], grid=(2, 4)).shape == (3, 1, 4, 8)
    with pytest.raises(ValueError, match="divisible"):
        tokenizer.encode(torch.rand(1, 1, 7, 8))


def test_quantisation_picks_the_nearest_entry():
    quantizer = VectorQuantizer(4, 2, beta=0.25)
    codes = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    quantizer.embedding.weight.data.copy_(codes)
    z = torch.tensor([[0.9, 0.1], [0.1, 0.2], [-0.6, -0.4], [0.2, 0.7], [0.4, 0.45], [0.3, 0.6]])
    z = z.t().reshape(1, 2, 1, 6)
    assert quantizer.indices(z).tolist() == [[1, 0, 3, 2, 0, 2]]  # squared distances by hand
    z_q, _, _ = quantizer(z)
    assert torch.equal(z_q[0, :, 0].t(), codes[[1, 0, 3, 2, 0, 2]])


def test_encode_is_the_brute_force_nearest_code():
    tokenizer = tiny_model().tokenizer
    x = images(2, 1)
    z = tokenizer.encoder(x).permute(0, 2, 3, 1).reshape(2, L, -1)
    distance = (z[:, :, None] - tokenizer.quantize.embedding.weight[None, None]).norm(dim=-1)
    assert torch.equal(tokenizer.encode(x), distance.argmin(dim=-1))


def test_straight_through_gradient_reaches_the_encoder():
    torch.manual_seed(0)
    tokenizer = VQTokenizer(**TOK)
    reconstruction, vq_loss = tokenizer(images(2, 0))
    reconstruction.square().sum().backward()
    assert tokenizer.encoder.conv_in.weight.grad.abs().sum() > 0
    assert tokenizer.quantize.embedding.weight.grad is None  # codes learn only from the VQ loss
    tokenizer.zero_grad()
    tokenizer.loss(images(2, 0)).backward()
    assert tokenizer.quantize.embedding.weight.grad.abs().sum() > 0


# MAGE

def test_encoder_sees_only_visible_tokens():
    model = tiny_model()
    ids = torch.randint(K, (2, L), generator=torch.Generator().manual_seed(0))
    keep = keep_for("inpaint:2", 2)
    latent = model.encoder(ids, keep)
    assert latent.shape == (2, 1 + 12, D)
    changed = torch.where(keep, ids, (ids + 5) % K)
    assert not torch.equal(changed, ids)
    assert torch.equal(model.encoder(changed, keep), latent)


def test_loss_is_label_smoothed_cross_entropy_on_hidden_tokens():
    """Upstream's LabelSmoothingCrossEntropy(0.1) by hand: 0.9 NLL + 0.1 mean(-log p)."""
    model = tiny_model()
    x = images(2, 3)
    ids = model.tokenize(x)
    keep = keep_for("random:0.5", 2)
    logits = model(ids, keep)
    assert logits.shape == (2, L, K)
    log_p = torch.log_softmax(logits, dim=-1)
    terms = [-0.9 * log_p[b, i, ids[b, i]] - 0.1 * log_p[b, i].mean()
             for b in range(2) for i in range(L) if not keep[b, i]]
    expected = torch.stack(terms).mean()
    torch.testing.assert_close(model.loss(ids, keep), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.loss(x, keep), expected, rtol=1e-5, atol=1e-6)


def test_loss_against_targets_uses_the_targets_tokens():
    model = tiny_model()
    x, y = images(2, 3), images(2, 9)
    keep = keep_for("inpaint:2", 2)
    logits = model(model.tokenize(x), keep).float()
    wanted = model.tokenize(y)
    error = F.cross_entropy(logits.flatten(0, 1), wanted.flatten(), reduction="none", label_smoothing=0.1).view(2, L)
    torch.testing.assert_close(model.loss(x, keep, targets=y), error[~keep].mean(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec", ["inpaint:2", "outpaint:2"])
def test_generation_is_batched_seeded_and_changes_only_the_hole(spec):
    model = tiny_model()
    x = images(3, 4)
    keep = keep_for(spec, 3)
    passes = []
    hook = model.encoder.register_forward_hook(lambda m, args, out: passes.append(args[0].shape[0]))
    out = model.generate(x, keep, steps=4, generator=torch.Generator().manual_seed(1))
    hook.remove()
    assert out.shape == x.shape and passes and len(passes) <= 4 and set(passes) == {3}
    visible = pixel_keep(keep, model.grid, model.patch_size).bool().expand_as(x)
    assert torch.equal(out[visible], x[visible])
    assert not torch.allclose(out[~visible], x[~visible])
    again = model.generate(x, keep, steps=4, generator=torch.Generator().manual_seed(1))
    other = model.generate(x, keep, steps=4, generator=torch.Generator().manual_seed(2))
    assert torch.equal(out, again) and not torch.equal(out, other)


def test_adapter_generation_follows_its_seed_not_the_global_rng():
    model = tiny_model()
    x = images(3, 4)
    adapter = VQAdapter(model, steps=4, seed=1)
    corruption = adapter.draw(parse_mask("inpaint:2"), 3, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    first = adapter.generate(x, corruption)
    torch.manual_seed(123)
    assert torch.equal(adapter.generate(x, corruption), first)
    reference = model.generate(x, corruption.keep, 4, 6.0, torch.Generator().manual_seed(1))
    visible = pixel_keep(corruption.keep, model.grid, model.patch_size).bool().expand_as(x)
    torch.testing.assert_close(first[~visible], reference[~visible], rtol=0, atol=1e-6)
    assert not torch.equal(VQAdapter(model, steps=4, seed=2).generate(x, corruption), first)


def test_generated_ids_keep_the_visible_tokens():
    model = tiny_model()
    ids = torch.randint(K, (2, L), generator=torch.Generator().manual_seed(0))
    keep = keep_for("inpaint:2", 2)
    for steps in (1, 3, 20):
        out = model.generate_ids(ids, keep, steps=steps, generator=torch.Generator().manual_seed(0))
        assert torch.equal(out[keep], ids[keep]) and 0 <= out.min() and out.max() < K


# unlearning through the adapter

RUN = dict(steps=3, batch_size=2, mask="inpaint:1", progress=False)


def test_unlearn_trains_only_the_encoder_reproducibly():
    model = tiny_model()
    assert isinstance(adapter_for(model), VQAdapter)
    tokenizer, decoder, encoder = state(model.tokenizer), state(model.decoder), state(model.encoder)
    l2l_fast.unlearn(model, FORGET, RETAIN, seed=5, **RUN)
    assert same(tokenizer, model.tokenizer) and same(decoder, model.decoder)
    assert not same(encoder, model.encoder)
    twin = l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, seed=5, **RUN)
    assert same(state(model.encoder), twin.encoder)


def test_unlearn_tokenizes_each_real_image_once_and_noise_every_step():
    """Real images are tokenized once in the run (their ids are cached per sample), the
    forget samples' noise at every step; the run equals one that tokenizes every step."""
    model, sizes = tiny_model(), []
    model.tokenizer.encoder.register_forward_hook(lambda m, args, out: sizes.append(args[0].shape[0]))
    steps, batch = 9, RUN["batch_size"]
    log = []
    l2l_fast.unlearn(model, FORGET, RETAIN, callback=log.append, **{**RUN, "steps": steps})
    assert sum(sizes) == len(FORGET) + len(RETAIN) + steps * batch  # 9 steps see every sample

    uncached, uncached_log = tiny_model(), []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(VQAdapter, "frozen_prepare", False)
        l2l_fast.unlearn(uncached, FORGET, RETAIN, callback=uncached_log.append, **{**RUN, "steps": steps})
    assert [r["loss"] for r in log] == pytest.approx([r["loss"] for r in uncached_log], rel=1e-5)
    for key, value in uncached.encoder.state_dict().items():
        torch.testing.assert_close(model.encoder.state_dict()[key], value, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["max_loss", "noisy_label", "retain_label", "random_encoder"])
def test_baselines_leave_the_tokenizer_untouched(method):
    model = tiny_model()
    tokenizer, encoder = state(model.tokenizer), state(model.encoder)
    l2l_fast.unlearn(model, FORGET, RETAIN, method=method, lr=1e-3, **{**RUN, "steps": 2})
    assert same(tokenizer, model.tokenizer) and not same(encoder, model.encoder)


def test_pretrain_keeps_the_tokenizer_frozen():
    model = tiny_model()
    tokenizer, encoder = state(model.tokenizer), state(model.encoder)
    ids = model.tokenize(RETAIN)
    losses = pretrain(VQAdapter(model), ids, steps=2, batch_size=4, masks=["random:0.5"], progress=False)
    assert len(losses) == 2 and same(tokenizer, model.tokenizer) and not same(encoder, model.encoder)


def test_checkpoint_roundtrip(tmp_path):
    model = tiny_model()
    save_model(model, tmp_path / "mage.safetensors")
    loaded = load_model(tmp_path / "mage.safetensors")
    assert isinstance(loaded, MAGE) and loaded.config == model.config
    assert same(state(model), loaded)


# official checkpoints

def test_official_checkpoint_maps_key_for_key(tmp_path):
    mage = random_state(official_mage_shapes(), 0)
    mage["token_emb.position_ids"] = torch.arange(L + 1)[None]
    vqgan = random_state(official_vqgan_shapes(), 1)
    whole = {**mage, **{f"vqgan.{k}": v for k, v in vqgan.items()}}
    model = load_official_mage(tiny_model(), {"model": whole})
    ours = model.state_dict()
    assert torch.equal(ours["encoder.blocks.1.attn.qkv.weight"], mage["blocks.1.attn.qkv.weight"])
    assert torch.equal(ours["decoder.decoder_pos_embed_learned"], mage["decoder_pos_embed_learned"])
    words = mage["token_emb.word_embeddings.weight"]
    assert torch.equal(ours["encoder.token_emb.word_embeddings.weight"][:K], words[:K])
    assert torch.equal(ours["encoder.token_emb.word_embeddings.weight"][K], words[K + 76])  # fake class
    assert torch.equal(ours["decoder.mlm_layer.word_embeddings"], words[:K])
    assert torch.equal(ours["decoder.mlm_layer.bias"], mage["mlm_layer.bias"][0, 0, :K])
    for key, value in vqgan.items():
        assert torch.equal(ours[f"tokenizer.{key}"], value), key

    torch.save({"model": mage}, tmp_path / "mage.pth")
    torch.save({"state_dict": vqgan}, tmp_path / "vqgan.ckpt")
    from_files = load_official_mage(tiny_model(1), tmp_path / "mage.pth", str(tmp_path / "vqgan.ckpt"))
    assert same(ours, from_files)


def test_official_checkpoint_mismatch_lists_every_problem():
    mage = random_state(official_mage_shapes(), 0)
    del mage["blocks.1.norm1.weight"]
    mage["blocks.2.norm1.weight"] = torch.zeros(D)
    mage["decoder_pos_embed_learned"] = torch.zeros(1, 65, D)
    model = tiny_model()
    before = state(model)
    with pytest.raises(ValueError) as error:
        load_official_mage(model, mage, random_state(official_vqgan_shapes(), 1))
    message = str(error.value)
    assert "missing: encoder.blocks.1.norm1.weight" in message
    assert "unexpected: blocks.2.norm1.weight" in message
    assert "decoder_pos_embed_learned -> decoder.decoder_pos_embed_learned" in message
    assert same(before, model)
    with pytest.raises(ValueError, match="missing: tokenizer.encoder.conv_in.weight"):
        load_official_mage(model, random_state(official_mage_shapes(), 0))


# tokenizer pretraining

def test_pretrain_tokenizer_resumes_bit_identically(tmp_path):
    data = images(12, 7)
    run = dict(steps=4, batch_size=3, lr=1e-2, seed=3, progress=False)
    torch.manual_seed(0)
    reference = VQTokenizer(**TOK)
    expected = pretrain_tokenizer(reference, data, **run)

    torch.manual_seed(0)
    interrupted = VQTokenizer(**TOK)
    calls, loss = [], interrupted.loss

    def failing_loss(x):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return loss(x)

    interrupted.loss = failing_loss
    path = tmp_path / "tokenizer.state.safetensors"
    with pytest.raises(KeyboardInterrupt):
        pretrain_tokenizer(interrupted, data, state_path=path, checkpoint_every=2, **run)
    assert path.exists()

    torch.manual_seed(1)
    resumed = VQTokenizer(**TOK)
    losses = pretrain_tokenizer(resumed, data, state_path=path, checkpoint_every=2, **run)
    assert losses == expected
    assert same(state(reference), resumed)


def test_pretrain_tokenizer_trains_a_frozen_tokenizer_and_restores_its_flags():
    model = tiny_model()
    before = state(model.tokenizer)
    pretrain_tokenizer(model.tokenizer, images(6, 8), steps=1, batch_size=2, progress=False)
    assert not same(before, model.tokenizer)
    assert not any(p.requires_grad for p in model.tokenizer.parameters())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_runs_close_to_fp32(precision):
    assert_low_precision_close_to_fp32(tiny_model, FORGET, RETAIN, RUN, precision)
