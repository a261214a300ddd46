"""Encoded images, checked from their headers before a pixel is decoded, then decoded one at a time.

  open_checked   parse only the header, with only the format(s) the content type names; refuse
                 other formats, animations, and sizes over the limits (no pixels decoded yet)
  decode         JPEG draft, decode, eval_transform -> the model's input; decoder errors are 400s

Each image costs at most its decoded pixels and one RGB copy of them (4 bytes a pixel each, so
BYOC_MAX_IMAGE_PIXELS bounds it), plus the crop; an image is freed before the next is decoded.
"""
import io

import torch
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from byoc.contract import Preprocessing
from byoc.preprocessing import draft_for, eval_transform
from byoc.serving.errors import RequestError
from byoc.serving.settings import Limits

# Our own exact limit replaces Pillow's (which warns above MAX_IMAGE_PIXELS and refuses at twice it).
Image.MAX_IMAGE_PIXELS = None
# Text chunks are never read here: cap what a PNG's zTXt/iTXt chunks may decompress to in all.
PngImagePlugin.MAX_TEXT_MEMORY = 4 * 1024 * 1024

SIGNATURES = [(b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
              (b"II*\0", "TIFF"), (b"MM\0*", "TIFF"), (b"\0\0\1\0", "ICO"), (b"%PDF", "PDF")]


def sniff(data: bytes) -> str | None:
    """What the bytes look like, for the error message (never used to pick a decoder)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((name for signature, name in SIGNATURES if data.startswith(signature)), None)


# libjpeg walks every block of the image once per scan, so a small file of thousands of tiny scans
# holds a worker for minutes. FF DA starts a scan; entropy-coded data never holds it (an FF there is
# followed by 00 or a restart marker), so counting it in the bytes counts the scans.
SCAN_MARKER = b"\xff\xda"
MAX_JPEG_SCANS = 100


def open_checked(data: bytes, formats: tuple[str, ...], limits: Limits, name: str) -> Image.Image:
    """The image, header parsed and checked, pixels not yet decoded."""
    try:
        image = Image.open(io.BytesIO(data), formats=list(formats))
    except UnidentifiedImageError:
        looks = sniff(data)
        if looks in formats:
            raise RequestError(400, f"{name} has a damaged {looks} header.") from None
        raise RequestError(400, f"{name} is not a {' or '.join(formats)} image"
                                + (f" (it looks like {looks})" if looks else "") + ".") from None
    except MemoryError:
        raise RequestError(413, f"{name} has headers too large to read.") from None
    except Exception as error:  # a hostile header can trip any parser error: it is still the client's
        raise RequestError(400, f"{name} has a damaged header ({type(error).__name__}).") from None
    check_size(image.size, limits, name)
    if image.format == "JPEG" and (scans := data.count(SCAN_MARKER)) > MAX_JPEG_SCANS:
        raise RequestError(400, f"{name} is a JPEG of {scans} scans; at most {MAX_JPEG_SCANS} are decoded "
                                "(a progressive JPEG has about 10).")
    if getattr(image, "is_animated", False) and image.format == "PNG":
        raise RequestError(400, f"{name} is an animated PNG ({image.n_frames} frames); send one still image.")
    return image


def check_size(size: tuple[int, int], limits: Limits, name: str) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise RequestError(400, f"{name} is {width}x{height} pixels: it has no pixels.")
    if width * height > limits.max_image_pixels:
        raise RequestError(413, f"{name} is {width}x{height} = {width * height:,} pixels; at most "
                                f"{limits.max_image_pixels:,} are accepted (BYOC_MAX_IMAGE_PIXELS).")
    ratio = max(width, height) / min(width, height)
    if ratio > limits.max_aspect_ratio:
        raise RequestError(400, f"{name} is {width}x{height} pixels, an aspect ratio of {ratio:.1f}:1; at most "
                                f"{limits.max_aspect_ratio:g}:1 is accepted (BYOC_MAX_ASPECT_RATIO).")


def decode(image: Image.Image, prep: Preprocessing, name: str) -> torch.Tensor:
    """The model's input for one opened image; its pixels are freed on return."""
    try:
        draft_for(image, prep)
        image.load()  # decode now: a truncated or corrupt file fails here, as the client's error
    except MemoryError:
        image.close()
        raise RequestError(413, f"{name} is too large to decode.") from None
    except Exception as error:
        image.close()
        raise RequestError(400, f"{name} could not be decoded ({type(error).__name__}: "
                                f"{str(error)[:120]}).") from None
    try:
        return eval_transform(image, prep)
    finally:
        image.close()
