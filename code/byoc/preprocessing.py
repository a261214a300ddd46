"""The evaluation-time image transform, shared by training and serving.

Validation, test and served predictions all go through `eval_transform`, so a
model is scored in training exactly as it will be served. It needs only
Pillow and torch (the serving image has no albumentations).

The transform is "resize the shorter side to resize_size, then cut out the
centred crop_size square", done in one resampling step: the crop's box is
mapped back to source coordinates and only the crop is computed (the same
sample positions and filter width as resizing the whole image first). So its
memory does not depend on the image's aspect ratio, and a JPEG that is at
least twice the size the resize needs is decoded at 1/2, 1/4 or 1/8 scale.
"""
import functools
import math

import numpy as np
import torch
from PIL import Image, ImageOps, JpegImagePlugin

from byoc.contract import Preprocessing

SIXTEEN_BIT_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I")
EXIF_ORIENTATION = 0x0112  # 1 upright; 2-8 mirrored and/or turned by 90, 180 or 270 degrees


def upright(image: Image.Image) -> Image.Image:
    """The image as its camera meant it seen: phones store a portrait shot's pixels sideways with an
    EXIF Orientation tag, which viewers and browsers apply and Pillow does not."""
    if image.getexif().get(EXIF_ORIENTATION, 1) in range(2, 9):
        return ImageOps.exif_transpose(image)
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any mode as 8-bit RGB. Pillow clips 16-bit grey at 255 instead of scaling it: scale it."""
    if image.mode == "RGB":
        return image
    if image.mode in SIXTEEN_BIT_GREY:
        grey = np.clip(np.asarray(image) >> 8, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    return image.convert("RGB")


def crop_box(size: tuple[int, int], prep: Preprocessing) -> tuple[float, float, float, float]:
    """The source region that becomes the crop: resize_size on the short side, crop_size centred."""
    width, height = size
    scale = prep.resize_size / min(width, height)
    resized = (max(prep.crop_size, round(width * scale)), max(prep.crop_size, round(height * scale)))
    left, top = (resized[0] - prep.crop_size) // 2, (resized[1] - prep.crop_size) // 2
    x, y = width / resized[0], height / resized[1]  # source pixels per resized pixel
    return left * x, top * y, (left + prep.crop_size) * x, (top + prep.crop_size) * y


def draft_for(image: Image.Image, prep: Preprocessing) -> None:
    """Before a JPEG is decoded: let its decoder scale down (DCT) while keeping at least twice the
    resolution the resize needs, so the final resampling still averages. Else nothing."""
    if not isinstance(image, JpegImagePlugin.JpegImageFile):
        return
    width, height = image.size
    keep = 2 * prep.resize_size / min(width, height)
    if keep < 1:
        image.draft(image.mode, (math.ceil(width * keep), math.ceil(height * keep)))


def eval_transform(image: Image.Image, prep: Preprocessing) -> torch.Tensor:
    """PIL image of any mode and size -> normalised float tensor (3, crop, crop), channels-last in memory."""
    draft_for(image, prep)
    image = upright(to_rgb(image))
    image = image.resize((prep.crop_size, prep.crop_size), Image.Resampling.BILINEAR,
                         box=crop_box(image.size, prep))
    # (pixel - 255 mean) / (255 std) as pixel * scale + shift, in two contiguous passes over the HWC
    # pixels with the factors repeated per pixel (torch vectorises these; per-channel broadcasting over
    # a permuted view took twice as long). The result is read as CHW in place: laid out channels-last,
    # as the model runs (byoc.precision.run), with no pass spent transposing the image twice.
    scale, shift = _affine(tuple(prep.mean), tuple(prep.std), prep.crop_size)  # model.json gives lists
    pixels = torch.from_numpy(np.array(image)).view(-1).float()
    return pixels.mul_(scale).add_(shift).view(prep.crop_size, prep.crop_size, 3).permute(2, 0, 1)


@functools.cache
def _affine(mean: tuple[float, ...], std: tuple[float, ...], side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """1 / (255 std) and -mean / std, repeated for each pixel of a side x side RGB image: made once."""
    std_t = torch.tensor(std, dtype=torch.float64)
    scale = (1 / (255 * std_t)).float()
    shift = (-torch.tensor(mean, dtype=torch.float64) / std_t).float()
    return scale.repeat(side * side), shift.repeat(side * side)
