import numpy as np
from PIL import Image

from byoc.training import report


def test_training_curves_are_a_png(tmp_path):
    history = [{"epoch": e, "train_loss": 1 / e, "train_acc": 1 - 1 / (e + 1), "valid_loss": 1.1 / e,
                "valid_acc": 1 - 1.1 / (e + 1)} for e in range(1, 5)]
    report.training_curves(history, tmp_path / "curves.png")
    with Image.open(tmp_path / "curves.png") as image:
        assert image.format == "PNG" and image.size == (1000, 400)


def test_confusion_matrix_for_few_and_many_classes(tmp_path):
    for n in (3, 133):  # Fashion-MNIST-sized and dog-breed-sized
        confusion = np.diag(np.full(n, 5)) + np.ones((n, n), dtype=int)
        report.confusion_matrix(confusion, [f"class {i}" for i in range(n)], tmp_path / f"cm{n}.png")
        with Image.open(tmp_path / f"cm{n}.png") as image:
            assert image.format == "PNG" and image.size[0] == image.size[1] > 400
