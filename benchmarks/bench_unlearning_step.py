"""A whole unlearning step (loss, backward, AdamW), the lean step against the
authors' recipe on the same batches, fp32 on this CPU (steps/s in the JSON)."""
import pytest
import torch
from authors_recipe import authors_step

from l2l_fast import objectives
from l2l_fast.adapters import adapter_for
from l2l_fast.masks import parse_mask
from l2l_fast.models import MAE, MAGE
from l2l_fast.optim import adamw
from l2l_fast.presets import FASHION_MNIST_MAE, FASHION_MNIST_MAGE
from l2l_fast.targets import frozen_teacher

MODELS = {
    "mae_fashion_mnist": (FASHION_MNIST_MAE, 32, "inpaint:3"),
    "mage_fashion_mnist": (FASHION_MNIST_MAGE, 32, "inpaint:3"),
    "mae_vit_tiny_224": (dict(img_size=224, patch_size=16, in_chans=3, embed_dim=192, depth=12, num_heads=3,
                              decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4), 8, "random:0.75"),
}


def build(name):
    config, batch, mask = MODELS[name]
    torch.manual_seed(0)
    model = (MAGE if name.startswith("mage") else MAE)(**config)
    adapter = adapter_for(model)
    g = torch.Generator().manual_seed(0)
    channels, size, _ = adapter.image_shape
    inputs = objectives.StepInputs(
        adapter=adapter, retain=torch.rand(batch, channels, size, size, generator=g),
        forget=torch.rand(batch, channels, size, size, generator=g),
        corruption=adapter.draw(parse_mask(mask), 2 * batch, g), alpha=0.25, distance="mse",
        noise_seed=0, noise_offset=0, noise_stats="batch", noise_clamp=None)
    return model, inputs


@pytest.mark.parametrize("recipe", ["lean", "authors"])
@pytest.mark.parametrize("name", list(MODELS))
def test_unlearning_step(benchmark, recipe, name):
    model, inputs = build(name)
    benchmark.group = f"unlearning step fp32 {name} batch {inputs.num_retain}+{inputs.forget.shape[0]}"
    teacher = frozen_teacher(model.encoder)
    optimizer = adamw(model.encoder.named_parameters(), 1e-4)
    step_loss = objectives.ours if recipe == "lean" else authors_step

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss, _, _ = step_loss(inputs, model.encoder, teacher)
        loss.backward()
        optimizer.step()

    step()
    benchmark.pedantic(step, rounds=8, warmup_rounds=1)
