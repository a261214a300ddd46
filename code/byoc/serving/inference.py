"""Decode request bodies, run the model on a batch, answer top-k labels."""
import io
from dataclasses import dataclass

import torch
from PIL import Image, UnidentifiedImageError

from byoc import model_package
from byoc.preprocessing import eval_transform
from byoc.serving.errors import RequestError

IMAGE_CONTENT_TYPES = ("image/jpeg", "image/png", "application/x-image")
DEFAULT_TOP_K = 5
# Refuse images whose pixel count would exhaust memory when decoded (decompression bombs).
Image.MAX_IMAGE_PIXELS = 40_000_000


def media_type(content_type: str | None) -> str:
    """'image/jpeg; charset=x' -> 'image/jpeg'."""
    return (content_type or "").split(";")[0].strip().lower()


def decode_image(body: bytes, content_type: str | None) -> Image.Image:
    kind = media_type(content_type)
    if kind not in IMAGE_CONTENT_TYPES:
        raise RequestError(415, f"Content-Type {kind or '(none)'!r} is not supported; "
                                f"send one of {', '.join(IMAGE_CONTENT_TYPES)}.")
    if not body:
        raise RequestError(400, "The request body is empty; send the image bytes.")
    try:
        image = Image.open(io.BytesIO(body))
        image.load()  # decode now: a truncated file fails here, not later
    except Image.DecompressionBombError:
        raise RequestError(400, f"The image is too large; at most {Image.MAX_IMAGE_PIXELS} pixels.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise RequestError(400, "The body could not be decoded as an image.") from None
    return image


@dataclass
class Prediction:
    label: str
    probability: float


class Classifier:
    def __init__(self, model: torch.nn.Module, spec: model_package.ModelSpec, device: torch.device):
        self.model, self.spec, self.device = model, spec, device

    @classmethod
    def load(cls, model_dir: str, device: torch.device) -> "Classifier":
        model, spec = model_package.load(model_dir, device)
        return cls(model, spec, device)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return eval_transform(image, self.spec.preprocessing)

    @torch.inference_mode()
    def predict(self, batch: torch.Tensor, top_k: int = DEFAULT_TOP_K) -> list[list[Prediction]]:
        probabilities = self.model(batch.to(self.device)).softmax(dim=1)
        values, indices = probabilities.topk(min(top_k, probabilities.shape[1]), dim=1)
        return [
            [Prediction(self.spec.class_names[i], round(p, 6)) for p, i in zip(row_p.tolist(), row_i.tolist())]
            for row_p, row_i in zip(values, indices)
        ]
