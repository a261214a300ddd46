"""model.json: what a trained model is, readable without torch.

`serve` checks it before starting the model server, so a wrong model
directory fails in a second with a clear reason, not in every worker.
"""
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

SPEC_FILE = "model.json"
FORMAT_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    resize_size: int  # shorter side is resized to this
    crop_size: int  # then a centred square of this side is cut out
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass(frozen=True)
class ModelSpec:
    architecture: str
    class_names: list[str]
    preprocessing: Preprocessing
    architecture_args: dict = field(default_factory=dict)

    def build(self):
        from byoc.models import build_model  # torch: only where a model is built

        return build_model(self.architecture, len(self.class_names), **self.architecture_args)

    def document(self) -> str:
        return json.dumps({"format_version": FORMAT_VERSION, **asdict(self)}, indent=2) + "\n"


class ModelPackageError(Exception):
    """The model directory is missing, incomplete or not one of ours."""


def load_spec(model_dir: str | Path) -> ModelSpec:
    path = Path(model_dir) / SPEC_FILE
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelPackageError(f"{path} is missing: is {model_dir} a model trained by this kit?") from None
    except json.JSONDecodeError as error:
        raise ModelPackageError(f"{path} is not valid JSON: {error}") from None
    if document.get("format_version") != FORMAT_VERSION:
        raise ModelPackageError(
            f"{path} has format_version {document.get('format_version')!r}; this code reads {FORMAT_VERSION}"
        )
    try:
        return ModelSpec(
            architecture=document["architecture"],
            class_names=list(document["class_names"]),
            preprocessing=Preprocessing(**document["preprocessing"]),
            architecture_args=dict(document.get("architecture_args", {})),
        )
    except (KeyError, TypeError) as error:
        raise ModelPackageError(f"{path} lacks a field or has a wrong one: {error}") from None
