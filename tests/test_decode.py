"""decode_image against plain NumPy / hand-written references for each kind of file."""
import numpy as np
import pytest
from PIL import Image

from l2l_fast.data.decode import decode_image

RNG = np.random.default_rng(0)


def test_exif_orientation_is_applied(tmp_path):
    pixels = RNG.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    image.save(tmp_path / "portrait.png", exif=exif.tobytes())
    shown = np.rot90(pixels, k=-1)  # [24, 16, 3]
    square = np.ascontiguousarray(shown[4:20])
    expected = np.asarray(Image.fromarray(square).resize((8, 8), Image.BICUBIC)).transpose(2, 0, 1)
    np.testing.assert_array_equal(decode_image(tmp_path / "portrait.png", 8, 3), expected)


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    wide = RNG.integers(0, 65536, (6, 6)).astype(np.uint16)
    wide[0, :3] = (0, 1000, 65535)
    Image.fromarray(wide).save(tmp_path / "deep.png")
    decoded = decode_image(tmp_path / "deep.png", 6, 1)
    np.testing.assert_array_equal(decoded[0], np.floor(wide / 257.0 + 0.5).astype(np.uint8))
    assert tuple(decoded[0, 0, :3]) == (0, 4, 255)


def test_palette_with_transparency_gives_the_palette_colours(tmp_path):
    palette = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
    indices = RNG.integers(0, 256, (5, 5), dtype=np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette(palette.flatten().tolist())
    image.save(tmp_path / "palette.png", transparency=7)
    np.testing.assert_array_equal(decode_image(tmp_path / "palette.png", 5, 3), palette[indices].transpose(2, 0, 1))


def test_grey_to_three_channels_and_colour_to_luma(tmp_path):
    grey = RNG.integers(0, 256, (5, 5), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(decode_image(tmp_path / "grey.png", 5, 3), np.stack([grey] * 3))
    colour = RNG.integers(0, 256, (5, 5, 3)).astype(np.int64)
    Image.fromarray(colour.astype(np.uint8)).save(tmp_path / "colour.png")
    luma = (colour[..., 0] * 19595 + colour[..., 1] * 38470 + colour[..., 2] * 7471 + 0x8000) >> 16  # ITU-R 601
    np.testing.assert_array_equal(decode_image(tmp_path / "colour.png", 5, 1)[0], luma.astype(np.uint8))


def test_cmyk_is_converted_to_rgb(tmp_path):
    cmyk = RNG.integers(0, 256, (5, 5, 4)).astype(np.int64)
    Image.fromarray(cmyk.astype(np.uint8), "CMYK").save(tmp_path / "print.tif")
    expected = (255 - cmyk[..., :3]) * (255 - cmyk[..., 3:]) / 255.0
    decoded = decode_image(tmp_path / "print.tif", 5, 3).transpose(1, 2, 0).astype(np.int64)
    assert np.abs(decoded - expected).max() <= 1


@pytest.mark.parametrize("size", [64, 100])
def test_draft_decoding_stays_close_to_the_full_decode(tmp_path, size):
    base = Image.fromarray(RNG.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((512, 384), Image.BICUBIC)
    base.save(tmp_path / "large.jpg", quality=95)
    full = decode_image(tmp_path / "large.jpg", size, 3, draft=False).astype(np.float64)
    draft = decode_image(tmp_path / "large.jpg", size, 3, draft=True).astype(np.float64)
    assert draft.shape == full.shape == (3, size, size)
    assert 0 < np.abs(draft - full).mean() < 2.0  # draft was used, and it looks the same
    with Image.open(tmp_path / "large.jpg") as image:
        image.draft("RGB", (size * 4 // 3 + 1, size))
        assert min(image.size) >= size  # the short side stays at least the target's
