"""The plain codec: the Cheng2020-anchor codec (no attention, serial context) trained
noisy -> noisy, i.e. it reconstructs its (noisy) input. It is the compression half of the
"codec, then denoiser" cascade baseline (the JICD paper's Cheng + FFDNet-clip).
Variants: sigma25 (default), sigma15, sigma50, practical-free variable, small, smoke, and
campaign_clean: the JICD paper's cascade codec, a general-purpose codec trained clean -> clean
(no noise), whose one ladder serves every noise level before the FFDNet denoiser.
"""

from jdc_jax.default_config import apply_campaign_scale, apply_small_scale, apply_smoke
from jdc_jax.default_config import get_config as base_config

NOISE = {"sigma15": "awgn:15", "sigma25": "awgn:25", "sigma50": "awgn:50",
         "variable": "awgn:15,25,50", "small": "awgn:25", "smoke": "awgn:25",
         "campaign_clean": "none"}


def get_config(variant: str = "sigma25"):
    if variant not in NOISE:
        raise ValueError(f"unknown codec variant {variant!r}; expected one of {tuple(NOISE)}")
    config = base_config()
    config.model = "codec"
    config.context_model = "serial"
    config.target = "noisy"
    config.noise = NOISE[variant]
    if variant == "campaign_clean":
        apply_campaign_scale(config)
        config.target = "clean"
    elif variant == "small":
        apply_small_scale(config)
    elif variant == "smoke":
        apply_smoke(config)
    return config
