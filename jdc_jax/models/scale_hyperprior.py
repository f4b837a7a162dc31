"""Balle et al. 2018's scale hyperprior ("bmshj2018-hyperprior" in CompressAI): a zero-mean
Gaussian whose scales come from the hyperprior alone.

    y = g_a(x);  z = h_a(|y|);  z_hat ~ factorized prior;  scale = h_s(z_hat) >= 0
    y_hat = round(y);  x_hat = g_s(y_hat)

g_a and g_s are the Balle transforms of `Hyperprior`; h_a is conv3x3 -> ReLU -> conv5x5/2 -> ReLU
-> conv5x5/2 on |y|, h_s two transposed 5x5/2 convolutions and a 3x3 convolution, each followed
by ReLU (`transforms.ScaleHyperAnalysis`, `transforms.ScaleHyperSynthesis`).

Input x: (B, H, W, 3) float in [0, 1], H and W multiples of 64. Output dict: `reconstruction`
(unclipped) and `likelihoods` with `side` (z) and `base` (y).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jdc_jax.entropy.factorized import FactorizedPrior
from jdc_jax.models import transforms
from jdc_jax.models.entropy_parameters import GroupEntropyParameters
from jdc_jax.models.pieces import CodecPieces


class ScaleHyperprior(CodecPieces, nn.Module):
    channels: int = 128               # N: transform width
    latent_channels: int = 192        # M: channels of y
    decoder_input: str = "ste"        # training quantization of the decoder input: "ste"/"noise"
    dtype: Any = jnp.float32          # convolution compute dtype (float32 or bfloat16)
    stored_medians: bool = False      # the side prior's medians are stored, not solved
    prior_filters: tuple = (3, 3, 3)  # hidden widths of the factorized prior's CDF network

    kind = "scale_hyperprior"
    streams = ("side", "base")
    outputs = ("reconstruction",)
    context_model = "none"

    def setup(self):
        m = self.latent_channels
        self.g_a = transforms.BalleAnalysis(self.channels, m, self.dtype)
        self.h_a = transforms.ScaleHyperAnalysis(self.channels, self.dtype)
        self.side_prior = FactorizedPrior(filters=self.prior_filters, stored_medians=self.stored_medians)
        self.h_s = transforms.ScaleHyperSynthesis(self.channels, m, self.dtype)
        self.base_parameters = GroupEntropyParameters(
            m, m, 0, "none", self.dtype, parameter_network=False, predicts_mean=False)
        self.g_s = transforms.BalleSynthesis(self.channels, self.dtype)

    def synthesize(self, y_hat, output: str = "reconstruction"):
        return self.g_s(y_hat.astype(self.dtype)).astype(jnp.float32)

    def __call__(self, x, *, train: bool = False):
        return self.single_layer_forward(x, train=train)
