"""One image file to the model's input: uint8 [C, H, W], centre-cropped to a square
and resized (bicubic) to size x size, whatever the file's mode.

- JPEG files much larger than the target are decoded at 1/2, 1/4 or 1/8 scale in the
  DCT domain (Pillow's `draft`) while the short side stays >= size; the bicubic resize
  then has fewer pixels to filter. `draft=False` decodes every pixel (torchvision's
  and timm's behaviour).
- EXIF orientation is applied (cameras store portraits as rotated landscapes).
- CMYK, palette (with or without transparency), bilevel, RGBA/LA (alpha dropped, as
  torchvision's `convert("RGB")` does) and 16-bit files are converted to the model's
  channels: 3 = RGB, 1 = ITU-R 601 luma. 16-bit values are scaled to 8 bits
  (round(v / 257)); Pillow's own conversion would clip them at 255.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ORIENTATION = 0x0112
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")  # 16- (or 32-) bit integer grey


def decode_image(path: Path, size: int, channels: int, *, draft: bool = True) -> np.ndarray:
    """uint8 [channels, size, size]; OSError (and Pillow's own errors) on a bad file."""
    with Image.open(path) as image:
        if draft and image.format == "JPEG" and min(image.size) >= 2 * size:
            scale = size / min(image.size)
            image.draft("RGB" if channels == 3 else "L",
                        (math.ceil(image.width * scale), math.ceil(image.height * scale)))
        if image.getexif().get(ORIENTATION, 1) != 1:
            image = ImageOps.exif_transpose(image)
        image = _to_channels(image, channels)
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
        array = np.asarray(image)
    if channels == 1:
        return np.array(array[None])  # a copy: np.asarray of an image is read-only
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def _to_channels(image: Image.Image, channels: int) -> Image.Image:
    if image.mode in WIDE_MODES:
        wide = np.asarray(image).astype(np.int64).clip(0, 65535)
        image = Image.fromarray(np.rint(wide / 257.0).astype(np.uint8), "L")
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    target = "RGB" if channels == 3 else "L"
    return image if image.mode == target else image.convert(target)
