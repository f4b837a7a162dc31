"""Denoisers trained noisy -> clean: the DnCNN-style `denoiser` (sigma25 (default), sigma15,
sigma50, variable, small, smoke) and the noise-level-conditioned FFDNet of the JICD paper's
cascade (campaign_ffdnet: FFDNet-clip, trained on clipped and quantized AWGN of sigma uniform on
[0, 75], told each image's sigma; one model serves every noise level).
"""

from jdc_jax.default_config import apply_campaign_scale, apply_small_scale, apply_smoke
from jdc_jax.default_config import get_config as base_config

NOISE = {"sigma15": "awgn:15", "sigma25": "awgn:25", "sigma50": "awgn:50",
         "variable": "awgn:15,25,50", "small": "awgn:25", "smoke": "awgn:25",
         "campaign_ffdnet": "awgn:0-75"}


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
    if variant == "campaign_ffdnet":
        apply_campaign_scale(config)
        config.model = "ffdnet"
        # The paper's colour FFDNet is 12 layers of 96 channels at half resolution; this budget
        # takes 10 of 64. Crops of 64 x 64, as FFDNet trains on small patches.
        config.denoiser_depth, config.denoiser_features = 10, 64
        config.crop_size, config.batch_size = 64, 32
        config.learning_rate = 1e-3
        config.num_train_steps = 6_000
    elif variant == "small":
        apply_small_scale(config)
    elif variant == "smoke":
        apply_smoke(config)
    return config
