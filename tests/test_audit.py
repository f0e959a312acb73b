import json

import pytest
import torch
from sklearn.metrics import roc_auc_score

from l2l_fast import cli
from l2l_fast.adapters import adapter_for
from l2l_fast.data.assets import load_demo_images
from l2l_fast.data.canaries import Glyph, choose_canaries, kept_indices, plant
from l2l_fast.evaluation import audit
from l2l_fast.evaluation.metrics.canary import canary_correlation
from l2l_fast.evaluation.metrics.membership import bootstrap_interval, roc_auc
from l2l_fast.models import MAE
from l2l_fast.models.masks import parse_mask
from l2l_fast.training.pretrain import pretrain

TINY = dict(img_size=28, patch_size=4, in_chans=1, embed_dim=32, depth=1, num_heads=4,
            decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4)
IMAGES = load_demo_images("test")[0][torch.randperm(1000, generator=torch.Generator().manual_seed(0))]
MEMBERS, OTHERS, NONMEMBERS = IMAGES[:12], IMAGES[12:48], IMAGES[48:60]
FAST = dict(bootstrap=200, batch_size=64)


def trained(images, steps=400):
    torch.manual_seed(0)
    model = MAE(**TINY)
    pretrain(adapter_for(model), images, steps=steps, batch_size=8, lr=3e-3, masks=("inpaint:3", "random:0.75"),
             progress=False)
    return model


@pytest.fixture(scope="module")
def canary_models():
    """A tiny MAE trained with the glyph on MEMBERS, and the same recipe retrained without them."""
    return trained(torch.cat([plant(MEMBERS), OTHERS])), trained(OTHERS)


def test_roc_auc_is_scikit_learns_with_ties_and_in_batches():
    generator = torch.Generator().manual_seed(0)
    members, nonmembers = torch.randint(0, 6, (3, 40), generator=generator), torch.randint(0, 5, (3, 30),
                                                                                          generator=generator)
    for b in range(3):
        expected = roc_auc_score([1] * 40 + [0] * 30, torch.cat([members[b], nonmembers[b]]).numpy())
        assert float(roc_auc(members[b], nonmembers[b])) == pytest.approx(expected, abs=1e-12)
        assert float(roc_auc(members, nonmembers)[b]) == pytest.approx(expected, abs=1e-12)


def test_bootstrap_interval_is_seeded_and_holds_the_estimate():
    values = torch.rand(50, generator=torch.Generator().manual_seed(1))
    first = bootstrap_interval(lambda x: x.mean(-1), values, seed=3, resamples=500)
    assert first == bootstrap_interval(lambda x: x.mean(-1), values, seed=3, resamples=500)
    assert first[0] < float(values.mean()) < first[1]
    assert first != bootstrap_interval(lambda x: x.mean(-1), values, seed=4, resamples=500)


def test_audit_auc_is_scikit_learns_on_the_hole_errors():
    torch.manual_seed(1)
    model = MAE(**TINY).eval()
    result = audit(model, MEMBERS, NONMEMBERS, **FAST)["models"]["model"]
    with torch.no_grad():  # inpaint:3 hides the centre 12 x 12 pixels of every image
        adapter = adapter_for(model)
        spec = parse_mask("inpaint:3")
        errors = []
        for images in (MEMBERS, NONMEMBERS):
            done = adapter.generate(images, adapter.draw(spec, images.shape[0], torch.Generator())).clamp(0, 1)
            errors.append((done - images)[..., 8:20, 8:20].double().square().mean(dim=(1, 2, 3)))
    scores = -torch.cat(errors)
    assert result["auc"] == pytest.approx(roc_auc_score([1] * 12 + [0] * 12, scores.numpy()), abs=1e-12)
    assert result["mse_forget"] == pytest.approx(float(errors[0].mean()), rel=1e-5)
    assert result["auc_interval"][0] <= result["auc"] <= result["auc_interval"][1]


def test_memorised_canaries_are_detected_and_the_retrained_model_is_not(canary_models, tmp_path):
    memorised, retrained = canary_models
    result = audit(memorised, MEMBERS, NONMEMBERS, reference=retrained, canaries=True, out=tmp_path, **FAST)
    seen, never = result["models"]["model"]["canary"], result["models"]["reference"]["canary"]
    assert seen["forget"]["interval"][0] > seen["clean_nonmembers"]["interval"][1]   # detected
    assert never["forget"]["interval"][0] <= never["clean_nonmembers"]["rate"] <= never["forget"]["interval"][1]
    assert never["forget"]["rate"] < seen["forget"]["interval"][0]
    alone = audit(retrained, MEMBERS, NONMEMBERS, canaries=True, **FAST)["models"]["model"]
    assert alone == result["models"]["reference"]   # the reference is scored as the model is
    distance = result["distance_to_reference"]
    assert distance["hole_mse_forget"] > 0 and distance["FID_forget"] > 0
    assert json.loads((tmp_path / "audit.json").read_text()) == json.loads(json.dumps(result))
    assert "| reference |" in (tmp_path / "audit.md").read_text()


def test_canary_correlation_reads_only_the_hidden_glyph_pixels():
    glyph = Glyph()
    drawn = glyph.image(28, 28)[None, None].repeat(3, 1, 1, 1)
    drawn[1] = 0.3   # flat: no glyph
    drawn[2, :, 8:16, 8:16] = 1 - drawn[2, :, 8:16, 8:16]   # the glyph inverted where the hole covers it
    visible = torch.ones(3, 1, 28, 28)
    visible[..., 8:20, 8:20] = 0
    correlation = canary_correlation(drawn, visible, glyph)
    assert correlation.tolist() == pytest.approx([1.0, 0.0, -1.0])
    assert canary_correlation(drawn, torch.ones(3, 1, 28, 28), glyph).isnan().all()


def test_planting_and_choosing_canaries():
    images = torch.full((4, 1, 28, 28), 0.5)
    planted = plant(images)
    assert torch.equal(planted[:, 0, 4:16, 4:16], Glyph().pattern().expand(4, 12, 12))
    assert (planted[:, :, 16:] == 0.5).all() and (images == 0.5).all()
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    kept = kept_indices(labels, exclude_classes=[1], exclude_indices=[0])
    assert kept.tolist() == [2, 3, 5]
    assert choose_canaries(kept, 2, seed=0).tolist() == choose_canaries(kept, 2, seed=0).tolist()
    assert set(choose_canaries(kept, 2, seed=0).tolist()) <= {2, 3, 5}
    with pytest.raises(ValueError, match="exclude-indices"):
        kept_indices(labels, exclude_indices=[6])


def test_overlapping_or_too_small_sets_are_refused():
    model = MAE(**TINY)
    with pytest.raises(ValueError, match=r"^nonmembers: 1 images are also in forget"):
        audit(model, MEMBERS, torch.cat([NONMEMBERS[1:], MEMBERS[:1]]), **FAST)
    with pytest.raises(ValueError, match=r"^forget: 9 images; .* at least 10 per side"):
        audit(model, MEMBERS[:9], NONMEMBERS, **FAST)
    with pytest.raises(ValueError, match=r"^mask"):
        audit(model, MEMBERS, NONMEMBERS, mask="outpaint:5", canaries=True, **FAST)


def test_audit_command_writes_the_report_and_names_the_key_of_a_mistake(tmp_path, capsys):
    config = tmp_path / "audit.yaml"
    config.write_text("model: demo\nreference: demo\ndataset: demo\nforget: {split: train, classes: [0], count: 12}\n"
                      "nonmembers: {split: test, classes: [0], count: 12}\nbootstrap: 100\nout: results\n")
    assert cli.main(["audit", "--config", str(config)]) == 0
    result = json.loads((tmp_path / "results" / "audit.json").read_text())
    assert result["distance_to_reference"]["hole_mse_forget"] == 0.0
    assert "membership AUC" in capsys.readouterr().out
    config.write_text(config.read_text().replace("split: test", "split: train"))
    assert cli.main(["audit", "--config", str(config)]) == 2
    assert "audit.yaml: nonmembers: 12 images are also in forget" in capsys.readouterr().err
    config.write_text(config.read_text().replace("split: train, classes: [0], count: 12}\nbootstrap",
                                                 "split: test, count: 3}\nbootstrap"))
    assert cli.main(["audit", "--config", str(config)]) == 2
    assert "audit.yaml: nonmembers: 3 images; the membership test's bootstrap" in capsys.readouterr().err
    config.write_text(config.read_text().replace("forget: {split: train, classes", "forget: {split: train, clases"))
    assert cli.main(["audit", "--config", str(config)]) == 2
    assert "audit.yaml: forget has unknown keys ['clases']" in capsys.readouterr().err
