"""The model behind the endpoint: payloads in, answers out.

The handler and the tests share one chain: to_batch (per request) -> one forward
pass over all requests -> top-k per request -> the JSON answer.
"""
from dataclasses import dataclass

import numpy as np
import torch

from byoc import model_package, precision, quantized
from byoc.contract import ModelSpec
from byoc.serving import images, memory
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
                 choice: precision.Choice = precision.Choice(torch.float32, "fp32"), graph: bool = False):
        # The model as the training job measured it (byoc.precision.run): channels_last, in the chosen
        # dtype; with `graph`, on the CPU, traced and fused by oneDNN Graph (byoc.cpu_graph).
        self.model = precision.prepare(model, choice.dtype, graph, spec.int8, spec.preprocessing.crop_size)
        self.mode = "graph mode (oneDNN)" if self.model.graph else "eager"
        self.spec, self.device, self.precision = spec, device, choice
        side = spec.preprocessing.crop_size
        self.input_shape = (3, side, side)

    @classmethod
    def load(cls, model_dir: str, device: torch.device, setting: str = "fp32",
             min_agreement: float = precision.DEFAULT_MIN_AGREEMENT, graph: bool = False) -> "Classifier":
        """The model in the precision `setting` picks for this device (BYOC_PRECISION) and, with `graph`,
        in the CPU's graph mode (BYOC_CPU_GRAPH), warmed up. fp32 and eager by default here, so
        host-side callers get the reference answers."""
        model, spec = model_package.load(model_dir, device)
        choice = precision.choose(setting, device, spec.precision, min_agreement, spec.int8)
        # int8's graph-mode memory is not measured: it is counted as fp32's, the most it can be.
        counted = torch.float32 if choice.dtype == precision.INT8 else choice.dtype
        no_room = memory.graph_fits(weights_bytes(model, counted)) if graph and device.type == "cpu" else None
        try:
            classifier = cls(model, spec, device, choice, graph and no_room is None)
        except quantized.QuantizationError as error:  # a model.json edited or made by another torch
            choice = precision.Choice(torch.float32, f"fp32: model.json's int8 record does not fit this model ({error})")
            classifier = cls(model, spec, device, choice, graph and no_room is None)
        if classifier.model.graph:
            classifier.warm_up()
            if not classifier.model.graph:
                classifier.mode = "eager: the model could not be traced (the warning above says why)"
        elif no_room:
            classifier.mode = f"eager: {no_room}"
        return classifier

    def warm_up(self) -> None:
        """Trace, then let TorchScript profile and fuse the batch-1 graph (its first two calls), so the
        first request runs the fused model."""
        for _ in range(2):
            self.probabilities(torch.zeros(1, *self.input_shape))

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
            return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(tensors)  # no copy for one
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
        batch = requests[0].batch if len(requests) == 1 else torch.cat([r.batch for r in requests])
        probabilities = self.probabilities(batch)
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


def weights_bytes(model: torch.nn.Module, dtype: torch.dtype) -> int:
    """The model's parameters in `dtype`, in bytes: what graph mode's packed copies are counted in."""
    return sum(p.numel() for p in model.parameters()) * dtype.itemsize
