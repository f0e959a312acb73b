import pytest
import torch

from l2l_fast import cli, load_model
from l2l_fast.adapters import adapter_for
from l2l_fast.data.fashion_mnist import DEFAULT_ROOT
from l2l_fast.models import MAE
from l2l_fast.training.pretrain import pretrain

TINY = dict(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=1, num_heads=4,
            decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
IMAGES = torch.rand(40, 1, 16, 16, generator=torch.Generator().manual_seed(0))


def fresh():
    torch.manual_seed(0)
    return MAE(**TINY)


def test_pretraining_lowers_the_loss():
    losses = pretrain(adapter_for(fresh()), IMAGES, steps=30, batch_size=8, lr=3e-3, progress=False)
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5])


def test_resumed_pretraining_matches_an_uninterrupted_run(tmp_path):
    straight = fresh()
    pretrain(adapter_for(straight), IMAGES, steps=6, batch_size=4, progress=False)
    state = tmp_path / "state.safetensors"
    interrupted = adapter_for(fresh())
    calls = []

    def crash_at_step_4(images, corruption, targets=None):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return type(interrupted).task_loss(interrupted, images, corruption, targets)

    interrupted.task_loss = crash_at_step_4
    with pytest.raises(KeyboardInterrupt):
        pretrain(interrupted, IMAGES, steps=6, batch_size=4, progress=False, state_path=state, checkpoint_every=3)
    resumed = fresh()  # a new process: weights come only from the state file
    losses = pretrain(adapter_for(resumed), IMAGES, steps=6, batch_size=4, progress=False, state_path=state,
                      checkpoint_every=3)
    assert len(losses) == 6
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in straight.state_dict().items())


@pytest.mark.skipif(not DEFAULT_ROOT.is_dir(), reason="dataset-fashion-mnist is not installed")
@pytest.mark.parametrize("family", ["mae", "vq", "diffusion"])
def test_pretrain_command_for_every_family(tmp_path, family):
    out = tmp_path / f"{family}.safetensors"
    assert cli.main(["pretrain", "--family", family, "--steps", "2", "--tokenizer-steps", "2",
                     "--batch-size", "4", "--out", str(out)]) == 0
    model = load_model(out)
    assert model.family == family and not (tmp_path / f"{family}.state.safetensors").exists()


@pytest.mark.skipif(not DEFAULT_ROOT.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_pretrain_plants_canaries_and_retrains_without_them(tmp_path):
    import json

    from l2l_fast.training.files import read

    first = tmp_path / "canary.safetensors"
    assert cli.main(["pretrain", "--steps", "1", "--batch-size", "2", "--canaries", "5", "--out", str(first)]) == 0
    record = json.loads((tmp_path / "canary.canaries.json").read_text())
    assert len(set(record["indices"])) == 5 and record["glyph"]["size"] == 12
    again = tmp_path / "again.safetensors"
    assert cli.main(["pretrain", "--steps", "1", "--batch-size", "2", "--canaries", "5", "--out", str(again)]) == 0
    assert json.loads((tmp_path / "again.canaries.json").read_text())["indices"] == record["indices"]  # seeded
    without = tmp_path / "without.safetensors"
    assert cli.main(["pretrain", "--steps", "1", "--batch-size", "2", "--exclude-indices",
                     str(tmp_path / "canary.canaries.json"), "--exclude-classes", "0", "1", "--out", str(without)]) == 0
    recipe = read(without)[1]["pretrain"]
    assert recipe["exclude_classes"] == [0, 1] and recipe["excluded_images"] == 5
    assert read(first)[1]["pretrain"]["canaries"] == 5
