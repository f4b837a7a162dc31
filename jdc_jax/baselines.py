"""The stock pipelines a user could pick instead of a learned codec: a classical denoiser and a
standard image codec, in either order, at a matched rate.

Denoisers (uint8 (H, W, 3) in, uint8 out):

- "wavelet": scikit-image's `denoise_wavelet` (Chang, Yu & Vetterli 2000, BayesShrink soft
  thresholds; the library's Haar wavelet and levels) in YCbCr, with the noise std estimated from
  the image itself (the median absolute deviation of its finest wavelet band), so it needs to be
  told nothing;
- "bm3d": CBM3D (Dabov et al. 2007, the `bm3d` package) given the noise std (`noise_std`).

Codecs: "webp" (Pillow, lossy, method 6: the slowest, best-compressing setting) and "jpeg"
(Pillow's libjpeg, 4:2:0, optimized Huffman tables). A codec runs at the largest quality whose
file is not larger than the target rate (`code_at_rate`): quality 0..100 is searched by
bisection, the file size being (nearly) monotone in the quality; when even the lowest quality is
larger, that one is used and its real size reported.

Pipelines are named "DENOISER+CODEC" (denoise the noisy image, then code it: the receiver gets a
denoised image) or "CODEC+DENOISER" (code the noisy image, denoise after decoding), e.g.
"wavelet+webp" and "webp+wavelet". `run_pipeline` returns the output image and the file size.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
from PIL import Image
from skimage.restoration import denoise_wavelet

from jdc_jax.images import to_uint8

DENOISERS = ("wavelet", "bm3d")
CODECS = ("webp", "jpeg")


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """A parsed pipeline name: `stages` in order, e.g. ("wavelet", "webp")."""

    stages: tuple[str, ...]

    @property
    def codec(self) -> str | None:
        return next((stage for stage in self.stages if stage in CODECS), None)

    @property
    def denoiser(self) -> str | None:
        return next((stage for stage in self.stages if stage in DENOISERS), None)

    @property
    def name(self) -> str:
        return "+".join(self.stages)


def parse_pipeline(name: str) -> Pipeline:
    """"wavelet", "bm3d", "webp", "jpeg", or a denoiser and a codec joined by "+" in either
    order; ValueError naming the stages otherwise."""
    stages = tuple(name.split("+"))
    known = DENOISERS + CODECS
    if not 1 <= len(stages) <= 2 or any(stage not in known for stage in stages) or (
            len(stages) == 2 and (stages[0] in CODECS) == (stages[1] in CODECS)):
        raise ValueError(f"pipeline {name!r}: expected a denoiser ({', '.join(DENOISERS)}), a "
                         f"codec ({', '.join(CODECS)}), or one of each joined by '+', e.g. "
                         f"wavelet+webp or webp+wavelet")
    return Pipeline(stages)


def denoise(image: np.ndarray, denoiser: str, noise_std: float | None = None) -> np.ndarray:
    """`image` uint8 (H, W, 3) denoised by a classical method; noise_std (8-bit units) is used by
    "bm3d" only."""
    x = image.astype(np.float64) / 255.0
    if denoiser == "wavelet":
        return to_uint8(denoise_wavelet(x, method="BayesShrink", mode="soft",
                                        convert2ycbcr=True, channel_axis=-1,
                                        rescale_sigma=True))
    if denoiser == "bm3d":
        if noise_std is None:
            raise ValueError("bm3d needs the noise std")
        try:
            import bm3d  # optional: the "eval" extra
        except ImportError:
            raise ValueError("the bm3d denoiser needs the bm3d package (pip install "
                             "'jdc_jax[eval]')") from None
        return to_uint8(bm3d.bm3d_rgb(x, noise_std / 255.0))
    raise ValueError(f"unknown denoiser {denoiser!r}; expected one of {DENOISERS}")


def encode(image: np.ndarray, codec: str, quality: int) -> bytes:
    """The file of `image` (uint8 (H, W, 3)) at a quality in [0, 100]."""
    buffer = io.BytesIO()
    picture = Image.fromarray(image)
    if codec == "webp":
        picture.save(buffer, format="WEBP", quality=quality, method=6)
    elif codec == "jpeg":
        picture.save(buffer, format="JPEG", quality=max(quality, 1), optimize=True,
                     subsampling="4:2:0")
    else:
        raise ValueError(f"unknown codec {codec!r}; expected one of {CODECS}")
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as picture:
        return np.asarray(picture.convert("RGB"), np.uint8)


def code_at_rate(image: np.ndarray, codec: str, target_bpp: float) -> tuple[bytes, int]:
    """(file, quality): the largest quality whose file has at most `target_bpp` bits per pixel
    (the lowest quality when none does)."""
    if target_bpp <= 0:
        raise ValueError(f"target bpp must be positive, got {target_bpp}")
    budget = target_bpp * image.shape[0] * image.shape[1] / 8.0
    low, high = 0, 100
    best = None
    while low <= high:
        quality = (low + high) // 2
        data = encode(image, codec, quality)
        if len(data) <= budget:
            best, low = (data, quality), quality + 1
        else:
            high = quality - 1
    if best is None:
        return encode(image, codec, 0), 0
    return best


def run_pipeline(pipeline: Pipeline, noisy: np.ndarray, target_bpp: float | None,
                 noise_std: float | None = None) -> tuple[np.ndarray, int]:
    """(output uint8 (H, W, 3), file bytes) of a pipeline on a noisy image; 0 bytes for a
    denoiser alone."""
    image, size = noisy, 0
    for stage in pipeline.stages:
        if stage in CODECS:
            if target_bpp is None:
                raise ValueError(f"pipeline {pipeline.name} codes the image: give a target bpp")
            data, _ = code_at_rate(image, stage, target_bpp)
            image, size = decode(data), len(data)
        else:
            image = denoise(image, stage, noise_std)
    return image, size
