"""DnCNN / FFDNet-style Flax denoiser: the denoising half of the "codec, then denoiser" cascade
baseline and the "denoiser on the raw noisy image" baseline.

Zhang et al. 2017 (DnCNN): `depth` 3x3 convolutions of `features` channels with ReLU between,
predicting the noise residual, so denoised = noisy - residual. Batch normalization is left out
(it adds state and gives no benefit at this scale). With `noise_level_input` the network also
takes a constant noise-level map sigma/255 as a fourth input channel, as FFDNet does (Zhang et al.
2018), which lets one model serve several noise levels when sigma is known.

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
    noise_level_input: bool = False  # FFDNet-style sigma map as an extra input channel
    dtype: Any = jnp.float32

    kind = "denoiser"
    streams = ()
    outputs = ("denoised",)

    @nn.compact
    def __call__(self, x, *, train: bool = False, noise_level=None):
        if self.depth < 2:
            raise ValueError(f"denoiser depth must be >= 2, got {self.depth}")
        h = x.astype(self.dtype)
        if self.noise_level_input:
            if noise_level is None:
                raise ValueError("this denoiser takes a noise level (sigma / 255) as input")
            level = jnp.broadcast_to(jnp.asarray(noise_level, self.dtype).reshape(-1, 1, 1, 1),
                                     x.shape[:3] + (1,))
            h = jnp.concatenate([h, level], axis=-1)
        for i in range(self.depth - 1):
            h = nn.relu(conv(self.features, 3, dtype=self.dtype, name=f"conv{i}")(h))
        residual = conv(3, 3, dtype=self.dtype, name=f"conv{self.depth - 1}")(h)
        return {"denoised": (x - residual.astype(jnp.float32)).astype(jnp.float32)}
