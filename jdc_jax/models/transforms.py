"""Analysis, synthesis and hyper transforms, as Flax modules.

Two families:

- Balle et al. 2018 / Minnen et al. 2018 ("mbt2018-mean"): four 5x5 stride-2 convolutions with
  GDN; the synthesis mirrors them with *exact* 5x5 stride-2 transposed convolutions (computed by
  phase decomposition, `layers.conv.TransposedConv`) and IGDN. The mean-scale hyper analysis is
  conv3x3 -> conv5x5/2 -> conv5x5/2 (LeakyReLU between), the hyper synthesis mirrors it and ends
  with a 3x3 conv to 2M channels (mean and scale).
- Cheng et al. 2020 anchor without attention (`layers.blocks`): the analysis stacks stride-2
  residual blocks, the synthesis sub-pixel upsampling residual blocks; the hyper transforms use
  3x3 convolutions with two stride-2 steps and sub-pixel upsampling.

Shapes: an image (B, H, W, 3) with H, W multiples of 64 gives y (B, H/16, W/16, M) and
z (B, H/64, W/64, N); the hyper synthesis returns (B, H/16, W/16, 2M).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jdc_jax.layers.blocks import (ResidualBlock, ResidualBlockUpsample, ResidualBlockWithStride,
                                   conv, leaky_relu)
from jdc_jax.layers.conv import SubPixelConv, TransposedConv
from jdc_jax.layers.gdn import GDN, IGDN


class BalleAnalysis(nn.Module):
    """x (B, H, W, 3) in [0, 1] -> y (B, H/16, W/16, M)."""
    channels: int = 192          # N
    latent_channels: int = 192   # M
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        for i in range(3):
            x = conv(self.channels, 5, 2, dtype=self.dtype, name=f"conv{i}")(x)
            x = GDN(name=f"gdn{i}")(x)
        return conv(self.latent_channels, 5, 2, dtype=self.dtype, name="conv3")(x)


class BalleSynthesis(nn.Module):
    """y_hat (B, h, w, C) -> image (B, 16h, 16w, 3) (not clipped)."""
    channels: int = 192
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, y):
        for i in range(3):
            y = TransposedConv(self.channels, 5, 2, dtype=self.dtype, name=f"tconv{i}")(y)
            y = IGDN(name=f"igdn{i}")(y)
        return TransposedConv(3, 5, 2, dtype=self.dtype, name="tconv3")(y)


class ScaleHyperAnalysis(nn.Module):
    """Balle et al. 2018's scale hyperprior: |y| (B, h, w, M) -> z (B, h/4, w/4, N), with
    conv3x3 -> ReLU -> conv5x5/2 -> ReLU -> conv5x5/2."""
    channels: int = 192
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, y):
        y = jnp.abs(y)
        y = nn.relu(conv(self.channels, 3, 1, dtype=self.dtype, name="conv0")(y))
        y = nn.relu(conv(self.channels, 5, 2, dtype=self.dtype, name="conv1")(y))
        return conv(self.channels, 5, 2, dtype=self.dtype, name="conv2")(y)


class ScaleHyperSynthesis(nn.Module):
    """z_hat (B, h/4, w/4, N) -> scales (B, h, w, M) >= 0: two transposed 5x5/2 convolutions
    (N channels) and a 3x3 convolution to M, each followed by ReLU."""
    channels: int = 192
    latent_channels: int = 192
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z):
        z = nn.relu(TransposedConv(self.channels, 5, 2, dtype=self.dtype, name="tconv0")(z))
        z = nn.relu(TransposedConv(self.channels, 5, 2, dtype=self.dtype, name="tconv1")(z))
        return nn.relu(conv(self.latent_channels, 3, 1, dtype=self.dtype, name="conv2")(z))


class MeanScaleHyperAnalysis(nn.Module):
    """y (B, h, w, M) -> z (B, h/4, w/4, N)."""
    channels: int = 192
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, y):
        y = leaky_relu(conv(self.channels, 3, 1, dtype=self.dtype, name="conv0")(y))
        y = leaky_relu(conv(self.channels, 5, 2, dtype=self.dtype, name="conv1")(y))
        return conv(self.channels, 5, 2, dtype=self.dtype, name="conv2")(y)


class MeanScaleHyperSynthesis(nn.Module):
    """z_hat (B, h/4, w/4, N) -> hyper parameters psi (B, h, w, 2M)."""
    latent_channels: int = 192
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z):
        m = self.latent_channels
        z = leaky_relu(TransposedConv(m, 5, 2, dtype=self.dtype, name="tconv0")(z))
        z = leaky_relu(TransposedConv(m * 3 // 2, 5, 2, dtype=self.dtype, name="tconv1")(z))
        return conv(2 * m, 3, 1, dtype=self.dtype, name="conv2")(z)


class ChengAnalysis(nn.Module):
    """x (B, H, W, 3) -> y (B, H/16, W/16, M)."""
    channels: int = 192
    latent_channels: int = 192
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        n = self.channels
        for i in range(3):
            x = ResidualBlockWithStride(n, dtype=self.dtype, name=f"rbs{i}")(x)
            x = ResidualBlock(n, dtype=self.dtype, name=f"rb{i}")(x)
        return conv(self.latent_channels, 3, 2, dtype=self.dtype, name="conv_out")(x)


class ChengSynthesis(nn.Module):
    """y_hat (B, h, w, C) -> image (B, 16h, 16w, 3) (not clipped). C may be any width (the JICD
    base decoder sees only the base channels)."""
    channels: int = 192
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, y):
        n = self.channels
        for i in range(3):
            y = ResidualBlock(n, dtype=self.dtype, name=f"rb{i}")(y)
            y = ResidualBlockUpsample(n, dtype=self.dtype, name=f"rbu{i}")(y)
        y = ResidualBlock(n, dtype=self.dtype, name="rb3")(y)
        return SubPixelConv(3, 3, 2, dtype=self.dtype, name="subpel_out")(y)


class ChengHyperAnalysis(nn.Module):
    """y (B, h, w, M) -> z (B, h/4, w/4, N)."""
    channels: int = 192
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, y):
        n = self.channels
        y = leaky_relu(conv(n, 3, 1, dtype=self.dtype, name="conv0")(y))
        y = leaky_relu(conv(n, 3, 1, dtype=self.dtype, name="conv1")(y))
        y = leaky_relu(conv(n, 3, 2, dtype=self.dtype, name="conv2")(y))
        y = leaky_relu(conv(n, 3, 1, dtype=self.dtype, name="conv3")(y))
        return conv(n, 3, 2, dtype=self.dtype, name="conv4")(y)


class ChengHyperSynthesis(nn.Module):
    """z_hat (B, h/4, w/4, N) -> psi (B, h, w, 2M)."""
    latent_channels: int = 192
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z):
        m = self.latent_channels
        z = leaky_relu(conv(m, 3, 1, dtype=self.dtype, name="conv0")(z))
        z = leaky_relu(SubPixelConv(m, 3, 2, dtype=self.dtype, name="subpel0")(z))
        z = leaky_relu(conv(m * 3 // 2, 3, 1, dtype=self.dtype, name="conv1")(z))
        z = leaky_relu(SubPixelConv(m * 3 // 2, 3, 2, dtype=self.dtype, name="subpel1")(z))
        return conv(2 * m, 3, 1, dtype=self.dtype, name="conv2")(z)


class DenoisingHead(nn.Module):
    """Testolina et al. 2021: four 5x5 stride-1 conv+ReLU layers (M -> N, then N -> N three
    times) at the start of the decoder, operating on the quantized latent."""
    channels: int = 192
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, y):
        for i in range(4):
            y = nn.relu(conv(self.channels, 5, 1, dtype=self.dtype, name=f"conv{i}")(y))
        return y
