"""Image files: reading as 8-bit RGB, header-only size checks, atomic PNG writing, listing.

Every image enters the project as uint8 (H, W, 3) in [0, 255]:

- grey (modes 1, L, LA) is replicated to three channels; an alpha channel (RGBA, LA, PA) is
  dropped, not composited; other 8-bit modes (palette, CMYK, YCbCr) are converted to RGB. Each
  conversion prints ``note: <file>: ...`` to stderr.
- images with more than 8 bits per sample (modes I;16*, I, F, and 16-bit PNG / TIFF, which
  Pillow would otherwise silently truncate to 8 bits) raise ValueError, as do files that are
  not images.
- EXIF orientation is not applied (neither does tf.io.decode_image): pixels come as stored.

`image_size` applies the same checks to the header alone, without decoding the pixels, so a
pipeline can reject or drop files before it reads them.
"""

from __future__ import annotations

import io
import os
import sys

import numpy as np
from PIL import Image, UnidentifiedImageError

from jdc_jax.atomic_write import write_bytes_atomic

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm")

_GREY_MODES = ("1", "L", "LA")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_HIGH_BIT_DEPTH_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N")

ImageSource = str | os.PathLike | bytes


def _describe(source: ImageSource) -> str:
    if isinstance(source, bytes):
        return f"<{len(source)} bytes of encoded image>"
    return os.fspath(source)


def _open(source: ImageSource) -> Image.Image:
    """Opens the header only; ValueError naming the file if it is not an image."""
    try:
        return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except UnidentifiedImageError as error:
        raise ValueError(f"not an image file: {_describe(source)}") from error


def _raw_modes(image: Image.Image) -> list[str]:
    """How the decoder will read the stored samples, e.g. 'RGB;16B' for 16-bit PNG."""
    modes = []
    for tile in image.tile:
        args = tile.args if hasattr(tile, "args") else tile[3]
        if isinstance(args, tuple) and args:
            args = args[0]
        if isinstance(args, str):
            modes.append(args)
    return modes


def _check_bit_depth(image: Image.Image, source: ImageSource) -> None:
    if image.mode in _HIGH_BIT_DEPTH_MODES or any(
            ";16" in raw or ";32" in raw for raw in _raw_modes(image)):
        raise ValueError(f"16-bit images are not supported: {_describe(source)} "
                         f"(mode {image.mode}); convert it to 8 bits per channel")


def image_size(source: ImageSource) -> tuple[int, int]:
    """(height, width) of an image file or encoded bytes, from its header alone.

    Raises ValueError, naming the file, for non-images and for more than 8 bits per sample."""
    with _open(source) as image:
        _check_bit_depth(image, source)
        width, height = image.size
    return height, width


def _conversion_note(mode: str) -> str | None:
    if mode == "RGB":
        return None
    if mode in _GREY_MODES:
        note = "converted grey to RGB"
        return note + " and dropped the alpha channel" if mode == "LA" else note
    if mode in _ALPHA_MODES:
        return "dropped the alpha channel"
    return f"converted {mode} to RGB"


def read_image(source: ImageSource) -> np.ndarray:
    """Decodes an image file (or encoded bytes) to uint8 (H, W, 3) in [0, 255].

    Conversions are noted on stderr; see the module docstring for what raises ValueError."""
    with _open(source) as image:
        _check_bit_depth(image, source)
        try:
            image.load()
        except OSError as error:
            raise ValueError(f"cannot decode image {_describe(source)}: {error}") from error
        note = _conversion_note(image.mode)
        if note:
            print(f"note: {_describe(source)}: {note}", file=sys.stderr)
        rgb = image.convert("RGB") if image.mode != "RGB" else image
        return np.array(rgb, dtype=np.uint8)


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Writes a uint8 (H, W, 3) image as PNG atomically: a temporary file in the same folder,
    then os.replace, so `path` never holds a partial image."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"write_png expects a uint8 (H, W, 3) image, got {image.dtype} "
                         f"{image.shape}")
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getvalue())


def list_images(folder: str | os.PathLike,
                extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[str]:
    """Paths of the images below `folder` (recursive, case-insensitive extensions), sorted.

    Raises ValueError, naming the folder, if it does not exist or holds no such image."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ValueError(f"image folder does not exist: {folder}")
    paths = sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(folder)
        for name in names
        if name.lower().endswith(extensions))
    if not paths:
        raise ValueError(f"no images ({', '.join(extensions)}) found in {folder}")
    return paths


def pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """Edge-replicate an (H, W, C) image on the bottom/right to multiples of `multiple`."""
    h, w = image.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    return np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge")
