"""DnCNN-style Flax denoiser for one noise level (or a blind one): the "denoiser on the raw noisy
image" baseline and the JDC teacher. `models.ffdnet` is the denoiser told the noise level.

Zhang et al. 2017 (DnCNN): `depth` 3x3 convolutions of `features` channels with ReLU between,
predicting the noise residual, so denoised = noisy - residual. Batch normalization is left out
(it adds state and gives no benefit at this scale).

Input (B, H, W, 3) float in [0, 1] (any H, W); output dict {"denoised": (B, H, W, 3)}, unclipped.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jdc_jax.layers.blocks import conv


class Denoiser(nn.Module):
    depth: int = 17               # number of 3x3 conv layers
    features: int = 64            # width of the hidden layers
    dtype: Any = jnp.float32

    kind = "denoiser"
    streams = ()
    outputs = ("denoised",)

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        if self.depth < 2:
            raise ValueError(f"denoiser depth must be >= 2, got {self.depth}")
        h = x.astype(self.dtype)
        for i in range(self.depth - 1):
            h = nn.relu(conv(self.features, 3, dtype=self.dtype, name=f"conv{i}")(h))
        residual = conv(3, 3, dtype=self.dtype, name=f"conv{self.depth - 1}")(h)
        return {"denoised": (x - residual.astype(jnp.float32)).astype(jnp.float32)}
