"""JICD (Ranjbar Alvar et al. 2022), selected as --config=configs/jicd.py:VARIANT.

Variants: sigma15 / sigma25 / sigma50 (AWGN of that sigma; base/enhancement channels 190/2,
180/12, 160/32), variable (sigma uniform over {15, 25, 50} per image, 180/12), small (64 channels,
128x128 crops on the built-in images: the CPU-scale reproduction), smoke (a tiny model on the
built-in images that trains in about two minutes on 2 CPU cores).
Paper defaults: CLIC 256x256 random crops, batch 16, Adam 1e-4 halved on plateaus, w = 0.05.
"""

from jdc_jax.default_config import apply_small_scale, apply_smoke
from jdc_jax.default_config import get_config as base_config

BASE_CHANNELS = {"sigma15": 190, "sigma25": 180, "sigma50": 160, "variable": 180}
NOISE = {"sigma15": "awgn:15", "sigma25": "awgn:25", "sigma50": "awgn:50",
         "variable": "awgn:15,25,50"}
VARIANTS = ("sigma15", "sigma25", "sigma50", "variable", "small", "smoke")


def get_config(variant: str = "sigma25"):
    if variant not in VARIANTS:
        raise ValueError(f"unknown JICD variant {variant!r}; expected one of {VARIANTS}")
    config = base_config()
    config.model = "jicd"
    config.context_model = "serial"
    if variant in BASE_CHANNELS:
        config.base_channels = BASE_CHANNELS[variant]
        config.noise = NOISE[variant]
    elif variant == "small":
        apply_small_scale(config)
        config.base_channels = 60  # the sigma25 split ratio: 12 of 192 -> 4 of 64
        config.noise = "awgn:25"
    else:  # smoke
        apply_smoke(config)
        config.base_channels = 12
        config.noise = "awgn:25"
    return config
