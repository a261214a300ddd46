"""A typical user script for AWS's PyTorch serving stacks (make bench-peers).

sagemaker-pytorch-inference calls model_fn once, then input_fn -> predict_fn -> output_fn per
request, as its README shows them: PIL and torchvision transforms, one image per request. It
serves the same ResNet-50 weights as the kit's benchmark model (model.pth: a state dict, read
with weights_only=True) and answers the top five classes, as the kit does by default.
"""
import io
import json
import os

import torch
import torchvision
from PIL import Image
from torchvision import transforms

CLASSES = 133
PREPROCESS = transforms.Compose([
    transforms.Resize(256),
    transforms.CenterCrop(224),
    transforms.ToTensor(),
    transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
])


def model_fn(model_dir):
    model = torchvision.models.resnet50(num_classes=CLASSES)
    state = torch.load(os.path.join(model_dir, "model.pth"), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    # Not typical, but the benchmark reports each stack's threads per worker from this line.
    print(f"peer model loaded: torch threads {torch.get_num_threads()}", flush=True)
    return model.eval()


def input_fn(request_body, content_type):
    if content_type not in ("image/jpeg", "image/png"):
        raise ValueError(f"unsupported content type {content_type}")
    image = Image.open(io.BytesIO(request_body)).convert("RGB")
    return PREPROCESS(image).unsqueeze(0)


def predict_fn(input_data, model):
    with torch.inference_mode():
        return model(input_data).softmax(dim=1)


def output_fn(prediction, accept):
    probabilities, classes = prediction[0].topk(5)
    return json.dumps({"predictions": [{"class": int(c), "probability": float(p)}
                                       for p, c in zip(probabilities, classes)]})
