import io

import numpy as np
import pytest
import torch
from PIL import Image

from byoc.contract import Preprocessing
from byoc.preprocessing import crop_box, draft_for, eval_transform, to_rgb


def test_grey_small_image_becomes_normalised_rgb_tensor():
    prep = Preprocessing(resize_size=28, crop_size=28, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    image = Image.fromarray(np.full((28, 28), 255, dtype=np.uint8), mode="L")
    tensor = eval_transform(image, prep)
    assert tensor.shape == (3, 28, 28) and tensor.dtype == torch.float32
    torch.testing.assert_close(tensor, torch.ones(3, 28, 28))


def test_large_non_square_image_is_resized_then_centre_cropped():
    prep = Preprocessing(resize_size=256, crop_size=224)
    array = np.zeros((300, 600, 3), dtype=np.uint8)
    array[:, 250:350] = 255  # a white band in the centre survives the crop
    tensor = eval_transform(Image.fromarray(array), prep)
    assert tensor.shape == (3, 224, 224)
    assert tensor[:, :, 112].min() > tensor[:, :, 0].max()


def two_step(image: Image.Image, prep: Preprocessing) -> torch.Tensor:
    """The transform as it was: resize the whole image, then cut out the centre."""
    width, height = image.size
    scale = prep.resize_size / min(width, height)
    image = image.resize((max(prep.crop_size, round(width * scale)), max(prep.crop_size, round(height * scale))),
                         Image.Resampling.BILINEAR)
    left, top = (image.width - prep.crop_size) // 2, (image.height - prep.crop_size) // 2
    crop = np.array(image.crop((left, top, left + prep.crop_size, top + prep.crop_size)))
    mean, std = torch.tensor(prep.mean).view(3, 1, 1), torch.tensor(prep.std).view(3, 1, 1)
    return (torch.from_numpy(crop).permute(2, 0, 1).float() / 255 - mean) / std


@pytest.mark.parametrize("size, prep", [((300, 600), Preprocessing(256, 224)), ((600, 300), Preprocessing(36, 32)),
                                        ((33, 65), Preprocessing(40, 32)), ((32, 32), Preprocessing(36, 32)),
                                        ((28, 28), Preprocessing(28, 28))])
def test_one_resampling_step_gives_what_resize_then_crop_gave(size, prep):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    difference = (eval_transform(image, prep) - two_step(image, prep)).abs().max()
    assert difference <= 1.01 / 255 / min(prep.std)  # at most one grey level, from rounding


def test_an_extreme_aspect_ratio_costs_no_giant_intermediate():
    """Resizing a 1 x 100,000 image's short side to 256 first would need a 256 x 25,600,000 image (20 GB)."""
    tensor = eval_transform(Image.new("L", (1, 100_000), 200), Preprocessing(256, 224))
    assert tensor.shape == (3, 224, 224)


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_and_still_matches():
    pixels = np.random.default_rng(0).integers(0, 255, (75, 100, 3), dtype=np.uint8)
    big = Image.fromarray(pixels).resize((2400, 1800), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=95)
    prep = Preprocessing(256, 224)
    lazy = Image.open(io.BytesIO(buffer.getvalue()))
    draft_for(lazy, prep)
    assert lazy.size == (1200, 900)  # 1/2 scale keeps at least twice the 256 px the resize needs
    full = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    served = eval_transform(Image.open(io.BytesIO(buffer.getvalue())), prep)
    assert (served - eval_transform(full, prep)).abs().mean() < 0.02  # resampling noise only


def test_sixteen_bit_grey_is_scaled_to_eight_bits():
    grey = Image.fromarray(np.full((4, 4), 0xABCD, np.uint16))
    assert np.asarray(to_rgb(grey))[0, 0].tolist() == [0xAB] * 3


def test_the_normalised_image_is_laid_out_as_the_model_runs():
    """Channels-last memory (the model's layout: byoc.precision.run makes no copy of it), and the
    numbers of (pixel / 255 - mean) / std on a channels-first copy, to float32's rounding."""
    prep = Preprocessing(32, 28)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 36, 3), dtype=np.uint8))
    tensor = eval_transform(image, prep)
    assert tensor.unsqueeze(0).is_contiguous(memory_format=torch.channels_last)
    pixels = torch.from_numpy(np.array(image.resize((28, 28), Image.Resampling.BILINEAR,
                                                    box=crop_box(image.size, prep)))).permute(2, 0, 1).contiguous()
    mean, std = (torch.tensor(values, dtype=torch.float64).view(3, 1, 1) for values in (prep.mean, prep.std))
    exact = (pixels.double() / 255 - mean) / std
    torch.testing.assert_close(tensor, exact.float(), rtol=0, atol=1e-6)
