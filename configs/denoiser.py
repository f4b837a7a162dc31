"""The DnCNN/FFDNet-style Flax denoiser, trained noisy -> clean on the same noise as the codecs:
the denoising half of the cascade baseline and the "denoiser on the raw noisy image" baseline.
Variants: sigma25 (default), sigma15, sigma50, variable, small, smoke.
"""

from jdc_jax.default_config import apply_small_scale, apply_smoke
from jdc_jax.default_config import get_config as base_config

NOISE = {"sigma15": "awgn:15", "sigma25": "awgn:25", "sigma50": "awgn:50",
         "variable": "awgn:15,25,50", "small": "awgn:25", "smoke": "awgn:25"}


def get_config(variant: str = "sigma25"):
    if variant not in NOISE:
        raise ValueError(f"unknown denoiser variant {variant!r}; expected one of {tuple(NOISE)}")
    config = base_config()
    config.model = "denoiser"
    config.target = "clean"
    config.noise = NOISE[variant]
    config.lmbda = 1.0 / 255.0 ** 2  # no rate: the loss is the plain MSE on [0, 1] images
    config.crop_size = 128
    config.batch_size = 16
    config.learning_rate = 1e-3
    if variant == "small":
        apply_small_scale(config)
    elif variant == "smoke":
        apply_smoke(config)
    return config
