"""Channels as people lay them out and upload them (an unzipped macOS or Windows archive, `aws s3 sync`
of a whole data set, phone photos): tools' litter is ignored, files that are skipped are counted,
and a layout that cannot be what the user meant is refused in one paragraph naming the folder."""
import io
import json
import os
import shutil
import subprocess
import sys
import unicodedata

import numpy as np
import pytest
from PIL import Image

from byoc import contract
from byoc.contract import Preprocessing
from byoc.training import data
from byoc.training.errors import DataError

PREP = Preprocessing(28, 28)
CLASSES = ("001.T-shirt_top", "002.Trouser", "003.Pullover")


def class_folders(small_data, root, per_class=5, names=CLASSES):
    for name in names:
        (root / name).mkdir(parents=True)
        for image in sorted((small_data / "train" / name).glob("*.png"))[:per_class]:
            shutil.copy(image, root / name / image.name)
    return root


def a_photo() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8))


def encoded(image: Image.Image, kind: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def load(root, **options) -> dict:
    return data.load_splits({"train": root}, PREP, **options)


def macos_archive(root):
    (root / "__MACOSX" / CLASSES[0]).mkdir(parents=True)
    (root / "__MACOSX" / CLASSES[0] / "._00001.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (root / "Icon\r").write_bytes(b"")
    (root / CLASSES[0] / "Icon\r").write_bytes(b"")


def windows_folder(root):
    (root / CLASSES[0] / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / CLASSES[1] / "desktop.ini").write_text("[.ShellClassInfo]")
    (root / "$RECYCLE.BIN").mkdir()
    (root / "System Volume Information").mkdir()


def synology_share(root):
    thumbnails = root / CLASSES[1] / "@eaDir" / "00001.png"  # thumbnails of each image, named like images
    shutil.copytree(root / CLASSES[0], thumbnails)
    shutil.copytree(root / CLASSES[0], root / "@eaDir")


def a_file_system_root(root):
    (root / "lost+found").mkdir()


@pytest.mark.parametrize("litter", [macos_archive, windows_folder, synology_share, a_file_system_root])
def test_tools_litter_is_never_a_class_or_an_image(small_data, tmp_path, litter, caplog):
    root = class_folders(small_data, tmp_path / "train")
    litter(root)
    train = load(root)["train"]
    assert train.classes == list(CLASSES) and len(train) == 15
    assert "not named like images" not in caplog.text and "unreadable" not in caplog.text


def test_images_are_read_under_every_name_users_give_them(small_data, tmp_path):
    root = class_folders(small_data, tmp_path / "train", per_class=2)
    names = ("a.JPG", "b.JPEG", "c.jfif", "d.jpe", "e.Png", "f", "g.png")  # f: saved without one; g: a JPEG
    for name in names:
        (root / CLASSES[0] / name).write_bytes(encoded(a_photo(), "JPEG"))
    (root / CLASSES[0] / "h.avif").write_bytes(encoded(a_photo(), "AVIF"))
    train = load(root)["train"]
    given = [i for i, (path, _) in enumerate(train.samples) if os.path.basename(path) in (*names, "h.avif")]
    assert len(train) == 6 + 8 and len(given) == 8
    assert all(train[i][0].shape == (30, 40, 3) for i in given)


def test_phone_photos_that_cannot_be_decoded_are_counted_and_named(small_data, tmp_path, caplog):
    root = class_folders(small_data, tmp_path / "train")
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"
    for name in ("IMG_0001.HEIC", "IMG_0002.heif"):
        (root / CLASSES[0] / name).write_bytes(heic)
    assert len(load(root, max_bad_fraction=0.2)["train"]) == 15
    assert "skipping 2 unreadable image(s) (2 of them HEIC/HEIF" in caplog.text
    with pytest.raises(DataError, match=r"2 of 17 images .* cannot be read \(2 of them HEIC/HEIF.*to JPEG"):
        load(root, max_bad_fraction=0.05)


def test_other_files_in_class_folders_are_skipped_and_counted(small_data, tmp_path, caplog):
    root = class_folders(small_data, tmp_path / "train")
    (root / CLASSES[0] / "notes.txt").write_text("taken at the park")
    (root / CLASSES[1] / "00001.xml").write_text("<annotation/>")
    assert len(load(root)["train"]) == 15
    assert "skipping 2 file(s) not named like images (1 .txt, 1 .xml)" in caplog.text


def test_files_beside_the_class_folders_are_named_in_the_log(small_data, tmp_path, caplog):
    root = class_folders(small_data, tmp_path / "train")
    for name in ("README.txt", "labels.csv", "dogImages.zip"):
        (root / name).write_text("x")
    assert len(load(root)["train"]) == 15
    assert "ignoring 3 file(s) beside the class folders" in caplog.text and "labels.csv" in caplog.text


def split_folders(small_data, root):
    for split in ("train", "valid", "test"):
        class_folders(small_data, root / split)


def inside_an_archives_folder(small_data, root):
    class_folders(small_data, root / "dogImages")


def a_whole_download(small_data, root):
    split_folders(small_data, root / "dogImages")


def cifar_archive(small_data, root):
    (root / "cifar-100-python").mkdir(parents=True)
    for name in ("meta", "train", "test", "file.txt~"):  # as the official archive extracts
        (root / "cifar-100-python" / name).write_bytes(b"x")


def inside_a_split_folder(small_data, root):
    class_folders(small_data, root / "train")


def loose_images(small_data, root):
    root.mkdir()
    for i, image in enumerate(sorted((small_data / "train" / CLASSES[0]).glob("*.png"))[:3]):
        shutil.copy(image, root / f"photo{i}.png")


def an_archive(small_data, root):
    root.mkdir()
    (root / "dogImages.zip").write_bytes(b"PK\x03\x04")


@pytest.mark.parametrize("layout, reason", [
    (split_folders, r"holds the split folder\(s\) test, train, valid, not class folders. Pass each split as its own"),
    (inside_an_archives_folder, r"holds only the folder dogImages/, .* one level too many. For this job, point "
                                r"the channel at dogImages/"),
    (a_whole_download, r"holds only the folder dogImages/, which holds folders \(test, train, valid\) rather than "
                       r"images: one level too many. For this job, pass each of dogImages/test/, dogImages/train/, "
                       r"dogImages/valid/ as its own channel"),
    (cifar_archive, r"holds only the folder cifar-100-python/, which holds cifar100 files: one level too many. For "
                    r"this job, point the channel at cifar-100-python/"),
    (inside_a_split_folder, r"holds the split folder\(s\) train, not class folders"),
    (loose_images, r"holds 3 image file\(s\) \(e.g. photo0.png\) but no class folders; it needs one folder"),
    (an_archive, r"holds the archive\(s\) dogImages.zip: extract them"),
])
def test_a_layout_that_cannot_be_class_folders_is_refused_naming_the_folder(small_data, tmp_path, layout, reason):
    layout(small_data, tmp_path / "train")
    with pytest.raises(DataError, match=f"The 'train' channel {tmp_path / 'train'} {reason}"):
        load(tmp_path / "train")


def test_a_validation_channel_holding_the_splits_is_refused_as_such(small_data, tmp_path):
    split_folders(small_data, tmp_path / "valid")
    with pytest.raises(DataError, match=r"The 'valid' channel .* holds the split folder\(s\) test, train, valid"):
        data.load_splits({"train": small_data / "train", "valid": tmp_path / "valid"}, PREP)


def test_one_class_is_no_classifier(small_data, tmp_path):
    root = class_folders(small_data, tmp_path / "train", names=CLASSES[:1])
    with pytest.raises(DataError, match=r"gives only the class 001.T-shirt_top: a classifier needs at least two"):
        load(root)


@pytest.mark.parametrize("twins", [("Dog", "dog"), (unicodedata.normalize("NFD", "Café"), "Café")])
def test_class_folders_one_on_macos_and_windows_are_refused(small_data, tmp_path, twins):
    root = class_folders(small_data, tmp_path / "train")
    for name in twins:
        shutil.copytree(root / CLASSES[0], root / name)
    with pytest.raises(DataError, match=r"differ only in case or Unicode form .*Merge them"):
        load(root)


def test_names_as_s3_keys_and_macos_have_them_are_read(small_data, tmp_path):
    root = class_folders(small_data, tmp_path / "train", per_class=1)
    folder = root / unicodedata.normalize("NFD", "004.Chien de berger é")
    shutil.copytree(root / CLASSES[0], folder)
    for name in ("photo #1 100%?.png", "x" * 240 + ".png", unicodedata.normalize("NFD", "été.png")):
        shutil.copy(next((root / CLASSES[1]).glob("*.png")), folder / name)
    train = load(root)["train"]
    assert len(train.classes) == 4 and len(train) == 3 + 4


def test_other_channels_match_the_training_classes_in_any_unicode_form_but_not_across_case(small_data, tmp_path):
    train = class_folders(small_data, tmp_path / "train")
    (train / CLASSES[2]).rename(train / "003.Café")
    valid = class_folders(small_data, tmp_path / "valid", names=CLASSES[1:])
    (valid / CLASSES[2]).rename(valid / unicodedata.normalize("NFD", "003.Café"))  # made on macOS
    splits = data.load_splits({"train": train, "valid": valid}, PREP)
    assert sorted(set(splits["valid"].targets)) == [1, 2] and len(splits["valid"]) == 10
    (valid / CLASSES[1]).rename(valid / CLASSES[1].lower())
    with pytest.raises(DataError, match=r"002.trouser that the training channel lacks \(002.trouser is 002.Trouser"):
        data.load_splits({"train": train, "valid": valid}, PREP)


def test_labels_are_nfc_whatever_form_the_folder_names_are_in():
    assert contract.display_name(unicodedata.normalize("NFD", "004.Chien_de_berger_été")) == "Chien de berger été"
    assert contract.display_name("004.Chien_de_berger_été") == unicodedata.normalize("NFC", "Chien de berger été")


@pytest.mark.parametrize("content, held", [({}, "0 unreadable image.*0 other file"),
                                           ({"a.jpg": b"junk"}, "1 unreadable image.*0 other file"),
                                           ({"notes.txt": b"todo"}, "0 unreadable image.*1 other file")])
def test_a_training_class_without_a_readable_image_is_refused(small_data, tmp_path, content, held):
    root = class_folders(small_data, tmp_path / "train", per_class=40)
    (root / "004.Beagle").mkdir()
    for name, body in content.items():
        (root / "004.Beagle" / name).write_bytes(body)
    with pytest.raises(DataError, match=f"no usable images in class folder\\(s\\) 004.Beagle .*\\(004.Beagle/: {held}"):
        load(root, max_bad_fraction=0.5)


def odd_images(folder) -> dict[str, int]:
    """Images as cameras, phones, editors and the web write them; the value: frames Pillow sees."""
    photo = a_photo()
    photo.convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(np.arange(1200, dtype=np.uint16).reshape(30, 40) * 50).save(folder / "grey16.png")
    photo.convert("P").save(folder / "palette.png", transparency=0)
    photo.convert("LA").save(folder / "grey_alpha.png")
    photo.save(folder / "animated.gif", save_all=True, append_images=[photo.convert("L").convert("RGB")])
    photo.save(folder / "photo.webp")
    photo.save(folder / "scan.tif")
    photo.convert("1").save(folder / "bilevel.png")
    (folder / "truncated.jpg").write_bytes(encoded(photo.resize((400, 300)), "JPEG")[:2000])
    (folder / "empty.jpg").write_bytes(b"")


def test_images_as_they_come_go_through_the_scan_and_the_loader(small_data, tmp_path, caplog):
    root = class_folders(small_data, tmp_path / "train", per_class=30)
    odd_images(root / CLASSES[0])
    train = load(root, max_bad_fraction=0.05)["train"]
    assert len(train) == 90 + 8
    assert "skipping 2 unreadable image(s)" in caplog.text and "truncated.jpg" in caplog.text
    assert "empty.jpg" in caplog.text


def run_train(base, channel_dir) -> subprocess.CompletedProcess:
    """The image's `train` (preflight, then sagemaker-training, then main) over `base` as /opt/ml."""
    config = base / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({"epochs": "1", "batch_size": "16", "workers": "0",
                                                             "max_bad_image_fraction": "0.05"}))
    (config / "inputdataconfig.json").write_text(json.dumps({"train": {"TrainingInputMode": "File"}}))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    for name in ("model", "output"):
        (base / name).mkdir()
    (base / "input" / "data").mkdir()
    os.symlink(channel_dir, base / "input" / "data" / "train")
    environment = dict(os.environ, SAGEMAKER_BASE_DIR=str(base), OMP_NUM_THREADS="1",
                       SAGEMAKER_TRAINING_MODULE="byoc.training.main:main")
    return subprocess.run([sys.executable, "-c", "from byoc.training import preflight; preflight.main()"],
                          env=environment, capture_output=True, text=True, timeout=600)


def test_train_refuses_the_whole_data_set_as_its_train_channel(small_data, tmp_path):
    split_folders(small_data, tmp_path / "dataset")
    run = run_train(tmp_path / "opt_ml", tmp_path / "dataset")
    failure = (tmp_path / "opt_ml" / "output" / "failure").read_text()
    assert run.returncode != 0 and "holds the split folder(s) test, train, valid, not class folders" in failure
    assert not (tmp_path / "opt_ml" / "model" / "model.json").exists()


def test_train_trains_on_an_unzipped_macos_archive_of_odd_images(small_data, tmp_path):
    root = class_folders(small_data, tmp_path / "train", per_class=30)
    macos_archive(root)
    windows_folder(root)
    odd_images(root / CLASSES[0])
    run = run_train(tmp_path / "opt_ml", root)
    assert run.returncode == 0, run.stderr[-3000:]
    model = json.loads((tmp_path / "opt_ml" / "model" / "model.json").read_text())
    assert model["class_names"] == ["T-shirt top", "Trouser", "Pullover"]
