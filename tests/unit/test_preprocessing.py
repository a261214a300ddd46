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


def test_training_reads_a_sixteen_bit_png_as_serving_does(tmp_path):
    """Training's loader clipped 16-bit grey at 255 (Pillow's convert), so it trained on a white image."""
    from byoc.training.data import read_rgb

    levels = np.linspace(0, 0xFFFF, 64 * 48, dtype=np.uint16).reshape(48, 64)
    Image.fromarray(levels).save(tmp_path / "scan.png")
    with Image.open(tmp_path / "scan.png") as served:
        expected = np.asarray(to_rgb(served))
    trained_on = read_rgb(str(tmp_path / "scan.png"))
    assert np.array_equal(trained_on, expected) and len(np.unique(trained_on)) == 256


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


# How a camera stores the pixels of an upright scene for each EXIF Orientation value: the inverse of
# the turn or mirror a viewer applies (EXIF 2.32, tag 0x0112).
STORED_FOR = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_270}


def as_camera_stores(scene: Image.Image, orientation: int, fmt: str) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    scene.transpose(STORED_FOR[orientation]).save(buffer, fmt, exif=exif.tobytes(), **(
        {"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("orientation", STORED_FOR)
def test_a_photo_is_seen_upright_in_serving_and_training(tmp_path, fmt, orientation):
    """A phone's portrait shot (Orientation 6) was fed to the model lying on its side."""
    from byoc.serving import payloads
    from byoc.serving.images import decode
    from byoc.serving.settings import Limits
    from byoc.training.data import read_rgb

    y, x = np.mgrid[0:48, 0:64]  # a smooth scene (JPEG keeps it closely) with a bright band at its top
    pixels = np.stack([x * 3, y * 4, (x + y) * 2], axis=-1).astype(np.uint8)
    pixels[:8] = 255
    scene, prep = Image.fromarray(pixels), Preprocessing(48, 48)
    data = as_camera_stores(scene, orientation, fmt)
    limits = Limits(max_payload_bytes=1 << 20, max_image_pixels=10**6, max_request_pixels=10**6,
                    max_aspect_ratio=20, max_images=8)
    [(name, opened)] = payloads.decode(data, "application/x-image", limits).images
    served = decode(opened, prep, name)
    assert (served - eval_transform(scene, prep)).abs().mean() < (0.05 if fmt == "JPEG" else 1e-6)
    (tmp_path / f"photo.{fmt.lower()}").write_bytes(data)
    trained_on = read_rgb(str(tmp_path / f"photo.{fmt.lower()}"))
    assert trained_on.shape == pixels.shape
    assert np.abs(trained_on.astype(int) - pixels).mean() < (3 if fmt == "JPEG" else 1e-9)
