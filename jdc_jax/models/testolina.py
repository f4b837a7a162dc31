"""Testolina, Upenik, Ebrahimi 2021, "Towards image denoising in the latent space of
learning-based compression": the Balle hyperprior codec whose decoder starts with four 5x5
stride-1 conv+ReLU layers (M -> N, then N -> N three times) before the synthesis transform,
trained from noisy inputs to clean targets (Foi Poisson-Gaussian noise).

Same inputs and outputs as `Hyperprior`; `reconstruction` is the denoised image.
"""

from __future__ import annotations

from jdc_jax.models.hyperprior import Hyperprior


class Testolina(Hyperprior):
    denoising_layers: int = 4

    kind = "testolina"
