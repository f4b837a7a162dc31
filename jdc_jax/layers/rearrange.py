"""Pixel rearrangements between space and channels (sub-pixel convolution, FFDNet), in plain
JAX: they run on float and integer arrays alike, and model-free code (the integer entropy path
an exported package runs) uses them without Flax."""

from __future__ import annotations

import jax


def depth_to_space(x: jax.Array, block_size: int) -> jax.Array:
    """(B, H, W, r*r*C) -> (B, H*r, W*r, C) with the channel order of `tf.nn.depth_to_space`.

    output[b, h*r + i, w*r + j, c] = x[b, h, w, (i*r + j)*C + c], r = block_size.
    """
    if x.ndim != 4:
        raise ValueError(f"depth_to_space expects NHWC input, got shape {x.shape}")
    if block_size < 1:
        raise ValueError(f"depth_to_space: block_size must be positive, got {block_size}")
    batch, height, width, channels = x.shape
    if channels % (block_size * block_size):
        raise ValueError(f"depth_to_space: {channels} channels are not divisible by "
                         f"block_size^2 = {block_size * block_size}")
    out_channels = channels // (block_size * block_size)
    x = x.reshape(batch, height, width, block_size, block_size, out_channels)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, height * block_size, width * block_size, out_channels)


def space_to_depth(x: jax.Array, block_size: int) -> jax.Array:
    """(B, H*r, W*r, C) -> (B, H, W, r*r*C), the inverse of `depth_to_space`.

    output[b, h, w, (i*r + j)*C + c] = x[b, h*r + i, w*r + j, c], r = block_size.
    """
    if x.ndim != 4:
        raise ValueError(f"space_to_depth expects NHWC input, got shape {x.shape}")
    if block_size < 1:
        raise ValueError(f"space_to_depth: block_size must be positive, got {block_size}")
    batch, height, width, channels = x.shape
    if height % block_size or width % block_size:
        raise ValueError(f"space_to_depth: spatial size {height}x{width} is not divisible by "
                         f"block_size {block_size}")
    x = x.reshape(batch, height // block_size, block_size, width // block_size, block_size,
                  channels)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, height // block_size, width // block_size,
                     block_size * block_size * channels)
