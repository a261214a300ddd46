import numpy as np
import torch
from PIL import Image

from byoc.contract import Preprocessing
from byoc.preprocessing import eval_transform


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
