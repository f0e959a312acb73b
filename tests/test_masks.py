import pytest
import torch

from l2l_fast.models.masks import MaskSpec, default_patch_size, parse_mask, patch_keep, pixel_keep


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


# the paper's masks

import math  # noqa: E402

from l2l_fast.models.brush_masks import hybrid_hole  # noqa: E402
from l2l_fast.models.masks import MAGE_RATIO, keep_pixels, mage_ratio  # noqa: E402


@pytest.mark.parametrize("text, spec", [
    ("box:0.25", MaskSpec("box", ratio=0.25, by="area")),
    ("box:area=0.25", MaskSpec("box", ratio=0.25, by="area")),
    ("box:side=4/16", MaskSpec("box", ratio=0.25, by="side")),
    ("mage", MaskSpec("mage", params=MAGE_RATIO)),
    ("mage:0.6,0.2,0.4,0.9", MaskSpec("mage", params=(0.6, 0.2, 0.4, 0.9))),
    ("hybrid", MaskSpec("hybrid")),
])
def test_parse_the_papers_mask_specs_and_round_trip(text, spec):
    assert parse_mask(text) == spec
    assert parse_mask(str(spec)) == spec


@pytest.mark.parametrize("bad", ["box", "box:0", "box:1", "box:side=5/4", "box:edge=0.5", "box:1/0", "mage:0.5",
                                 "mage:0.5,0,0.5,1", "mage:0.5,0.2,0.9,0.4", "mage:0.5,0.2,0.5,1.5", "hybrid:2",
                                 "box:x"])
def test_malformed_paper_specs_are_rejected_naming_the_argument(bad):
    with pytest.raises(ValueError, match="^unlearn.mask must be .*got"):
        parse_mask(bad, "unlearn.mask")


def test_fixed_and_random_specs():
    assert parse_mask("box:0.25").deterministic and parse_mask("inpaint:2").deterministic
    assert not parse_mask("mage").deterministic and not parse_mask("hybrid").deterministic
    assert parse_mask("hybrid").pixel_level and not parse_mask("mage").pixel_level


@pytest.mark.parametrize("spec, grid, sides", [
    ("box:0.25", (16, 16), (8, 8)),           # Palette's centre mask: 25% of the area, half the side
    ("box:side=4/16", (16, 16), (4, 4)),      # MAGE's evaluation boxes on its token grid
    ("box:side=8/16", (16, 16), (8, 8)),
    ("box:0.25", (8, 4), (4, 2)),
    ("box:side=0.5", (6, 10), (3, 5)),
])
def test_centre_boxes_by_area_or_side(spec, grid, sides):
    keep = patch_keep(parse_mask(spec), grid, 2).reshape(2, *grid)
    expected = torch.ones(grid, dtype=torch.bool)
    top, left = (grid[0] - sides[0]) // 2, (grid[1] - sides[1]) // 2
    expected[top:top + sides[0], left:left + sides[1]] = False
    assert torch.equal(keep[0], expected) and torch.equal(keep[1], expected)
    if spec == "box:0.25" and grid == (16, 16):
        assert (~keep).float().mean() == 0.25


def test_a_box_too_small_for_the_grid_is_rejected():
    with pytest.raises(ValueError, match="hides no cell of the 4x4 grid"):
        patch_keep(parse_mask("box:0.01"), (4, 4), 1)


def test_mage_ratio_is_the_truncated_normal():
    """Bounds, and the mean and variance of a normal(0.55, 0.25) truncated to [0.5, 1]
    written out by hand (Φ, φ of the standardised bounds)."""
    g = torch.Generator().manual_seed(0)
    draws = torch.tensor([mage_ratio(MAGE_RATIO, g) for _ in range(4000)], dtype=torch.float64)
    assert draws.min() >= 0.5 and draws.max() <= 1.0
    mu, sigma, lo, hi = MAGE_RATIO
    a, b = (lo - mu) / sigma, (hi - mu) / sigma
    phi = lambda x: math.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    z = cdf(b) - cdf(a)
    mean = mu + sigma * (phi(a) - phi(b)) / z
    var = sigma ** 2 * (1 + (a * phi(a) - b * phi(b)) / z - ((phi(a) - phi(b)) / z) ** 2)
    standard_error = math.sqrt(var / len(draws))
    assert abs(float(draws.mean()) - mean) < 4 * standard_error
    assert abs(float(draws.var()) - var) < 0.1 * var


def test_mage_masks_share_one_ratio_per_draw_and_are_seeded():
    spec = parse_mask("mage")
    keeps = [patch_keep(spec, (16, 16), 6, torch.Generator().manual_seed(s)) for s in range(20)]
    for keep in keeps:
        hidden = (~keep).sum(dim=1)
        assert (hidden == hidden[0]).all()  # one ratio for the whole batch, as upstream
        assert 128 <= int(hidden[0]) <= 256  # ceil(256 r), r in [0.5, 1]
        assert len({tuple(row.tolist()) for row in keep}) > 1
    assert len({int((~k).sum()) for k in keeps}) > 1  # a new ratio at every draw
    g = torch.Generator().manual_seed(3)
    expected = math.ceil(mage_ratio(MAGE_RATIO, g) * 256)
    keep = patch_keep(spec, (16, 16), 2, torch.Generator().manual_seed(3))
    assert int((~keep[0]).sum()) == expected
    assert torch.equal(keep, patch_keep(spec, (16, 16), 2, torch.Generator().manual_seed(3)))


def test_hybrid_masks_are_box_and_strokes_seeded_per_sample():
    holes = hybrid_hole((64, 64), 6, torch.Generator().manual_seed(0))
    assert holes.shape == (6, 1, 64, 64) and set(holes.unique().tolist()) <= {0.0, 1.0}
    again = hybrid_hole((64, 64), 6, torch.Generator().manual_seed(0))
    assert torch.equal(holes, again)
    assert not torch.equal(holes, hybrid_hole((64, 64), 6, torch.Generator().manual_seed(1)))
    assert len({tuple(h.flatten().tolist()) for h in holes}) == 6
    area = holes.mean(dim=(1, 2, 3))
    # at least the box (at least (32 - 10) x (32 - 10) of 64 x 64) and never the whole image
    assert (area >= 22 * 22 / 64 ** 2).all() and (area < 1).all()
    keep = keep_pixels(parse_mask("hybrid"), (8, 8), 8, 6, torch.Generator().manual_seed(0))
    assert torch.equal(keep, 1 - holes)


def test_hybrid_box_follows_palettes_bounds():
    """The box part alone: Palette's random_bbox at 256 gives top, left in [20, 108) then a
    shrink of [0, 20] from the top and left; the box's bottom-right stays at top + 128."""
    from l2l_fast.models.brush_masks import _box
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        hole = _box((256, 256), g)
        rows, cols = hole.any(1).nonzero().flatten(), hole.any(0).nonzero().flatten()
        top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        assert 20 <= bottom - 128 < 108 and 20 <= right - 128 < 108
        assert 108 <= bottom - top <= 128 and 108 <= right - left <= 128
        assert hole.sum() == (bottom - top) * (right - left)


def test_pixel_masks_are_refused_by_patch_grid_models():
    with pytest.raises(ValueError, match="pixel mask"):
        patch_keep(parse_mask("hybrid"), (4, 4), 1)


def test_stroke_rasterisation_is_the_distance_to_the_polyline():
    from l2l_fast.models.brush_masks import _segments_cover
    points = [(1.0, 2.0), (9.0, 5.0), (4.0, 11.0)]
    cover = _segments_cover(torch.tensor(points, dtype=torch.float64), 1.5, (12, 13))
    for y in range(12):
        for x in range(13):
            near = False
            for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
                dx, dy = x1 - x0, y1 - y0
                t = min(max(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy), 0.0), 1.0)
                near |= math.hypot(x - x0 - t * dx, y - y0 - t * dy) <= 1.5
            assert bool(cover[y, x]) == near, (y, x)


def test_adapt_and_diffusion_draw_hybrid_masks_at_pixel_resolution():
    from conftest import autoencoder
    _, adapter = autoencoder()
    keep = adapter.draw(parse_mask("hybrid"), 3, torch.Generator().manual_seed(5))
    assert torch.equal(keep, 1 - hybrid_hole((8, 8), 3, torch.Generator().manual_seed(5)))


def test_default_patch_size_prefers_the_7_by_7_grid():
    assert default_patch_size(28) == 4 and default_patch_size(56) == 8 and default_patch_size(32) == 4
    assert default_patch_size(512, multiple=8) == 64  # Stable Diffusion: / 8, whole latent cells
    assert default_patch_size(112, multiple=14) == 14  # 112 / 7 = 16 is no multiple of 14: / 8
    with pytest.raises(ValueError, match="patch_size="):
        default_patch_size(30)
    with pytest.raises(ValueError, match="patch_size="):
        default_patch_size(64, multiple=16)
