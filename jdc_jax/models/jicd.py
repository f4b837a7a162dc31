"""JICD: joint image compression and denoising via latent-space scalability.

Ranjbar Alvar, Ulhaq, Choi, Bajic, Front. Signal Process. 2022. A Cheng2020-anchor codec (no
attention) whose latent y (M channels) is split into a base layer, the first `base_channels`
channels, and an enhancement layer, the remaining M - base_channels:

    y = g_a(x_noisy);  z = h_a(y);  psi = h_s(z_hat)                      side stream (z)
    (mean_b, scale_b) = EP_b(psi, ctx(y_hat_b))                          base stream
    (mean_e, scale_e) = EP_e(psi, ctx(y_hat_e), y_hat_b)                 enhancement stream
    denoised             = g_s_base(y_hat_b)
    noisy_reconstruction = g_s_full(concat(y_hat_b, y_hat_e))

The base layer's context and entropy parameters see only base channels and the hyperprior, so
the denoised image decodes from the side and base streams alone. The enhancement layer's see the
hyperprior, the enhancement context and the decoded base latent.

Input x: (B, H, W, 3) float in [0, 1], H and W multiples of 64. Output dict: `denoised`,
`noisy_reconstruction` (B, H, W, 3), and `likelihoods` with `side`, `base`, `enhancement`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jdc_jax.entropy.factorized import FactorizedPrior
from jdc_jax.models import transforms
from jdc_jax.models.entropy_parameters import GroupEntropyParameters
from jdc_jax.models.pieces import CodecPieces


class JICD(CodecPieces, nn.Module):
    channels: int = 192           # N: transform width
    latent_channels: int = 192    # M: channels of y (base + enhancement)
    base_channels: int = 180      # channels of the base layer (presets 190, 180, 160)
    context_model: str = "serial"  # "serial" (paper), "checkerboard" or "none"
    decoder_input: str = "ste"    # training quantization of the decoder input: "ste"/"noise"
    dtype: Any = jnp.float32
    stored_medians: bool = False  # the side prior's medians are stored, not solved
    prior_filters: tuple = (3, 3, 3)  # hidden widths of the factorized prior's CDF network

    kind = "jicd"
    streams = ("side", "base", "enhancement")
    outputs = ("denoised", "noisy_reconstruction")

    @property
    def enhancement_channels(self) -> int:
        return self.latent_channels - self.base_channels

    def setup(self):
        if not 0 < self.base_channels < self.latent_channels:
            raise ValueError(f"base_channels must be in [1, latent_channels - 1] = "
                             f"[1, {self.latent_channels - 1}], got {self.base_channels}")
        m, hyper = self.latent_channels, 2 * self.latent_channels
        self.g_a = transforms.ChengAnalysis(self.channels, m, self.dtype)
        self.h_a = transforms.ChengHyperAnalysis(self.channels, self.dtype)
        self.side_prior = FactorizedPrior(filters=self.prior_filters, stored_medians=self.stored_medians)
        self.h_s = transforms.ChengHyperSynthesis(m, self.dtype)
        self.base_parameters = GroupEntropyParameters(
            self.base_channels, hyper, 0, self.context_model, self.dtype)
        self.enhancement_parameters = GroupEntropyParameters(
            self.enhancement_channels, hyper, self.base_channels, self.context_model, self.dtype)
        self.g_s_base = transforms.ChengSynthesis(self.channels, self.dtype)
        self.g_s_full = transforms.ChengSynthesis(self.channels, self.dtype)

    def split(self, y):
        return y[..., :self.base_channels], y[..., self.base_channels:]

    def synthesize(self, y_hat_base, y_hat_enhancement=None, output: str = "denoised"):
        """`denoised` from the base latent alone; `noisy_reconstruction` from both."""
        if output == "denoised":
            return self.g_s_base(y_hat_base.astype(self.dtype)).astype(jnp.float32)
        if output == "noisy_reconstruction":
            if y_hat_enhancement is None:
                raise ValueError("the noisy reconstruction needs the enhancement latent")
            full = jnp.concatenate([y_hat_base, y_hat_enhancement], axis=-1)
            return self.g_s_full(full.astype(self.dtype)).astype(jnp.float32)
        raise ValueError(f"unknown output {output!r}; expected one of {self.outputs}")

    def __call__(self, x, *, train: bool = False):
        y = self.analysis(x)
        return self.model_latent(y, self.hyper_analysis(y), train=train)

    def model_latent(self, y, z, *, train: bool = False):
        """Everything after the analysis transforms: quantization, entropy models, synthesis.

        Split out so tests can perturb one layer of y with z held fixed."""
        z_hat, side_likelihoods = self.side_prior(z, mode="noise" if train else "round")
        psi = self.hyper_synthesis(z_hat)
        y_base, y_enhancement = self.split(y)
        y_hat_base, base_likelihoods, _, _ = self.base_parameters.quantize_and_model(
            psi, y_base, train=train, decoder_input=self.decoder_input)
        y_hat_enhancement, enhancement_likelihoods, _, _ = (
            self.enhancement_parameters.quantize_and_model(
                psi, y_enhancement, y_hat_base, train=train, decoder_input=self.decoder_input))
        return {
            "denoised": self.synthesize(y_hat_base, output="denoised"),
            "noisy_reconstruction": self.synthesize(y_hat_base, y_hat_enhancement,
                                                    output="noisy_reconstruction"),
            "likelihoods": {"side": side_likelihoods, "base": base_likelihoods,
                            "enhancement": enhancement_likelihoods},
        }
