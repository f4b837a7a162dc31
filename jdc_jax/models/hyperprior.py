"""Mean-scale hyperprior codec (Balle et al. 2018, "Variational image compression with a scale
hyperprior", with the Gaussian mean of Minnen et al. 2018; CompressAI's "mbt2018-mean").

    y = g_a(x);  z = h_a(y);  z_hat ~ factorized prior;  (mean, scale) = EP(h_s(z_hat))
    y_hat = round(y - mean) + mean;  x_hat = g_s(y_hat)

g_a: four 5x5 stride-2 convolutions with GDN; g_s: four exact 5x5 stride-2 transposed
convolutions (phase-decomposed) with IGDN. The same class serves the plain hyperprior codec, the
JDC model (trained noisy -> clean) and, with `denoising_layers=4`, Testolina et al. 2021.

The entropy parameters come from a 1x1 network on psi = h_s(z_hat) (and, with
`context_model="serial"`, on the 5x5 masked context: Minnen et al. 2018's joint autoregressive
and hierarchical prior, CompressAI's "mbt2018"), or, with `parameter_network=False`, from psi
itself (CompressAI's "mbt2018-mean").

Input x: (B, H, W, 3) float in [0, 1], H and W multiples of 64. Output dict:
`reconstruction` (B, H, W, 3) (unclipped), and `likelihoods` with `side` (z) and `base` (y):
single-layer models have only a base layer besides the side information.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jdc_jax.entropy.factorized import FactorizedPrior
from jdc_jax.models import transforms
from jdc_jax.models.entropy_parameters import GroupEntropyParameters
from jdc_jax.models.pieces import CodecPieces


class Hyperprior(CodecPieces, nn.Module):
    channels: int = 192               # N: transform width
    latent_channels: int = 192        # M: channels of y
    context_model: str = "none"       # "none" (hyperprior only), "serial" or "checkerboard"
    denoising_layers: int = 0         # 4 gives Testolina et al.'s decoder-side denoising head
    decoder_input: str = "ste"        # training quantization of the decoder input: "ste"/"noise"
    dtype: Any = jnp.float32          # convolution compute dtype (float32 or bfloat16)
    parameter_network: bool = True    # False: (mean, scale) are the two halves of psi
    stored_medians: bool = False      # the side prior's medians are stored, not solved
    prior_filters: tuple = (3, 3, 3)  # hidden widths of the factorized prior's CDF network

    kind = "hyperprior"
    streams = ("side", "base")
    outputs = ("reconstruction",)

    def setup(self):
        self.g_a = transforms.BalleAnalysis(self.channels, self.latent_channels, self.dtype)
        self.h_a = transforms.MeanScaleHyperAnalysis(self.channels, self.dtype)
        self.side_prior = FactorizedPrior(filters=self.prior_filters, stored_medians=self.stored_medians)
        self.h_s = transforms.MeanScaleHyperSynthesis(self.latent_channels, self.dtype)
        self.base_parameters = GroupEntropyParameters(
            self.latent_channels, 2 * self.latent_channels, 0, self.context_model, self.dtype,
            parameter_network=self.parameter_network)
        if self.denoising_layers:
            if self.denoising_layers != 4:
                raise ValueError("Testolina et al.'s denoising head has exactly 4 layers")
            self.head = transforms.DenoisingHead(self.channels, self.dtype)
        self.g_s = transforms.BalleSynthesis(self.channels, self.dtype)

    def synthesize(self, y_hat, output: str = "reconstruction"):
        h = y_hat.astype(self.dtype)
        if self.denoising_layers:
            h = self.head(h)
        return self.g_s(h).astype(jnp.float32)

    def __call__(self, x, *, train: bool = False):
        return self.single_layer_forward(x, train=train)
