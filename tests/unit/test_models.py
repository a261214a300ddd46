import pytest
import torch

from byoc.models import build_model


@pytest.mark.parametrize("architecture, size", [("small_cnn", 28), ("resnet_small", 32), ("wrn28_10", 32),
                                                ("resnet50", 64)])
def test_every_architecture_classifies_a_batch(architecture, size):
    model = build_model(architecture, 7).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, size, size)).shape == (2, 7)


def test_wrn28_10_has_the_papers_size():
    weights = sum(p.numel() for p in build_model("wrn28_10", 100).parameters())
    assert 36.4e6 < weights < 36.6e6  # 36.5 M in Zagoruyko & Komodakis (2016), Table 1


def test_wrn_rejects_impossible_depths():
    with pytest.raises(ValueError, match="6n \\+ 4"):
        build_model("wrn28_10", 10, depth=27)
