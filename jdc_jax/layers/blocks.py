"""Residual blocks of the Cheng et al. 2020 "anchor" transforms, without attention.

Cheng, Sun, Takeuchi, Katto, "Learned image compression with discretized Gaussian mixture
likelihoods and attention modules", CVPR 2020, Fig. 2. All blocks take and return NHWC arrays.

- `ResidualBlock`: conv3x3 -> LeakyReLU -> conv3x3 -> LeakyReLU, plus the input (through a 1x1
  conv when the channel count changes).
- `ResidualBlockWithStride`: conv3x3 stride 2 -> LeakyReLU -> conv3x3 -> GDN, plus a 1x1 stride-2
  conv of the input. Halves H and W (ceil).
- `ResidualBlockUpsample`: sub-pixel conv3x3 (x2) -> LeakyReLU -> conv3x3 -> IGDN, plus a
  sub-pixel conv3x3 of the input. Doubles H and W. No transposed convolution is used anywhere,
  because XLA:CPU differentiates transposed convolutions about 200x slower than their forward.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jdc_jax.layers.conv import SubPixelConv, conv
from jdc_jax.layers.gdn import GDN, IGDN

LEAKY_SLOPE = 0.01  # LeakyReLU slope of the reference transforms (PyTorch default)


def leaky_relu(x):
    return nn.leaky_relu(x, LEAKY_SLOPE)


class ResidualBlock(nn.Module):
    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        identity = x
        if x.shape[-1] != self.features:
            identity = conv(self.features, 1, dtype=self.dtype, name="skip")(x)
        out = leaky_relu(conv(self.features, 3, dtype=self.dtype, name="conv1")(x))
        out = leaky_relu(conv(self.features, 3, dtype=self.dtype, name="conv2")(out))
        return out + identity


class ResidualBlockWithStride(nn.Module):
    features: int
    stride: int = 2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        out = leaky_relu(conv(self.features, 3, self.stride, dtype=self.dtype, name="conv1")(x))
        out = conv(self.features, 3, dtype=self.dtype, name="conv2")(out)
        out = GDN(name="gdn")(out)
        identity = conv(self.features, 1, self.stride, dtype=self.dtype, name="skip")(x)
        return out + identity.astype(out.dtype)


class ResidualBlockUpsample(nn.Module):
    features: int
    upsample: int = 2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        out = leaky_relu(SubPixelConv(self.features, 3, self.upsample, dtype=self.dtype,
                                      name="subpel_conv")(x))
        out = conv(self.features, 3, dtype=self.dtype, name="conv")(out)
        out = IGDN(name="igdn")(out)
        identity = SubPixelConv(self.features, 3, self.upsample, dtype=self.dtype,
                                name="upsample")(x)
        return out + identity.astype(out.dtype)
