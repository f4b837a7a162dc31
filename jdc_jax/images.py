"""Images: reading files as 8-bit RGB, header-only size checks, atomic PNG writing, listing
folders, and the conversions every image goes through (to RGB, float to uint8, padding).

Every image enters the project as uint8 (H, W, 3) in [0, 255] (`as_rgb`, for files and arrays
alike):

- grey (modes 1, L, LA; arrays (H, W) and (H, W, 1)) is replicated to three channels; an alpha
  channel (RGBA, LA, PA; arrays (H, W, 2) and (H, W, 4)) is dropped, not composited; other 8-bit
  modes (palette, CMYK, YCbCr) are converted to RGB. Each conversion prints ``note: <source>:
  ...`` to stderr.
- images with more than 8 bits per sample (modes I;16*, I, F, and 16-bit PNG / TIFF, which
  Pillow would otherwise silently truncate to 8 bits) raise ValueError, as do files that are
  not images (empty, text, truncated or damaged beyond decoding).
- a header that declares more pixels than the `.jdc` format holds (`file_format.MAX_IMAGE_SIDE`
  per side, MAX_IMAGE_PIXELS in all) or than Pillow decodes safely (its decompression-bomb
  limit, about 179 megapixels) raises ValueError before any pixel is decoded (a "PNG bomb").
- an animated image (GIF, APNG, WebP) gives its first frame, with a note.
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
# The largest image the .jdc format holds is the largest array an image may be.
from jdc_jax.codec.file_format import MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE

# The image files the project lists in folders: the formats both readers decode (Pillow here,
# tf.io.decode_image in the training pipeline; TF reads no PPM, for one).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")

# Modes whose samples become an array that `as_rgb` takes as it is.
_ARRAY_MODES = ("RGB", "RGBA", "L", "LA")
_HIGH_BIT_DEPTH_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N")

ImageSource = str | os.PathLike | bytes


def _describe(source: ImageSource) -> str:
    if isinstance(source, bytes):
        return f"<{len(source)} bytes of encoded image>"
    return os.fspath(source)


def _open(source: ImageSource) -> Image.Image:
    """Opens the header only; ValueError naming the file if it is not an image or declares a
    size no reader here decodes (module docstring)."""
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except UnidentifiedImageError as error:
        raise ValueError(f"not an image file: {_describe(source)}") from error
    except Image.DecompressionBombError as error:
        raise ValueError(f"image too large: {_describe(source)} declares more pixels than "
                         f"Pillow decodes safely ({error})") from None
    width, height = image.size
    try:
        _check_size(height, width, _describe(source))
    except ValueError:
        image.close()
        raise
    return image


def _check_size(height: int, width: int, source: str) -> None:
    """ValueError unless height x width fits the `.jdc` format's limits."""
    if not (1 <= height <= MAX_IMAGE_SIDE and 1 <= width <= MAX_IMAGE_SIDE
            and height * width <= MAX_IMAGE_PIXELS):
        raise ValueError(f"image size {height}x{width} of {source} is outside 1 to "
                         f"{MAX_IMAGE_SIDE} pixels per side (at most {MAX_IMAGE_PIXELS} pixels)")


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


def read_image(source: ImageSource) -> np.ndarray:
    """Decodes an image file (or encoded bytes) to uint8 (H, W, 3) in [0, 255].

    Conversions are noted on stderr (`as_rgb`); see the module docstring for what raises
    ValueError."""
    with _open(source) as image:
        _check_bit_depth(image, source)
        frames = getattr(image, "n_frames", 1)
        if frames > 1:
            print(f"note: {_describe(source)}: animated image of {frames} frames; read its "
                  f"first frame", file=sys.stderr)
        try:
            image.load()
        except (OSError, SyntaxError, EOFError, ValueError) as error:  # damaged data
            raise ValueError(f"cannot decode image {_describe(source)}: {error}") from error
        if image.mode not in _ARRAY_MODES:  # palette, CMYK, YCbCr, bilevel, premultiplied...
            grey = image.mode in ("1", "La")  # as_rgb notes the grey conversion
            if not grey:
                print(f"note: {_describe(source)}: converted {image.mode} to RGB",
                      file=sys.stderr)
            has_alpha = "A" in image.mode or "a" in image.mode or \
                "transparency" in image.info
            image = image.convert(("LA" if has_alpha else "L") if grey
                                  else ("RGBA" if has_alpha else "RGB"))
        return as_rgb(np.array(image, dtype=np.uint8), _describe(source))


def as_rgb(image, source: str = "the image") -> np.ndarray:
    """`image` (a uint8 array) as uint8 (H, W, 3). Grey (H, W) / (H, W, 1) is replicated and an
    alpha channel ((H, W, 2) grey-alpha, (H, W, 4) RGBA) dropped, each with a note on stderr
    naming `source`; anything else (another dtype, shape or an empty or oversized image) raises
    ValueError."""
    if not hasattr(image, "__array__") or isinstance(image, (str, bytes)):
        raise ValueError(f"image must be a uint8 numpy array (H, W, 3), got "
                         f"{type(image).__name__}")
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 in [0, 255], got dtype {image.dtype}; for a "
                         f"[0, 1] float image use images.to_uint8(image)")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"image must be (H, W, 3) RGB (or grey / with alpha), got shape "
                         f"{image.shape}")
    height, width, channels = image.shape
    _check_size(height, width, source)
    notes = []
    if channels in (1, 2):
        notes.append("converted grey to RGB")
    if channels in (2, 4):
        notes.append("dropped the alpha channel")
        image = image[:, :, : channels - 1]
    if notes:
        print(f"note: {source}: {' and '.join(notes)}", file=sys.stderr)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return np.ascontiguousarray(image)


def to_uint8(image) -> np.ndarray:
    """A [0, 1] float image as uint8 [0, 255]: round, clip (non-finite values become 0, +inf 255).
    The one rounding every decoded or denoised image goes through."""
    image = np.nan_to_num(np.asarray(image, np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


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


def list_images(folder: str | os.PathLike) -> list[str]:
    """Paths of the images below `folder` (recursive, `IMAGE_EXTENSIONS` in any case), sorted.

    Raises ValueError, naming the folder, if it does not exist or holds no such image."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ValueError(f"image folder does not exist: {folder}")
    paths = sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(folder)
        for name in names
        if name.lower().endswith(IMAGE_EXTENSIONS))
    if not paths:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {folder}")
    return paths


def image_name(path: str | os.PathLike, folder: str | os.PathLike) -> str:
    """An image's name within its dataset: its path relative to the dataset folder, with "/"
    separators. Names seed the synthesized noise (`noise.noisy_for_file`), so images in
    different subfolders never share a name, and every reader of a dataset uses this one rule."""
    return os.path.relpath(os.fspath(path), os.fspath(folder)).replace(os.sep, "/")


def load_folder(folder: str | os.PathLike, limit: int = 0) -> list[tuple[str, np.ndarray]]:
    """[(`image_name`, uint8 (H, W, 3))] of the images below `folder`, sorted by path; the
    first `limit` only when limit > 0. ValueError if the folder is missing or holds no image."""
    paths = list_images(folder)
    paths = paths[:limit] if limit > 0 else paths
    return [(image_name(path, folder), read_image(path)) for path in paths]


def pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """Edge-replicate an (H, W, C) image on the bottom/right to multiples of `multiple`."""
    h, w = image.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    return np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge")
