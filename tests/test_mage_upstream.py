"""MAGE against a plain-PyTorch re-statement of upstream's code (LTH14/mage
`models_mage.py` forward_encoder / forward_decoder / forward_loss, and the authors'
inpainting decoding `inpaint_image_mage_multisteps` in jpmorganchase/i2i_mage),
run on the official-layout weights that `load_official_mage` maps onto the model."""
import math

import pytest
import torch
import torch.nn.functional as F

from l2l_fast.adapters import VQAdapter
from l2l_fast.models import MAGE, load_official_mage
from l2l_fast.models.masks import parse_mask, patch_keep

from conftest import MAGE_K as K, MAGE_L as L, MAGE_TINY as TINY
from conftest import official_mage_shapes, official_vqgan_shapes, random_state

HEADS = {"blocks": TINY["num_heads"], "decoder_blocks": TINY["decoder_num_heads"]}
MASK_LABEL = K + 1000  # upstream: vocab_size - 1
FAKE_CLASS = K + 76


def official_weights(seed: int = 0) -> dict:
    weights = {k: 0.3 * v for k, v in random_state(official_mage_shapes(), seed).items()}
    weights["token_emb.position_ids"] = torch.arange(L + 1)[None]
    return weights


def loaded(weights: dict, **options) -> MAGE:
    model = MAGE(**{**TINY, **options}).eval()
    return load_official_mage(model, weights, random_state(official_vqgan_shapes(), 1))


# upstream, written out

def _block(w: dict, prefix: str, x: torch.Tensor, heads: int) -> torch.Tensor:
    def linear(name, h):
        return h @ w[f"{prefix}.{name}.weight"].t() + w[f"{prefix}.{name}.bias"]

    def norm(name, h):
        return F.layer_norm(h, h.shape[-1:], w[f"{prefix}.{name}.weight"], w[f"{prefix}.{name}.bias"], 1e-6)

    batch, tokens, dim = x.shape
    qkv = linear("attn.qkv", norm("norm1", x)).reshape(batch, tokens, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = (q @ k.transpose(-2, -1)) * (dim // heads) ** -0.5
    attn = (attn - attn.max(dim=-1, keepdim=True)[0]).softmax(dim=-1)
    x = x + linear("attn.proj", (attn @ v).transpose(1, 2).reshape(batch, tokens, dim))
    hidden = F.gelu(linear("mlp.fc1", norm("norm2", x)))
    return x + linear("mlp.fc2", hidden)


def upstream_encoder(w: dict, ids: torch.Tensor, drop: torch.Tensor, all_mask: torch.Tensor) -> torch.Tensor:
    """forward_encoder with given token_drop_mask_raw / token_all_mask_raw (the authors' fork)."""
    tokens = ids.clone()
    tokens[all_mask.nonzero(as_tuple=True)] = MASK_LABEL
    tokens = torch.cat([torch.full((ids.shape[0], 1), FAKE_CLASS), tokens], dim=1)
    drop = torch.cat([torch.zeros(ids.shape[0], 1, dtype=torch.bool), drop], dim=1)
    x = w["token_emb.word_embeddings.weight"][tokens] + w["token_emb.position_embeddings.weight"][: L + 1]
    x = F.layer_norm(x, x.shape[-1:], w["token_emb.LayerNorm.weight"], w["token_emb.LayerNorm.bias"], 1e-6)
    x = x[(~drop).nonzero(as_tuple=True)].reshape(ids.shape[0], -1, x.shape[-1])
    for i in range(TINY["depth"]):
        x = _block(w, f"blocks.{i}", x, HEADS["blocks"])
    return F.layer_norm(x, x.shape[-1:], w["norm.weight"], w["norm.bias"], 1e-6)


def upstream_decoder(w: dict, x: torch.Tensor, drop: torch.Tensor, all_mask: torch.Tensor,
                     word_embeddings: torch.Tensor) -> torch.Tensor:
    """forward_decoder (pad_with_cls_token) and the MlmLayer; logits [:, 1:, :K]."""
    batch = x.shape[0]
    drop = torch.cat([torch.zeros(batch, 1, dtype=torch.bool), drop], dim=1)
    all_mask = torch.cat([torch.zeros(batch, 1, dtype=torch.bool), all_mask], dim=1)
    x = x @ w["decoder_embed.weight"].t() + w["decoder_embed.bias"]
    mask_tokens = x[:, 0:1].repeat(1, L + 1, 1)
    padded = mask_tokens.clone()
    padded[(~drop).nonzero(as_tuple=True)] = x.reshape(-1, x.shape[-1])
    x = torch.where(all_mask[..., None], mask_tokens, padded) + w["decoder_pos_embed_learned"]
    for i in range(TINY["decoder_depth"]):
        x = _block(w, f"decoder_blocks.{i}", x, HEADS["decoder_blocks"])
    x = F.layer_norm(x, x.shape[-1:], w["decoder_norm.weight"], w["decoder_norm.bias"], 1e-6)
    h = F.gelu(x @ w["mlm_layer.fc.weight"].t() + w["mlm_layer.fc.bias"])
    h = F.layer_norm(h, h.shape[-1:], w["mlm_layer.ln.weight"], w["mlm_layer.ln.bias"], 1e-5)
    return (h @ word_embeddings.t() + w["mlm_layer.bias"])[:, 1:, :K]


def upstream_logits(w, ids, drop, all_mask):
    latent = upstream_encoder(w, ids, drop, all_mask)
    return upstream_decoder(w, latent, drop, all_mask, w["token_emb.word_embeddings.weight"])


def gumbel(shape, generator):
    return -torch.log(-torch.log(torch.rand(shape, generator=generator)))


def upstream_inpaint(w: dict, ids: torch.Tensor, token_all_mask: torch.Tensor, num_iter: int,
                     choice_temperature: float, generator: torch.Generator) -> torch.Tensor:
    """inpaint_image_mage_multisteps, its categorical draw and np.random.gumbel taken as
    Gumbel noise from `generator` (sampling noise first, then confidence noise)."""
    token_indices = ids.clone()
    token_indices[token_all_mask.nonzero(as_tuple=True)] = MASK_LABEL
    mask_rate = token_all_mask.sum() / token_all_mask.numel()
    sampled_ids = None
    for step in range(num_iter):
        ratio = (step + 1) / num_iter
        mask_ratio = math.cos(math.pi / 2 * ratio)
        if mask_ratio >= mask_rate:
            continue
        cur_ids = token_indices.clone()
        unknown_map = cur_ids == MASK_LABEL
        logits = upstream_logits(w, cur_ids.clamp_max(K - 1), torch.zeros_like(unknown_map), unknown_map)
        sampled_ids = (logits + gumbel(logits.shape, generator)).argmax(dim=-1)
        sampled_ids = torch.where(unknown_map, sampled_ids, cur_ids)
        probs = F.softmax(logits, dim=-1)
        selected = torch.gather(probs, -1, sampled_ids[..., None])[..., 0]
        selected = torch.where(unknown_map, selected.double(), math.inf).float()
        mask_len = torch.tensor([math.floor(L * mask_ratio)])
        mask_len = torch.maximum(torch.tensor([1]), torch.minimum(unknown_map.sum(-1, keepdim=True) - 1, mask_len))
        mask_len = int(mask_len[0])
        confidence = torch.log(selected) + choice_temperature * (1 - ratio) * gumbel(selected.shape, generator)
        cut_off = torch.sort(confidence, dim=-1)[0][:, mask_len - 1:mask_len]
        token_indices = torch.where(confidence <= cut_off, MASK_LABEL, sampled_ids)
    return sampled_ids


# the tests

@pytest.mark.parametrize("spec", ["inpaint:2", "box:side=3/4", "outpaint:2"])
def test_decoding_matches_upstreams_algorithm(spec):
    w = official_weights()
    model = loaded(w)
    ids = torch.randint(K, (3, L), generator=torch.Generator().manual_seed(4))
    keep = patch_keep(parse_mask(spec), (4, 4), 3)
    for steps, temperature in ((20, 6.0), (5, 2.0)):
        ours = model.generate_ids(ids, keep, steps, temperature, generator=torch.Generator().manual_seed(7))
        theirs = upstream_inpaint(w, ids, ~keep, steps, temperature, torch.Generator().manual_seed(7))
        assert torch.equal(ours, theirs)
        assert torch.equal(ours[keep], ids[keep]) and 0 <= ours.min() and ours.max() < K
    assert VQAdapter(model).steps == 20 and VQAdapter(model).temperature == 6.0


def test_decoding_embeds_unknown_tokens_as_mask_and_drops_none():
    w = official_weights()
    model = loaded(w)
    ids = torch.randint(K, (2, L), generator=torch.Generator().manual_seed(0))
    keep = patch_keep(parse_mask("inpaint:2"), (4, 4), 2)
    nothing = torch.zeros_like(keep)
    logits = model(ids, keep, nothing)
    torch.testing.assert_close(logits, upstream_logits(w, ids, nothing, ~keep), rtol=1e-4, atol=1e-4)
    changed = torch.where(keep, ids, (ids + 3) % K)
    assert torch.equal(model(changed, keep, nothing), logits)  # hidden ids never leak
    assert (logits - model(ids, keep)).abs().max() > 1e-3  # dropping them is another computation (10x the tolerance)


def test_unlearning_forward_is_upstreams_drop_and_mask_split():
    """The adapter's encode equals forward_encoder with the same token_drop_mask and
    token_all_mask (the authors' unlearning passes the student's masks to the teacher),
    and MAGE's loss on it is upstream's forward_loss (label smoothing 0.1)."""
    w = official_weights()
    model = loaded(w)
    adapter = VQAdapter(model)
    ids = torch.randint(K, (4, L), generator=torch.Generator().manual_seed(1))
    c = adapter.draw(parse_mask("mage:0.8,0.05,0.7,0.9"), 4, torch.Generator().manual_seed(2))
    hidden = ~c.keep
    assert (hidden.sum(1) > math.ceil(0.5 * L)).all() and (c.drop.sum(1) == math.ceil(0.5 * L)).all()
    assert not (c.drop & c.keep).any() and len({tuple(r.tolist()) for r in c.drop}) > 1
    latent = adapter.encode(model.encoder, ids, c)
    expected = upstream_encoder(w, ids, c.drop, hidden)
    assert latent.shape == expected.shape == (4, 1 + L - math.ceil(0.5 * L), TINY["embed_dim"])
    torch.testing.assert_close(latent, expected, rtol=1e-4, atol=1e-4)

    logits = upstream_logits(w, ids, c.drop, hidden)
    log_p = F.log_softmax(logits, dim=-1)
    smoothed = -0.9 * log_p.gather(-1, ids[..., None])[..., 0] - 0.1 * log_p.mean(-1)
    expected_loss = (smoothed * hidden).sum() / hidden.sum()
    torch.testing.assert_close(adapter.task_loss(ids, c), expected_loss, rtol=1e-4, atol=1e-5)


def test_masks_hiding_at_most_half_drop_every_hidden_token_and_draw_nothing():
    model = MAGE(**TINY)
    adapter = VQAdapter(model)
    for spec in ("inpaint:2", "random:0.5", "box:0.25"):
        g = torch.Generator().manual_seed(0)
        c = adapter.draw(parse_mask(spec), 3, g)
        reference = torch.Generator().manual_seed(0)
        assert torch.equal(c.keep, patch_keep(parse_mask(spec), (4, 4), 3, reference))
        assert torch.equal(c.drop, ~c.keep)
        assert torch.equal(g.get_state(), reference.get_state())  # the same stream as before the split
    assert adapter.fixed_targets(parse_mask("inpaint:2"))
    assert not adapter.fixed_targets(parse_mask("outpaint:1"))  # 15 hidden of 16: [MASK]s drawn at random
    assert VQAdapter(model, drop_ratio=None).fixed_targets(parse_mask("outpaint:1"))
    everything = VQAdapter(model, drop_ratio=None).draw(parse_mask("mage"), 2, torch.Generator().manual_seed(0))
    assert torch.equal(everything.drop, ~everything.keep)
    with pytest.raises(ValueError, match="drop_ratio"):
        VQAdapter(model, drop_ratio=0.0)


def test_output_projection_copy_is_frozen_and_encoder_follows_the_encoder():
    w = official_weights()
    ids = torch.randint(K, (2, L), generator=torch.Generator().manual_seed(0))
    keep = patch_keep(parse_mask("inpaint:2"), (4, 4), 2)
    copy, live = loaded(w), loaded(w, output_projection="encoder")
    assert "decoder.mlm_layer.word_embeddings" not in live.state_dict()
    torch.testing.assert_close(copy(ids, keep), live(ids, keep))
    latent = copy.encoder(ids, keep)
    with torch.no_grad():
        for model in (copy, live):
            model.encoder.token_emb.word_embeddings.weight.add_(0.5)
    before = upstream_decoder(w, latent, ~keep, ~keep, w["token_emb.word_embeddings.weight"])
    moved = w["token_emb.word_embeddings.weight"] + 0.5
    torch.testing.assert_close(copy.decoder(latent, keep), before, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(live.decoder(latent, keep, None, live.output_embeddings()),
                               upstream_decoder(w, latent, ~keep, ~keep, moved), rtol=1e-4, atol=1e-4)
    live.decoder(latent, keep, None, live.output_embeddings()).sum().backward()
    assert live.encoder.token_emb.word_embeddings.weight.grad is None  # detached, as upstream
    with pytest.raises(ValueError, match="output_projection"):
        MAGE(**TINY, output_projection="tied")


def test_unlearn_with_mages_masks_and_with_cached_targets():
    import l2l_fast

    from conftest import MAGE_FORGET as FORGET, MAGE_RETAIN as RETAIN, mage_model as tiny_model, same, state
    run = dict(steps=2, batch_size=2, progress=False, seed=3)
    model = l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, mask="mage", **run)
    twin = l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, mask="mage", **run)
    assert same(state(model.encoder), twin.encoder) and not same(state(tiny_model().encoder), model.encoder)
    cached, log, plain_log = tiny_model(), [], []
    l2l_fast.unlearn(cached, FORGET, RETAIN, mask="inpaint:2", cache_targets=True, callback=log.append, **run)
    l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, mask="inpaint:2", callback=plain_log.append, **run)
    assert [r["loss"] for r in log] == pytest.approx([r["loss"] for r in plain_log], rel=1e-5)
    with pytest.raises(ValueError, match="cache_targets needs"):
        l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, mask="outpaint:1", cache_targets=True, **run)
