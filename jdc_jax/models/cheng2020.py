"""Cheng et al. 2020 anchor codec without attention: the single-layer counterpart of JICD.

The same transforms, hyperprior, context model and entropy parameters as `JICD`, with one latent
(all M channels in the base layer) and one synthesis. Trained noisy -> noisy it is the
compression half of the "codec, then denoiser" cascade baseline (the JICD paper's Cheng +
FFDNet-clip); trained noisy -> clean it is a JDC-style joint model.

Input x: (B, H, W, 3) float in [0, 1], H and W multiples of 64. Output dict: `reconstruction`,
and `likelihoods` with `side` and `base`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jdc_jax.entropy.factorized import FactorizedPrior
from jdc_jax.models import transforms
from jdc_jax.models.entropy_parameters import GroupEntropyParameters
from jdc_jax.models.pieces import CodecPieces


class Cheng2020(CodecPieces, nn.Module):
    channels: int = 192
    latent_channels: int = 192
    context_model: str = "serial"
    decoder_input: str = "ste"
    dtype: Any = jnp.float32
    stored_medians: bool = False      # the side prior's medians are stored, not solved
    prior_filters: tuple = (3, 3, 3)  # hidden widths of the factorized prior's CDF network

    kind = "cheng2020"
    streams = ("side", "base")
    outputs = ("reconstruction",)

    def setup(self):
        m = self.latent_channels
        self.g_a = transforms.ChengAnalysis(self.channels, m, self.dtype)
        self.h_a = transforms.ChengHyperAnalysis(self.channels, self.dtype)
        self.side_prior = FactorizedPrior(filters=self.prior_filters, stored_medians=self.stored_medians)
        self.h_s = transforms.ChengHyperSynthesis(m, self.dtype)
        self.base_parameters = GroupEntropyParameters(m, 2 * m, 0, self.context_model,
                                                      self.dtype)
        self.g_s = transforms.ChengSynthesis(self.channels, self.dtype)

    def synthesize(self, y_hat, output: str = "reconstruction"):
        return self.g_s(y_hat.astype(self.dtype)).astype(jnp.float32)

    def __call__(self, x, *, train: bool = False):
        return self.single_layer_forward(x, train=train)
