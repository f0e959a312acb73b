import pytest
import torch

from l2l_fast.models.masks import MaskSpec, parse_mask, patch_keep, pixel_keep


def test_parse_mask_specs():
    assert parse_mask("inpaint:3") == MaskSpec("inpaint", size=3)
    assert parse_mask("outpaint:2") == MaskSpec("outpaint", size=2)
    assert parse_mask("random:0.75") == MaskSpec("random", ratio=0.75)


@pytest.mark.parametrize("bad", ["inpaint", "inpaint:0", "inpaint:x", "random:1.5", "random:0", "blur:3", 3, None])
def test_parse_mask_rejects_bad_specs(bad):
    with pytest.raises(ValueError, match="mask"):
        parse_mask(bad)


def test_inpaint_hides_centre_block():
    keep = patch_keep(parse_mask("inpaint:3"), (7, 7), 2).reshape(2, 7, 7)
    expected = torch.ones(7, 7, dtype=torch.bool)
    expected[2:5, 2:5] = False
    assert torch.equal(keep[0], expected) and torch.equal(keep[1], expected)


def test_outpaint_keeps_only_centre_block():
    keep = patch_keep(parse_mask("outpaint:2"), (4, 6), 1).reshape(1, 4, 6)
    expected = torch.zeros(4, 6, dtype=torch.bool)
    expected[1:3, 2:4] = True
    assert torch.equal(keep[0], expected)


def test_random_mask_hides_fraction_per_sample_and_is_seeded():
    spec = parse_mask("random:0.5")
    a = patch_keep(spec, (4, 4), 8, torch.Generator().manual_seed(1))
    b = patch_keep(spec, (4, 4), 8, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert (a.sum(dim=1) == 8).all()
    assert len({tuple(row.tolist()) for row in a}) > 1  # drawn per sample


def test_mask_larger_than_grid_is_rejected():
    with pytest.raises(ValueError, match="does not fit"):
        patch_keep(parse_mask("inpaint:8"), (7, 7), 1)


def test_pixel_keep_expands_patches():
    keep = torch.tensor([[True, False, False, True]])
    pixels = pixel_keep(keep, (2, 2), 3)
    assert pixels.shape == (1, 1, 6, 6)
    assert pixels[0, 0, :3, :3].eq(1).all() and pixels[0, 0, :3, 3:].eq(0).all()
    assert pixels[0, 0, 3:, :3].eq(0).all() and pixels[0, 0, 3:, 3:].eq(1).all()
