"""Testolina et al. 2021: the hyperprior codec with a 4-layer conv+ReLU denoising head at the
start of its decoder, trained noisy -> clean on Foi Poisson-Gaussian noise.

Default noise: a = 0.04, b = 0.0016 on [0, 1] images (b a variance); a range is written as
poisson_gaussian:0.01-0.04,0.0004-0.0016 (uniform per image). Variants: default, smoke.
The paper reports lambda in {0.1, 0.25, 0.4, 0.55} in a convention it does not state, reaching
0.2-1.5 bpp; here four lambdas of this project's convention span that range.
"""

from jdc_jax.default_config import apply_small_scale, apply_smoke
from jdc_jax.default_config import get_config as base_config

TESTOLINA_LAMBDAS = (0.0035, 0.0067, 0.0130, 0.0250)


def get_config(variant: str = "default"):
    if variant not in ("default", "small", "smoke"):
        raise ValueError(f"unknown Testolina variant {variant!r}; expected default, small, smoke")
    config = base_config()
    config.model = "testolina"
    config.context_model = "none"
    config.noise = "poisson_gaussian:0.04,0.0016"
    config.target = "clean"
    config.lambdas = TESTOLINA_LAMBDAS
    config.rate_point = 2
    if variant == "small":
        apply_small_scale(config)
        config.noise = "awgn:25"  # the reproduction's noise, so all models see the same data
    elif variant == "smoke":
        apply_smoke(config)
    return config
