import gzip

import numpy as np
import pytest
from PIL import Image

from byoc import fashion_mnist


def test_reads_the_idx_files_with_their_shapes(idx_dir):
    images, labels = fashion_mnist.load_split(idx_dir, "test")
    assert images.shape == (10_000, 28, 28) and labels.shape == (10_000,)
    assert sorted(np.unique(labels)) == list(range(10))


def test_truncated_idx_is_refused(tmp_path, idx_dir):
    data = gzip.open(idx_dir / "t10k-labels-idx1-ubyte.gz").read()
    broken = tmp_path / "labels.gz"
    broken.write_bytes(gzip.compress(data[:-10]))
    with pytest.raises(ValueError, match="truncated"):
        fashion_mnist.read_idx(broken)


def test_layout_matches_the_dog_breed_project(small_data):
    assert sorted(p.name for p in small_data.iterdir()) == ["test", "train", "valid"]
    classes = sorted(p.name for p in (small_data / "train").iterdir())
    assert classes[0] == "001.T-shirt_top" and classes[-1] == "010.Ankle_boot" and len(classes) == 10
    counts = {split: sum(1 for _ in (small_data / split).glob("*/*.png")) for split in ("train", "valid", "test")}
    assert counts == {"train": 5000, "valid": 300, "test": 300}
    sample = next((small_data / "train" / "002.Trouser").glob("*.png"))
    assert Image.open(sample).size == (28, 28)


def test_validation_images_are_not_training_images(small_data):
    train = {p.name for p in (small_data / "train").glob("*/*.png")}
    valid = {p.name for p in (small_data / "valid").glob("*/*.png")}
    assert train and valid and not train & valid


def test_cli_explains_missing_idx_files(tmp_path, capsys):
    assert fashion_mnist.main(["--idx-dir", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "dataset-fashion-mnist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_refuses_to_overwrite(tmp_path, idx_dir, capsys):
    (tmp_path / "out").mkdir()
    assert fashion_mnist.main(["--idx-dir", str(idx_dir), "--out", str(tmp_path / "out")]) == 2
    assert "exists already" in capsys.readouterr().err
