""".npy bodies: the header is read and checked (floats, (3, H, W) or (N, 3, H, W), the data really
there, within the limits) before anything is allocated; a float32 array is then a view of the body.

float16 and float64 arrays of either byte order are converted to float32: the SDK's NumpySerializer
writes np.array(data), float64 for a list of Python floats or a torch tensor's .tolist().

np.load would allocate the shape the header declares before reading any data (a tiny body could
ask for terabytes), and would need pickle for object arrays (refused here without unpickling).
"""
import io

import numpy as np
from numpy.lib import format as npy_format

from byoc.serving.errors import RequestError
from byoc.serving.settings import Limits

FLOAT32 = np.dtype("<f4")
FLOATS = ("f2", "f4", "f8")  # kind and size, either byte order
# Normalised images lie within about ±3 (about ±1,100 unscaled by 1/255). Values far beyond make an
# answer that means nothing, and whether it is NaN (a 400) or a number depends on the precision
# this CPU serves in: int8 saturates where fp32 overflows. So they are refused whatever it is.
MAX_VALUE = 1e4


def _header(body: bytes) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    stream = io.BytesIO(body)
    try:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(stream)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npy_format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unknown .npy version {version}")
    except Exception as error:  # any malformed header, whatever numpy raises for it
        raise RequestError(400, f"The body is not a .npy array: {str(error)[:200]}.") from None
    return shape, fortran, dtype, stream.tell()


def from_npy(body: bytes, limits: Limits) -> tuple[np.ndarray, bool]:
    """(array (N, 3, H, W) float32, many) from a .npy body; many: the client sent a batch."""
    shape, fortran, dtype, offset = _header(body)
    if dtype.hasobject:
        raise RequestError(400, "The array holds Python objects; send a float32 array.")
    if dtype.str[1:] not in FLOATS:
        pixels = " (for pixels, send the image itself, e.g. as image/png)" if dtype.kind in "ui" else ""
        raise RequestError(400, f"The array must hold floats (float32; float16 and float64 are converted), "
                                f"not {dtype}{pixels}.")
    sizes = all(type(size) is int and size > 0 for size in shape)  # numpy's reader takes -28 and True
    if not sizes or len(shape) not in (3, 4) or shape[-3] != 3:
        raise RequestError(400, f"The array must have shape (3, H, W) or (N, 3, H, W), not {shape}.")
    many = len(shape) == 4
    rows, height, width = (shape[0] if many else 1), shape[-2], shape[-1]
    if rows > limits.max_images:
        raise RequestError(413, f"{rows} arrays in one request; at most {limits.max_images} (BYOC_MAX_IMAGES).")
    if rows * height * width > limits.max_request_pixels:
        raise RequestError(413, f"The arrays hold {rows * height * width:,} pixels; at most "
                                f"{limits.max_request_pixels:,} per request (BYOC_MAX_REQUEST_PIXELS).")
    expected = rows * 3 * height * width * dtype.itemsize
    if len(body) - offset != expected:
        raise RequestError(400, f"The header declares {shape} {dtype} ({expected} bytes of data) but the body "
                                f"holds {len(body) - offset}.")
    array = np.frombuffer(body, dtype, offset=offset).reshape(shape, order="F" if fortran else "C")
    with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf, refused below
        array = array.astype(FLOAT32, copy=False)
    if not np.isfinite(array).all():
        raise RequestError(400, "The array holds NaN or infinite values.")
    if array.size and max(-array.min(), array.max()) > MAX_VALUE:
        raise RequestError(400, f"The array holds values beyond ±{MAX_VALUE:g}: far outside those of normalised "
                                "images, which the model cannot answer meaningfully.")
    return (array if many else array[None]), many
