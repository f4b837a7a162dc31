"""JDC (Brummer & De Vleeschouwer): a hyperprior codec trained on noisy inputs against clean
targets. Selected as --config=configs/jdc.py:VARIANT:

- paired: noisy/clean folder pairs (data_source paired:NOISY_DIR,CLEAN_DIR, matched by file name),
  keeping pairs with MS-SSIM(noisy, clean) >= 0.8 and making 20% of the batches clean -> clean;
- teacher: targets are a trained denoiser's output (teacher_checkpoint), inputs synthetic noise;
- synthetic: clean images with synthesized noise (default AWGN sigma in [5, 50]);
- smoke: a tiny synthetic model on the built-in images;
- campaign_sigma25: the CPU training campaign (results/campaign/README.md): synthetic AWGN 25 with
  20% clean -> clean batches, at the campaign's scale and on JICD's lambdas, so that it sits on
  the same plots as JICD sigma 25.
"""

from jdc_jax.default_config import apply_campaign_scale, apply_smoke
from jdc_jax.default_config import get_config as base_config

VARIANTS = ("paired", "teacher", "synthetic", "smoke", "campaign_sigma25")


def get_config(variant: str = "synthetic"):
    if variant not in VARIANTS:
        raise ValueError(f"unknown JDC variant {variant!r}; expected one of {VARIANTS}")
    config = base_config()
    config.model = "jdc"
    config.context_model = "none"
    config.target = "clean"
    config.noise = "awgn:5-50"
    if variant == "paired":
        config.data_source = "paired:data/noisy,data/clean"  # set to your NOISY_DIR,CLEAN_DIR
        config.noise = "none"
        config.msssim_min = 0.8
        config.clean_fraction = 0.2
    elif variant == "teacher":
        config.target = "teacher"
        config.teacher_checkpoint = "runs/denoiser/checkpoints"  # a configs/denoiser.py run
    elif variant == "smoke":
        apply_smoke(config)
        config.noise = "awgn:25"
        config.clean_fraction = 0.2
    elif variant == "campaign_sigma25":
        apply_campaign_scale(config)
        config.noise = "awgn:25"
        config.clean_fraction = 0.2
        config.rate_point = 1
    return config
