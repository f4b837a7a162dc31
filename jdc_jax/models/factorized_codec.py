"""Balle et al. 2018's factorized-prior codec ("bmshj2018-factorized" in CompressAI): no
hyperprior, the latent itself is coded with the per-channel deep factorized density.

    y = g_a(x);  y_hat = round(y - median) + median  (per channel);  x_hat = g_s(y_hat)

g_a and g_s are the Balle transforms of `Hyperprior` (5x5 stride-2 convolutions with GDN, exact
transposed convolutions with IGDN). Input x: (B, H, W, 3) float in [0, 1], H and W multiples of
16. Output dict: `reconstruction` (B, H, W, 3) (unclipped) and `likelihoods` with `base` (y), the
only stream: there is no side information.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jdc_jax.entropy.factorized import FactorizedPrior
from jdc_jax.models import transforms


class FactorizedCodec(nn.Module):
    channels: int = 128               # N: transform width
    latent_channels: int = 192        # M: channels of y
    dtype: Any = jnp.float32          # convolution compute dtype (float32 or bfloat16)
    stored_medians: bool = False      # the prior's medians are stored, not solved
    prior_filters: tuple = (3, 3, 3)  # hidden widths of the factorized prior's CDF network

    kind = "factorized"
    streams = ("base",)
    outputs = ("reconstruction",)
    context_model = "none"

    def setup(self):
        self.g_a = transforms.BalleAnalysis(self.channels, self.latent_channels, self.dtype)
        self.prior = FactorizedPrior(filters=self.prior_filters, stored_medians=self.stored_medians)
        self.g_s = transforms.BalleSynthesis(self.channels, self.dtype)

    def factorized_prior(self):
        """The factorized prior whose coding tables the codec builds: y's own."""
        return self.prior

    def analysis(self, x):
        """x (B, H, W, 3) in [0, 1] -> y (B, H/16, W/16, M)."""
        return self.g_a(x.astype(self.dtype)).astype(jnp.float32)

    def synthesize(self, y_hat, output: str = "reconstruction"):
        return self.g_s(y_hat.astype(self.dtype)).astype(jnp.float32)

    def __call__(self, x, *, train: bool = False):
        y_hat, likelihoods = self.prior(self.analysis(x), mode="noise" if train else "round")
        return {"reconstruction": self.synthesize(y_hat), "likelihoods": {"base": likelihoods}}
