"""FFDNet (Zhang, Zuo & Zhang 2018, "FFDNet: toward a fast and flexible solution for CNN-based
image denoising"): one denoiser for a range of noise levels, told the level of each image.

    sub-images = space_to_depth(x, 2)                  (B, H/2, W/2, 12)
    h = concat(sub-images, sigma map)                   + 1 channel: the noise level sigma/255
    h = (conv3x3 -> ReLU) x (depth - 1);  conv3x3 -> 12 channels
    denoised = depth_to_space(h, 2)                     (B, H, W, 3)

The network works at half resolution (a 4x smaller activation than DnCNN's for the same width)
and predicts the clean image directly, not the residual. The JICD paper's cascade uses
"FFDNet-clip": trained on noisy images that were clipped to [0, 255] and quantized, as camera
images are, over a range of sigma (`configs/denoiser.py:campaign_ffdnet`), and given the true
sigma (AWGN) or the std of noisy - clean (other noise) at evaluation. The paper's colour model
has 12 layers of 96 channels; `depth` and `features` set the size here.

Input x: (B, H, W, 3) in [0, 1], H and W even; noise_level: (B,) or scalar, sigma / 255.
Output dict {"denoised": (B, H, W, 3)}, unclipped.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jdc_jax.layers.conv import conv, depth_to_space, space_to_depth


class FFDNet(nn.Module):
    depth: int = 12               # number of 3x3 conv layers
    features: int = 96            # width of the hidden layers
    dtype: Any = jnp.float32

    kind = "ffdnet"
    streams = ()
    outputs = ("denoised",)
    takes_noise_level = True

    @nn.compact
    def __call__(self, x, noise_level=None, *, train: bool = False):
        if self.depth < 2:
            raise ValueError(f"FFDNet depth must be >= 2, got {self.depth}")
        if noise_level is None:
            if not self.is_initializing():
                raise ValueError("FFDNet needs the noise level of each image (sigma / 255)")
            noise_level = 0.0
        if x.shape[1] % 2 or x.shape[2] % 2:
            raise ValueError(f"FFDNet needs an even height and width, got {x.shape[1:3]}")
        h = space_to_depth(x.astype(self.dtype), 2)
        level = jnp.broadcast_to(jnp.asarray(noise_level, self.dtype).reshape(-1, 1, 1, 1),
                                 h.shape[:3] + (1,))
        h = jnp.concatenate([h, level], axis=-1)
        for i in range(self.depth - 1):
            h = nn.relu(conv(self.features, 3, dtype=self.dtype, name=f"conv{i}")(h))
        h = conv(12, 3, dtype=self.dtype, name=f"conv{self.depth - 1}")(h)
        return {"denoised": depth_to_space(h, 2).astype(jnp.float32)}
