import pytest
import torch
import torchvision
from safetensors.torch import save_file

from byoc.models import build_model
from byoc.training import pretrained
from byoc.training.errors import TrainingError


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory):
    """A torchvision ResNet-50 state dict with a 1000-class head, as its published files are."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("weights") / "resnet50-imagenet.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    return path


def test_backbone_is_loaded_and_the_head_is_new(imagenet_like):
    model = build_model("resnet50", 133)
    pretrained.load_into(model, "resnet50", imagenet_like)
    source = torch.load(imagenet_like, weights_only=True)
    assert torch.equal(model.conv1.weight, source["conv1.weight"])
    assert torch.equal(model.layer4[2].conv3.weight, source["layer4.2.conv3.weight"])
    assert model.fc.weight.shape == (133, 2048)


def test_safetensors_files_work_too(imagenet_like, tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(torch.load(imagenet_like, weights_only=True), path)
    model = build_model("resnet50", 10)
    pretrained.load_into(model, "resnet50", path)
    assert torch.equal(model.conv1.weight, torch.load(imagenet_like, weights_only=True)["conv1.weight"])


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(TrainingError, match="do not fit resnet50"):
        pretrained.load_into(build_model("resnet50", 10), "resnet50", path)


def test_missing_file_says_where_it_looked(tmp_path):
    with pytest.raises(TrainingError, match="'r50.pth' were requested.*not found in .*pretrained.*'pretrained' input channel"):
        pretrained.find_weights("r50.pth", {"pretrained": str(tmp_path / "pretrained")}, str(tmp_path / "model"))


def test_frozen_backbone_trains_only_the_head(imagenet_like):
    model = build_model("resnet50", 5)
    pretrained.load_into(model, "resnet50", imagenet_like)
    pretrained.set_backbone_frozen(model, "resnet50", frozen=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    before = model.conv1.weight.clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loss = model(torch.randn(2, 3, 64, 64)).sum()
    loss.backward()
    optimizer.step()
    assert torch.equal(model.conv1.weight, before)
    pretrained.set_backbone_frozen(model, "resnet50", frozen=False)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("change, says", [
    (lambda t: t.to(torch.int8) if t.is_floating_point() else t, "tensor .* is torch.int8; resnet50 needs torch.float32"),
    (lambda t: t.clone().fill_(float("nan")) if t.is_floating_point() else t, "holds NaN or infinite values"),
], ids=["integers for floats", "NaN"])
def test_weights_that_would_load_as_garbage_are_refused(imagenet_like, tmp_path, change, says):
    """load_state_dict casts integers into float weights and copies NaN: hours of training on garbage."""
    path = tmp_path / "w.safetensors"
    save_file({k: change(v) for k, v in torch.load(imagenet_like, weights_only=True).items()}, path)
    with pytest.raises(TrainingError, match=says):
        pretrained.load_into(build_model("resnet50", 10), "resnet50", path)


def test_an_empty_file_says_what_went_wrong(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(TrainingError, match="could not be read as a state dict: [A-Za-z]"):
        pretrained.load_into(build_model("resnet50", 10), "resnet50", tmp_path / "empty.pth")
