"""The evaluation-time image transform, shared by training and serving.

Validation, test and served predictions all go through `eval_transform`, so a
model is scored in training exactly as it will be served. It needs only
Pillow and torch (the serving image has no albumentations).
"""
import numpy as np
import torch
from PIL import Image

from byoc.contract import Preprocessing


def eval_transform(image: Image.Image, prep: Preprocessing) -> torch.Tensor:
    """PIL image of any mode and size -> normalised float tensor (3, crop, crop)."""
    image = image.convert("RGB")
    width, height = image.size
    scale = prep.resize_size / min(width, height)
    if scale != 1:
        new_size = (max(prep.crop_size, round(width * scale)), max(prep.crop_size, round(height * scale)))
        image = image.resize(new_size, Image.Resampling.BILINEAR)
    width, height = image.size
    left, top = (width - prep.crop_size) // 2, (height - prep.crop_size) // 2
    image = image.crop((left, top, left + prep.crop_size, top + prep.crop_size))
    # (pixel - 255 mean) / (255 std), in torch from the uint8 pixels: about 5x quicker than in numpy.
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()
    mean = torch.tensor(prep.mean).mul(255).view(3, 1, 1)
    inverse_std = torch.tensor(prep.std).mul(255).reciprocal().view(3, 1, 1)
    return pixels.float().sub_(mean).mul_(inverse_std)
