"""The model behind the endpoint: payloads in, answers out.

The handler and the tests share one chain: to_batch (per request) -> one forward
pass over all requests -> top-k per request -> the JSON answer.
"""
from dataclasses import dataclass

import numpy as np
import torch

from byoc import model_package, precision
from byoc.contract import ModelSpec
from byoc.serving import images
from byoc.serving.errors import RequestError
from byoc.serving.payloads import Payload


@dataclass
class Prediction:
    label: str
    probability: float


@dataclass
class Prepared:
    """One request's images as a model batch, and how it asked to be answered."""

    batch: torch.Tensor  # (N, 3, crop, crop) float32 on the CPU
    many: bool  # the client sent a list: answer a list
    top_k: int


class Classifier:
    def __init__(self, model: torch.nn.Module, spec: ModelSpec, device: torch.device,
                 choice: precision.Choice = precision.Choice(torch.float32, "fp32")):
        # The model as the training job measured it (byoc.precision.run): channels_last, in the chosen dtype.
        self.model = precision.prepare(model, choice.dtype)
        self.spec, self.device, self.precision = spec, device, choice
        side = spec.preprocessing.crop_size
        self.input_shape = (3, side, side)

    @classmethod
    def load(cls, model_dir: str, device: torch.device, setting: str = "fp32",
             min_agreement: float = precision.DEFAULT_MIN_AGREEMENT) -> "Classifier":
        """The model in the precision `setting` picks for this device (BYOC_PRECISION; fp32 by default
        here, so host-side callers get the reference answers)."""
        model, spec = model_package.load(model_dir, device)
        return cls(model, spec, device, precision.choose(setting, device, spec.precision, min_agreement))

    @property
    def num_classes(self) -> int:
        return len(self.spec.class_names)

    def to_batch(self, payload: Payload) -> torch.Tensor:
        """(N, 3, crop, crop) float32 on the CPU, whatever the payload held. Images are decoded one
        at a time, each freed before the next (their headers were checked when the payload was read)."""
        if payload.images is not None:
            tensors = []
            while payload.images:
                name, image = payload.images.pop(0)
                tensors.append(images.decode(image, self.spec.preprocessing, name))
            return torch.stack(tensors)
        if payload.array.shape[1:] != self.input_shape:
            raise RequestError(400, f"Each array must have shape {self.input_shape} for this model, "
                                    f"not {payload.array.shape[1:]}.")
        return torch.from_numpy(np.array(payload.array, order="C"))  # a copy: the body's view is read-only

    def prepare(self, payload: Payload, top_k: int) -> Prepared:
        return Prepared(self.to_batch(payload), payload.many, top_k)

    def predict(self, payload: Payload, top_k: int) -> dict:
        """The endpoint's JSON answer to one payload."""
        return self.answer([self.prepare(payload, top_k)])[0]

    def answer(self, requests: list[Prepared]) -> list[dict]:
        """One forward pass over several requests; each request's own answer, in order."""
        probabilities = self.probabilities(torch.cat([r.batch for r in requests]))
        answers = []
        for request, rows in zip(requests, probabilities.split([len(r.batch) for r in requests])):
            top = [[vars(p) for p in row] for row in self.top_k(rows, request.top_k)]
            answers.append({"predictions": top if request.many else top[0]})
        return answers

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        return precision.run(self.model, batch.to(self.device)).softmax(dim=1).cpu()

    def top_k(self, probabilities: torch.Tensor, k: int) -> list[list[Prediction]]:
        values, indices = probabilities.topk(min(k, self.num_classes), dim=1)
        return [
            [Prediction(self.spec.class_names[i], round(p, 6)) for p, i in zip(row_p.tolist(), row_i.tolist())]
            for row_p, row_i in zip(values, indices)
        ]
