"""The benchmark's re-creation of the authors' recipe computes the same loss as
the lean step on the same batch (fp32), so speed comparisons compare like with like."""
import sys
from pathlib import Path

import pytest
import torch

from l2l_fast.adapters import adapter_for
from l2l_fast.models import MAE, MAGE
from l2l_fast.models.masks import parse_mask
from l2l_fast.unlearning import objectives
from l2l_fast.unlearning.objectives import StepModels
from l2l_fast.unlearning.recipe import frozen_teacher
from l2l_fast.unlearning.step_data import StepInputs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from authors_recipe import authors_step  # noqa: E402

TINY = dict(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=4,
            decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)


TINY_MAGE = dict(img_size=16, embed_dim=32, depth=1, num_heads=4, decoder_embed_dim=16, decoder_depth=1,
                 decoder_num_heads=2, tokenizer=dict(in_chans=1, ch=8, ch_mult=[1, 2, 2], num_res_blocks=1,
                                                     z_channels=8, n_embed=16, norm_groups=4))


@pytest.mark.parametrize("family", ["mae", "vq"])
@pytest.mark.parametrize("distance", ["mse", "l2"])
def test_same_loss_and_gradients_as_the_lean_step(family, distance):
    torch.manual_seed(0)
    model = MAE(**TINY) if family == "mae" else MAGE(**TINY_MAGE)
    adapter = adapter_for(model)
    teacher = frozen_teacher(model.encoder)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(0.01 * torch.randn_like(p))  # the student has moved away from the teacher
    g = torch.Generator().manual_seed(1)
    s = StepInputs(
        adapter=adapter, retain=torch.rand(4, 1, 16, 16, generator=g), forget=torch.rand(3, 1, 16, 16, generator=g),
        corruption=adapter.draw(parse_mask("random:0.5"), 7, g), alpha=0.25, distance=distance,
        noise_seed=5, noise_offset=1000, noise_stats="batch", noise_clamp=None)
    params = [p for p in model.encoder.parameters() if p.requires_grad]
    lean = objectives.ours(s, StepModels(model.encoder, teacher))
    lean_grads = torch.autograd.grad(lean[0], params, allow_unused=True)
    authors = authors_step(s, model.encoder, teacher)
    authors_grads = torch.autograd.grad(authors[0], params, allow_unused=True)
    for a, b in zip(lean, authors):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    for a, b in zip(lean_grads, authors_grads):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
