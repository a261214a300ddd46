"""The scan before training decodes every image the way the loader will, whatever the cache: an
image that cannot be read is dropped before the first step, never met mid-epoch; and decoded
pixels are kept only as far as cache_mb goes, decided from their real sizes."""
import io
import shutil
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from byoc.contract import Preprocessing
from byoc.training import data
from byoc.training.errors import DataError

PREP = Preprocessing(28, 28)


def encoded(image: Image.Image, kind: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def broken_files(photo: Image.Image) -> dict[str, bytes]:
    """One of each way an image file breaks; each opens (or names itself) as an image."""
    jpeg, png = encoded(photo, "JPEG", quality=90), encoded(photo, "PNG")
    idat = png.index(b"IDAT") - 4
    length = struct.unpack(">I", png[idat:idat + 4])[0]
    bad_idat = png[:idat + 8] + bytes(b ^ 0x55 for b in png[idat + 8:idat + 8 + length]) + png[idat + 8 + length:]
    huge = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
            + png_chunk(b"IEND", b""))
    return {
        "truncated.jpg": jpeg[: len(jpeg) // 2],  # Image.verify() does not look at JPEG data
        "scan_data_cut.jpeg": jpeg[: jpeg.index(b"\xff\xda") + 20],
        "header_only.jpg": jpeg[:200],
        "empty.jpg": b"",
        "not_an_image.png": b"just some text, saved with the wrong name\n",
        "truncated.png": png[: len(png) * 2 // 3],
        "garbled_idat.png": bad_idat,
        "bomb.png": huge,  # 10^10 pixels: Pillow refuses to decode it
        "truncated.gif": encoded(photo, "GIF")[:60],
        "truncated.webp": encoded(photo, "WEBP")[:40],
        "truncated.bmp": encoded(photo, "BMP")[:500],
        "truncated.tiff": encoded(photo, "TIFF")[:300],
    }


@pytest.fixture
def photo():
    """A 96 px photo-like picture: smooth gradients and noise, so every codec has real data to cut."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:96]
    pixels = np.stack([x * 2, y * 2, (x + y)], axis=-1) + rng.integers(0, 40, (96, 96, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


@pytest.fixture
def corpus(small_data, tmp_path, photo):
    """Three classes of good images (Fashion-MNIST PNGs and JPEGs) with every broken kind in the first."""
    root = tmp_path / "train"
    for folder in sorted((small_data / "train").iterdir())[:3]:
        (root / folder.name).mkdir(parents=True)
        for image in sorted(folder.glob("*.png"))[:20]:
            shutil.copy(image, root / folder.name / image.name)
        photo.save(root / folder.name / "good.jpg", quality=90)
    for name, content in broken_files(photo).items():
        (root / "001.T-shirt_top" / name).write_bytes(content)
    return root


@pytest.mark.parametrize("name", ["truncated.jpg", "scan_data_cut.jpeg", "truncated.bmp", "truncated.tiff"])
def test_the_corpus_fools_a_header_check(corpus, name):
    """Why the scan decodes: Image.verify() passes these (it checks PNG data only); decoding does not."""
    with Image.open(corpus / "001.T-shirt_top" / name) as image:
        image.verify()
    with pytest.raises(OSError, match="truncated"), Image.open(corpus / "001.T-shirt_top" / name) as image:
        image.convert("RGB")


@pytest.mark.parametrize("cache_bytes", [0, 10**9], ids=["nothing cached", "all cached"])
def test_every_broken_image_is_dropped_in_the_scan(corpus, cache_bytes, caplog):
    train = data.load_splits({"train": corpus}, PREP, cache_bytes=cache_bytes, max_bad_fraction=0.2,
                             threads=4)["train"]
    assert len(train) == 3 * 21
    kept = {path.rsplit("/", 1)[1] for path, _ in train.samples}
    assert not kept & set(broken_files(Image.new("RGB", (8, 8)))), kept
    assert "skipping 12 unreadable image(s)" in caplog.text
    for index in range(len(train)):  # what the loader reads: no image fails later
        image, _ = train[index]
        assert image.ndim == 3 and image.shape[2] == 3


def test_too_many_broken_images_fail_before_training(corpus):
    with pytest.raises(DataError, match=r"12 of 75 images .* cannot be read .*more than the allowed 5.0%"):
        data.load_splits({"train": corpus}, PREP, cache_bytes=0, max_bad_fraction=0.05)


def test_decoded_pixels_stay_within_the_budget(small_data, tmp_path, photo):
    """A few large images among small ones: the cache holds what fits and the rest is read from disk."""
    root = tmp_path / "train"
    for folder in sorted((small_data / "train").iterdir())[:2]:
        (root / folder.name).mkdir(parents=True)
        for image in sorted(folder.glob("*.png"))[:30]:
            shutil.copy(image, root / folder.name / image.name)
        for i in range(3):
            photo.resize((1200, 900)).save(root / folder.name / f"large{i}.jpg", quality=85)  # 3.2 MB decoded each
    budget = 5 * 2**20
    reference = data.load_splits({"train": root}, PREP, cache_bytes=0)["train"]
    train = data.load_splits({"train": root}, PREP, cache_bytes=budget, threads=4)["train"]
    assert train.memory_bytes() <= budget
    cached = [a for a in train.arrays if a is not None]
    assert 0 < len(cached) < len(train)  # some in memory, some not
    for index in range(len(train)):
        assert np.array_equal(train[index][0], reference[index][0])
        assert train[index][1] == reference[index][1]
