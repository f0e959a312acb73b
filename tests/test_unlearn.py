import copy

import pytest
import torch

import l2l_fast
from l2l_fast.adapters import MAEAdapter
from l2l_fast.ops import reference

from conftest import AE_FORGET, AE_RETAIN, FORGET, RETAIN, RUN, dropout_autoencoder, tiny_model


def state(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_decoder_is_bit_identical_and_encoder_changes():
    model = tiny_model()
    decoder, encoder = state(model.decoder), state(model.encoder)
    returned = l2l_fast.unlearn(model, FORGET, RETAIN, **RUN)
    assert returned is model
    assert all(torch.equal(decoder[k], v) for k, v in model.decoder.state_dict().items())
    changed = [k for k, v in model.encoder.state_dict().items() if not torch.equal(encoder[k], v)]
    assert "blocks.0.attn.qkv.weight" in changed and "pos_embed" not in changed


def test_same_seed_same_encoder_bit_for_bit():
    a = l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, seed=7, **RUN)
    b = l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, seed=7, **RUN)
    c = l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, seed=8, **RUN)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not all(torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_seed_fixes_a_run_whose_encoder_uses_dropout():
    """Dropout draws from torch's global RNG: the seed fixes it for the run, and the
    caller's global RNG comes back as it was, neither reseeded nor advanced."""
    (a, adapter_a), (b, adapter_b), (c, adapter_c) = (dropout_autoencoder() for _ in range(3))
    torch.manual_seed(1234)
    caller = torch.get_rng_state()
    l2l_fast.unlearn(a, AE_FORGET, AE_RETAIN, adapter=adapter_a, seed=7, **RUN)
    assert torch.equal(torch.get_rng_state(), caller)
    torch.rand(5)  # the caller's RNG moves on between the calls; the run must not see it
    l2l_fast.unlearn(b, AE_FORGET, AE_RETAIN, adapter=adapter_b, seed=7, **RUN)
    l2l_fast.unlearn(c, AE_FORGET, AE_RETAIN, adapter=adapter_c, seed=8, **RUN)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not all(torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_dropout_is_what_differs_between_seeds_of_the_global_rng():
    """The seeds of the run's own draws (batches, masks, noise) held, only the global RNG
    changed: a dropout encoder's result follows it, which is why unlearn seeds it."""
    from l2l_fast.training.seeding import rank_seed

    assert rank_seed(7, 0) == 7 and len({rank_seed(7, r) for r in range(4)}) == 4
    model, adapter = dropout_autoencoder()
    runs = []
    for global_seed in (0, 1):
        model_copy = copy.deepcopy(model)
        adapter_copy = l2l_fast.adapt(model_copy, "encoder", image_shape=(1, 8, 8), patch_size=2)
        recipe = l2l_fast.UnlearnRecipe(model_copy, AE_FORGET, AE_RETAIN, l2l_fast.UnlearnConfig(seed=3, **RUN),
                                        adapter=adapter_copy)
        recipe.setup()
        torch.manual_seed(global_seed)  # inside the run's fork: changes only the dropout masks
        recipe.train()
        recipe.close()
        runs.append(model_copy.encoder.state_dict())
    assert not all(torch.equal(v, runs[1][k]) for k, v in runs[0].items())


def test_teacher_is_not_kept_on_the_model():
    model = tiny_model()
    keys, modules = set(model.state_dict()), len(list(model.modules()))
    l2l_fast.unlearn(model, FORGET, RETAIN, **RUN)
    assert set(model.state_dict()) == keys and len(list(model.modules())) == modules
    assert not model.training


class LabelledImages(torch.utils.data.Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], 3


def test_dataset_input_matches_tensor_input():
    a = l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, **RUN)
    b = l2l_fast.unlearn(tiny_model(), LabelledImages(FORGET), LabelledImages(RETAIN), **RUN)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


class RecordingAdapter(MAEAdapter):
    """Records every encode call: (is_teacher, images, corruption)."""

    def __init__(self, model):
        super().__init__(model)
        self.calls = []

    def encode(self, encoder, images, corruption):
        self.calls.append((encoder is not self.encoder, images.clone(), corruption.clone()))
        return super().encode(encoder, images, corruption)


def test_step_follows_the_design():
    """One teacher pass on [T(x_R); T(n_F)], the same mask for student and teacher,
    seeded noise with the forget batch's statistics, and the loss of DESIGN §1."""
    model = tiny_model()
    original = copy.deepcopy(model.encoder)
    adapter = RecordingAdapter(model)
    log = []
    alpha, batch, seed = 0.5, 4, 3
    l2l_fast.unlearn(model, FORGET, RETAIN, adapter=adapter, alpha=alpha, seed=seed, callback=log.append,
                     cache_targets=False, **{**RUN, "steps": 2, "batch_size": batch})
    assert [c[0] for c in adapter.calls] == [False, True, False, True]  # teacher once per step
    student_in, student_keep = adapter.calls[0][1], adapter.calls[0][2]
    teacher_in, teacher_keep = adapter.calls[1][1], adapter.calls[1][2]
    assert teacher_in.shape[0] == 2 * batch and torch.equal(teacher_keep, student_keep)
    assert torch.equal(teacher_in[:batch], student_in[:batch])  # retain images in both
    forget = student_in[batch:]
    assert any(torch.equal(forget[0], f) for f in FORGET)
    pixel = adapter.noise_keep(student_keep)[batch:]
    noise = reference.gaussian_target(forget, seed=seed, offset=0, stats="batch", keep=pixel)
    torch.testing.assert_close(teacher_in[batch:], noise, atol=2e-6, rtol=1e-6)
    # step 0: student = teacher, so the retain term is 0 and the forget term is
    # alpha * mean_F mse(E(T x_F), E0(T n_F)).
    with torch.no_grad():
        e_x = original(forget, student_keep[batch:])
        e_n = original(noise, student_keep[batch:])
    expected = alpha * (e_x - e_n).square().mean(dim=(1, 2)).mean()
    assert log[0]["retain"] == pytest.approx(0.0, abs=1e-7)
    assert log[0]["loss"] == pytest.approx(expected.item(), rel=1e-4)
    # step 1 draws different noise (offset advances by the batch's numel)
    assert not torch.allclose(adapter.calls[3][1][batch:], teacher_in[batch:])


@pytest.mark.parametrize("kwargs, argument", [
    (dict(forget=torch.empty(0, 1, 16, 16)), "forget"),
    (dict(retain=torch.empty(0, 1, 16, 16)), "retain"),
    (dict(forget=torch.rand(4, 1, 8, 8)), "forget"),
    (dict(retain=torch.rand(4, 3, 16, 16)), "retain"),
    (dict(forget=torch.rand(16, 16)), "forget"),
    (dict(alpha=-0.1), "alpha"),
    (dict(steps=0), "steps"),
    (dict(batch_size=0), "batch_size"),
    (dict(lr=0.0), "lr"),
    (dict(mask="inpaint"), "mask"),
    (dict(mask="swirl:3"), "mask"),
    (dict(distance="cosine"), "distance"),
    (dict(noise_stats="global"), "noise_stats"),
])
def test_bad_arguments_name_the_argument(kwargs, argument):
    args = dict(forget=FORGET, retain=RETAIN, **RUN)
    args.update(kwargs)
    model = tiny_model()
    before = state(model)
    with pytest.raises(ValueError, match=argument):
        l2l_fast.unlearn(model, args.pop("forget"), args.pop("retain"), **args)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_unknown_model_needs_an_adapter():
    with pytest.raises(TypeError, match="adapter="):
        l2l_fast.unlearn(torch.nn.Linear(2, 2), FORGET, RETAIN, **RUN)


def test_non_finite_loss_stops_at_that_step_keeping_the_last_finite_weights():
    model = tiny_model()
    forget = FORGET.clone()
    snapshots = {}

    def poison(record):
        snapshots[record["step"]] = state(model.encoder)
        if record["step"] == 1:
            forget[:] = float("nan")

    with pytest.raises(l2l_fast.NonFiniteLossError, match="step 2"):
        l2l_fast.unlearn(model, forget, RETAIN, callback=poison, **RUN)
    assert all(torch.equal(snapshots[1][k], v) for k, v in model.encoder.state_dict().items())
    assert not all(torch.equal(snapshots[0][k], v) for k, v in model.encoder.state_dict().items())


def test_log_every_reads_the_same_records_later():
    """log_every=3: every step's record, the same values, delivered after steps 2, 5 and the last."""
    def run(log_every):
        model, log, weights = tiny_model(), [], []

        def keep(record):
            log.append(record)
            weights.append(state(model.encoder))

        l2l_fast.unlearn(model, FORGET, RETAIN, callback=keep, log_every=log_every, **dict(RUN, steps=7))
        return model, log, weights

    model, log, weights = run(1)
    later, later_log, later_weights = run(3)
    assert later_log == log and [r["step"] for r in log] == list(range(7))
    assert all(torch.equal(state(model.encoder)[k], v) for k, v in state(later.encoder).items())
    read_after = [2, 2, 2, 5, 5, 5, 6]
    for seen, step in zip(later_weights, read_after):
        assert all(torch.equal(weights[step][k], v) for k, v in seen.items())


class CountingImages(torch.utils.data.Dataset):
    """`images`, turning NaN from the `poison_from`-th item read on."""

    def __init__(self, images, poison_from=None):
        self.images, self.poison_from, self.reads = images, poison_from, 0

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        self.reads += 1
        image = self.images[index]
        poisoned = self.poison_from is not None and self.reads > self.poison_from
        return torch.full_like(image, float("nan")) if poisoned else image


def test_non_finite_loss_between_reads_stops_the_updates_on_the_device():
    """With log_every=4 the NaN batch of step 2 is seen only after step 3: no update after
    step 1 is applied, and the error names step 2."""
    clean, snapshots, reads = tiny_model(), {}, {}
    forget = CountingImages(FORGET)

    def watch(record):
        snapshots[record["step"]] = state(clean.encoder)
        reads[record["step"]] = forget.reads

    l2l_fast.unlearn(clean, forget, RETAIN, callback=watch, log_every=1, **dict(RUN, steps=6))
    model, log = tiny_model(), []
    with pytest.raises(l2l_fast.NonFiniteLossError, match="non-finite loss \\(nan\\) at step 2; .* from step 1"):
        l2l_fast.unlearn(model, CountingImages(FORGET, poison_from=reads[1]), RETAIN, callback=log.append,
                         log_every=4, **dict(RUN, steps=6))
    assert [r["step"] for r in log] == [0, 1]
    assert all(torch.equal(snapshots[1][k], v) for k, v in model.encoder.state_dict().items())


def test_a_batch_above_a_sets_size_needs_repeat_samples():
    small = FORGET[:3]
    with pytest.raises(ValueError, match="batch_size 4 is above the forget set's 3 images"):
        l2l_fast.unlearn(tiny_model(), small, RETAIN, **RUN)
    model = l2l_fast.unlearn(tiny_model(), small, RETAIN, repeat_samples=True, **RUN)
    assert not all(torch.equal(v, tiny_model().encoder.state_dict()[k]) for k, v in model.encoder.state_dict().items())
