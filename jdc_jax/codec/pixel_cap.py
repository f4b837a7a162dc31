"""The decoder's pixel cap: the guard against decompression bombs (as Pillow's MAX_IMAGE_PIXELS).

A forged ``.jdc`` file whose CRCs are valid and whose header names the right model can declare
any size the format allows (`file_format.MAX_IMAGE_PIXELS`, 2^28 pixels) in about a hundred
bytes. Decoding it would allocate latents and an output of that size: the float32 output alone
takes 12 bytes per pixel, 3 GiB at 2^28 pixels. So a decoder refuses a header that declares more
than `max_pixels` real pixels (height x width) with `ImageTooLarge`, before it reads a chunk or
allocates anything of the declared size.

The default is DEFAULT_MAX_PIXELS, 100 megapixels (a 12000 x 8000 photograph fits). A caller who
trusts a larger file raises it: `FileCodec.decompress(data, max_pixels=N)` and
`FileCodec.decode(..., max_pixels=N)` (N = None: only the format's own limit), and
``python -m jdc_jax decompress --max-pixels N``. This module imports no numerical library.
"""

from __future__ import annotations

from jdc_jax.codec import file_format

DEFAULT_MAX_PIXELS = 100_000_000


class ImageTooLarge(file_format.JdcFormatError):
    """The file declares more pixels than the decoder's `max_pixels` allows."""


def check_pixels(height: int, width: int, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
    """Raises ImageTooLarge when a declared height x width exceeds `max_pixels`.

    Args:
      height, width: the image size a header declares, in pixels.
      max_pixels: the largest accepted height * width, a positive integer; None accepts every
        size the format allows. Anything else raises ValueError.
    """
    if max_pixels is None:
        return
    limit = file_format.positive_integer(max_pixels,
                                         "max_pixels must be a positive integer or None")
    pixels = height * width
    if pixels > limit:
        raise ImageTooLarge(
            f"the file declares a {height}x{width} image ({pixels} pixels), more than the "
            f"decoder's limit of {limit} pixels (a guard against decompression bombs); if "
            f"you trust the file, raise the limit: max_pixels={pixels} "
            f"(command line: --max-pixels {pixels})")
