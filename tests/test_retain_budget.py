"""retain_budget and the retain check: the damage is the relative rise of the model's own
loss on held-out retain images, per class; a budgeted run ends within it where an
unconstrained run breaks it, backtracking when the steps themselves break it; a resumed
budgeted run repeats the straight one."""
from pathlib import Path

import pytest
import torch
import yaml

import l2l_fast
from l2l_fast import load_model
from l2l_fast.adapters import adapter_for
from l2l_fast.models.masks import parse_mask
from l2l_fast.unlearning.recipe import UnlearnRecipe, UnlearnConfig
from l2l_fast.unlearning.retain_check import MAX_MULTIPLIER

from conftest import (AE_FORGET, AE_RETAIN, FORGET, MAGE_FORGET, MAGE_RETAIN, RETAIN, autoencoder, demo_budget_sets,
                      images, mage_model, palette_model, run_recipe, tiny_model)

HOLDOUT, SEED = 32, 3
RUN = dict(steps=16, batch_size=8, lr=1e-3, alpha=0.5, mask="inpaint:3", seed=SEED, progress=False,
           retain_holdout=HOLDOUT, check_every=4)


@pytest.fixture(scope="module")
def demo_sets():
    return demo_budget_sets()


def held_out_damage(model, retain, seed: int = SEED, holdout: int = HOLDOUT) -> float:
    """The worst class's relative rise of the hole loss against the shipped model, written out
    from the definition: the held-out rows are the first `holdout` of a permutation seeded with
    `seed`, each with the corruption drawn by a generator seeded with `seed`."""
    held = torch.randperm(len(retain), generator=torch.Generator().manual_seed(seed))[:holdout].sort().values
    images = torch.stack([retain[int(i)][0] for i in held])
    labels = torch.tensor([int(retain[int(i)][1]) for i in held])
    worst = -1.0
    with torch.no_grad():
        original, tuned = adapter_for(load_model("demo")), adapter_for(model.eval())
        keep = original.draw(parse_mask("inpaint:3"), holdout, torch.Generator().manual_seed(seed))
        for c in labels.unique():
            rows = (labels == c).nonzero().flatten()
            before = original.task_loss(images[rows], keep[rows])
            after = tuned.task_loss(images[rows], keep[rows])
            worst = max(worst, float(after / before) - 1.0)
    return worst


def budget_run(forget, retain, **options):
    return run_recipe(load_model("demo"), forget, retain, UnlearnConfig(**{**RUN, **options}))


def test_the_budget_holds_where_an_unconstrained_run_breaks_it(demo_sets):
    forget, retain = demo_sets
    free = budget_run(forget, retain)
    free_damage = held_out_damage(free.model, retain)
    assert free.check.history[-1].damage == pytest.approx(free_damage, rel=1e-4)
    budget = free_damage / 4
    assert budget > 0.01  # the unconstrained run breaks a budget of a few percent at least
    bounded = budget_run(forget, retain, retain_budget=budget)
    assert held_out_damage(bounded.model, retain) <= budget
    best = bounded.check.best
    assert best.damage <= budget and best.forget == max(
        [0.0] + [c.forget for c in bounded.check.history if c.damage <= budget])
    assert best.step > 0, "the budget allowed no forgetting at all"
    assert [c.step for c in bounded.check.history] == list(range(4, 17, 4))
    assert len(bounded.check.history[-1].per_class) == 8  # a damage per held-out class


def test_an_impossible_budget_gives_back_the_original_and_says_so(demo_sets, caplog):
    forget, retain = demo_sets
    recipe = budget_run(forget, retain, retain_budget=1e-9, steps=8)
    original = load_model("demo")
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in recipe.model.state_dict().items())
    assert "could not be met" in recipe.budget_message
    last = recipe.check.history[-1]  # the message names the class that broke the budget
    assert f"class {max(last.per_class, key=last.per_class.get)})" in recipe.budget_message


def test_steps_too_long_for_the_budget_are_taken_back_and_halved(demo_sets):
    """At lr 1e-2 the first steps break a 5% budget even with the forget weight at its least; the run
    goes back to the best state within the budget and halves the step length until states meet it."""
    forget, retain = demo_sets
    recipe = budget_run(forget, retain, lr=1e-2, retain_budget=0.05)
    history, least = recipe.check.history, RUN["alpha"] / MAX_MULTIPLIER
    assert history[0].damage > 0.05 and history[0].alpha == least
    for before, after in zip(history, history[1:]):
        broke = before.damage > 0.05 and before.alpha == least
        assert after.step_scale == before.step_scale / (2 if broke else 1)
    halvings = sum(c.damage > 0.05 and c.alpha == least for c in history)
    assert halvings > 1 and recipe.check.step_scale == 0.5 ** halvings
    assert f"halved {halvings} times" in recipe.budget_message
    assert recipe.check.best.step > 0 and recipe.check.best.forget > 0
    assert held_out_damage(recipe.model, retain) <= 0.05


@pytest.mark.parametrize("lr", [1e-3, 1e-2])  # 1e-2: the run backtracks before the checkpoint
def test_a_resumed_budget_run_repeats_the_straight_run(demo_sets, tmp_path, lr):
    forget, retain = demo_sets
    options = dict(retain_budget=0.05, steps=12, lr=lr)
    straight = budget_run(forget, retain, **options)
    budget_run(forget, retain, checkpoint_dir=str(tmp_path), checkpoint_every=4, **options)
    for path in tmp_path.glob("step-00000012.*"):
        path.unlink()
    resumed = budget_run(forget, retain, resume_from=str(tmp_path), checkpoint_every=4, **options)
    assert resumed.check.history == straight.check.history
    assert resumed.check.best.step == straight.check.best.step
    assert all(torch.equal(v, resumed.model.state_dict()[k]) for k, v in straight.model.state_dict().items())


def test_held_out_retain_images_are_never_trained_on(monkeypatch):
    seen = []
    draw = UnlearnRecipe._draw
    monkeypatch.setattr(UnlearnRecipe, "_draw", lambda self, step: seen.append(draw(self, step)) or seen[-1])
    l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, steps=6, batch_size=4, mask="inpaint:2", progress=False,
                     retain_holdout=4, seed=1)
    held = set(torch.randperm(len(RETAIN), generator=torch.Generator().manual_seed(1))[:4].tolist())
    trained = {int(i) for plan in seen for i in plan.index["retain"]}
    assert len(seen) == 6 and len(trained) == len(RETAIN) - 4 and not trained & held


def _family(name):
    if name == "mae":
        return tiny_model(), None, FORGET, RETAIN, "inpaint:2"
    if name == "vq":
        return mage_model(), None, MAGE_FORGET, MAGE_RETAIN, "inpaint:2"
    if name == "diffusion":
        return palette_model(), None, images(8, 1, 0.3), images(10, 2), "inpaint:2"
    model, adapter = autoencoder()
    return model, adapter, AE_FORGET, AE_RETAIN, "inpaint:2"


@pytest.mark.parametrize("family", ["mae", "vq", "diffusion", "adapt"])
def test_every_family_is_checked_on_its_own_loss(family):
    """The first check's damage is the held-out task loss of the tuned model over the original's,
    computed here directly with the adapter and the same seeded corruption."""
    model, adapter, forget, retain, mask = _family(family)
    same_model, same_adapter, *_ = _family(family)  # the builders are seeded
    original = adapter_for(same_model, same_adapter)
    config = UnlearnConfig(steps=2, batch_size=2, mask=mask, progress=False, retain_holdout=4, check_every=2, seed=5)
    recipe = run_recipe(model, forget, retain, config, adapter=adapter)
    held = torch.randperm(len(retain), generator=torch.Generator().manual_seed(5))[:4].sort().values
    tuned = recipe.adapter
    corruption = tuned.draw(parse_mask(mask), 4, torch.Generator().manual_seed(5))
    with torch.no_grad():
        tuned.model.eval()
        original.model.eval()
        after = tuned.task_loss(retain[held], corruption)
        before = original.task_loss(retain[held], corruption)
    (check,) = recipe.check.history
    assert check.per_class == {"all": pytest.approx(float(after / before) - 1.0, rel=1e-4, abs=1e-6)}
    assert check.damage != 0.0  # two steps moved the encoder


@pytest.mark.parametrize("options, message", [
    (dict(retain_holdout=12), "retain_holdout 12 leaves none"),
    (dict(retain_holdout=10), r"batch_size 4 is above the retain set's 2 images \(after the 10 held out\)"),
    (dict(retain_budget=0.1, retain_holdout=0), "retain_budget needs held-out retain images"),
    (dict(retain_budget=-0.1), "retain_budget"),
])
def test_bad_budget_options_name_the_option(options, message):
    with pytest.raises(ValueError, match=message):
        l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, steps=2, batch_size=4, mask="inpaint:2", progress=False,
                         **options)


def test_a_budget_under_sharded_fsdp_is_refused_before_any_work(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets them; nothing joins a group before the check
    with pytest.raises(ValueError, match="does not combine with fsdp"):
        UnlearnRecipe(tiny_model(), FORGET, RETAIN, UnlearnConfig(steps=2, batch_size=4, mask="inpaint:2",
                                                                   retain_budget=0.1, fsdp=True))


def test_the_proxy_retain_example_parses_and_measures_classes_it_never_trains_on(monkeypatch, tmp_path):
    from l2l_fast.cli.eval_config import parse_eval_config
    from l2l_fast.cli.run_files import parse_config

    examples = Path(__file__).resolve().parents[1] / "examples"
    raw = yaml.safe_load((examples / "proxy_retain.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    (tmp_path / raw["run"]["output"]).write_bytes(b"")  # the model the run writes
    run, evaluation = parse_config(raw["run"], "proxy_retain"), parse_eval_config(raw["eval"], "proxy_retain")
    assert (run.unlearn.retain_budget, run.unlearn.noise_stats) == (0.02, "standard")
    assert not set(run.data.retain) & set(evaluation.data.retain)
    assert run.data.forget == evaluation.data.forget
