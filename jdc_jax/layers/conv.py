"""Convolution layers for analysis and synthesis transforms (NHWC activations, HWIO kernels).

Padding convention. Every layer pads symmetrically, as the reference PyTorch implementations of
the Balle, Minnen and Cheng models do (CompressAI's `conv(k, stride)` pads k // 2 on each side):
a stride-s layer puts output position o on input position s * o (convolution) and input
position i on output position s * i (transposed convolution). The convolution and its transpose
are then exact adjoints of each other, and a strided main path stays aligned with its 1x1
strided skip in residual blocks. (TensorFlow's "SAME" pads (k - 1) // 2 before and the rest
after a stride-2 input, which shifts every stride-2 layer by one input pixel.)

- `conv`: an odd k x k convolution padding (k - 1) // 2 on each side, so H -> ceil(H / stride).
- `depth_to_space` / `space_to_depth`: the channel <-> pixel shuffles of `tf.nn.depth_to_space`.
- `SubPixelConv`: upsampling by a stride-1 convolution followed by depth_to_space
  (Shi et al., "Real-time single image and video super-resolution using an efficient sub-pixel
  convolutional neural network", CVPR 2016).
- `TransposedConv`: the stride-s transposed convolution (output H*s x W*s), computed without
  conv_transpose by phase decomposition,
  because XLA:CPU differentiates conv_transpose tens of times slower than it runs it forward
  (benchmarks/bench_transposed_conv.py).
- `MaskedConv`: the causal (raster-order) convolution of PixelCNN-style context models
  (van den Oord et al. 2016; Minnen et al., "Joint autoregressive and hierarchical priors", 2018).

The layers are unit-free: they map activations (B, H, W, C) to activations. Their `dtype` is the
computation dtype; parameters are always stored in float32.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jdc_jax.layers.causal_mask import masked_conv_mask  # noqa: F401 (re-exported)
from jdc_jax.layers.rearrange import depth_to_space, space_to_depth  # noqa: F401 (re-exported)

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def conv(features: int, kernel_size: int = 3, stride: int = 1, dtype: Any = jnp.float32,
         name: str | None = None) -> nn.Conv:
    """An odd k x k convolution with a bias, stride `stride` and (k - 1) // 2 zeros on each side.

    Output (B, ceil(H / stride), ceil(W / stride), features) for any H and W; output position o
    reads the input window centred on stride * o. This is PyTorch's
    `Conv2d(k, stride=stride, padding=k // 2)`, so its kernel is the PyTorch weight transposed
    from OIHW to HWIO; for stride 1 it is also "SAME". The 5x5 stride-2 downsampling layers of
    the Balle 2018 analysis transform are `conv(N, 5, 2)`.
    """
    if features < 1 or kernel_size < 1 or stride < 1:
        raise ValueError("conv: features, kernel_size and stride must be positive, got "
                         f"{features}, {kernel_size}, {stride}")
    if kernel_size % 2 == 0:
        raise ValueError(f"conv: kernel_size must be odd (symmetric padding), got {kernel_size}")
    pad = (kernel_size - 1) // 2
    return nn.Conv(features, (kernel_size, kernel_size), strides=(stride, stride),
                   padding=((pad, pad), (pad, pad)), dtype=dtype, param_dtype=jnp.float32,
                   name=name)


class SubPixelConv(nn.Module):
    """Upsampling: a k x k stride-1 "SAME" conv to features*r^2 channels, then depth_to_space(r).

    Input (B, H, W, C_in) -> output (B, H*r, W*r, features), r = upscale.
    """
    features: int
    kernel_size: int = 3
    upscale: int = 2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.upscale < 1:
            raise ValueError(f"SubPixelConv: upscale must be positive, got {self.upscale}")
        y = conv(self.features * self.upscale**2, self.kernel_size, 1, dtype=self.dtype,
                 name="conv")(x)
        return depth_to_space(y, self.upscale)


def transposed_conv_padding(kernel_size: int, stride: int) -> tuple[int, int]:
    """(before, after): the zeros around the stride-dilated input that make the transposed
    convolution the adjoint of `conv(kernel_size, stride)` with output H * stride.

    That convolution reads input s*o - p + t (p = (k - 1) // 2) with tap t; its adjoint, written
    as a cross-correlation of the dilated input with the spatially flipped kernel, needs
    k - 1 - p zeros before it, and k + s - 2 - (k - 1 - p) after it for H * s outputs. For k = 5,
    s = 2 this is (2, 3), PyTorch's `ConvTranspose2d(5, stride=2, padding=2, output_padding=1)`.
    """
    before = kernel_size - 1 - (kernel_size - 1) // 2
    return before, kernel_size + stride - 2 - before


def _phase_taps(kernel_size: int, stride: int) -> tuple[np.ndarray, int]:
    """Which taps of a k-tap kernel each output phase uses, along one spatial axis.

    The transposed convolution is a cross-correlation (no kernel flip) of the input, dilated by
    s and preceded by P = `transposed_conv_padding(k, s)[0]` zeros:
        y[o] = sum_t K[t] * x[(o + t - P) / s]     (terms with a non-integer index vanish).
    For the output phase phi = o mod s (o = q*s + phi) only the taps t = t0 + l*s with
    t0 = (P - phi) mod s contribute, and they read x[q + d + l] with d = (phi + t0 - P) / s.
    So each phase is a stride-1 cross-correlation of x with the sub-sampled kernel K[t0::s],
    shifted by d. Padding x by `pad_before` zeros aligns all phases in one window of T taps.

    Returns:
      taps: int array (T, s); taps[u, phi] is the kernel tap at window position u for phase
        phi, or k (one past the kernel, read as zero) where that phase has no tap.
      pad_before: zeros before the input; T - 1 - pad_before zeros go after it.
    """
    pad = transposed_conv_padding(kernel_size, stride)[0]
    phases = []  # (phase, first tap, number of taps, shift d)
    for phase in range(stride):
        first_tap = (pad - phase) % stride
        num_taps = len(range(first_tap, kernel_size, stride))
        if num_taps:  # a phase has no taps only when k < s: its outputs are all zero
            phases.append((phase, first_tap, num_taps, (phase + first_tap - pad) // stride))
    pad_before = max(-shift for _, _, _, shift in phases)
    window = max(shift + num_taps for _, _, num_taps, shift in phases) + pad_before
    taps = np.full((window, stride), kernel_size, dtype=np.int32)
    for phase, first_tap, num_taps, shift in phases:
        for tap in range(num_taps):
            taps[shift + pad_before + tap, phase] = first_tap + tap * stride
    return taps, pad_before


def phase_kernel(kernel: jax.Array, stride: int) -> tuple[jax.Array, tuple[int, int]]:
    """The stride-1 kernel whose output, after depth_to_space(stride), is the transposed conv.

    Args:
      kernel: (k, k, C_in, F), the kernel of lax.conv_transpose (HWIO, as given, not flipped)
        with the padding of `transposed_conv_padding`.
      stride: s >= 1.

    Returns:
      The (T, T, C_in, s*s*F) kernel whose channel (phi_h*s + phi_w)*F + f gives output
      phase (phi_h, phi_w) of feature f (T = 3 for k = 5, s = 2), and the (before, after) zero
      padding of the input along H and along W.
    """
    if kernel.ndim != 4 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(
            f"phase_kernel expects a square (k, k, C_in, F) kernel, got shape {kernel.shape}")
    if stride < 1:
        raise ValueError(f"phase_kernel: stride must be positive, got {stride}")
    kernel_size, _, in_channels, features = kernel.shape
    taps, pad_before = _phase_taps(kernel_size, stride)
    window = taps.shape[0]
    # A zero tap appended to each spatial axis stands for every "no tap" entry; a gather keeps
    # the phase kernel an exact copy of the taps (no arithmetic).
    padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
    gathered = padded[taps[:, None, :, None], taps[None, :, None, :]]  # (T, T, s, s, C_in, F)
    gathered = gathered.transpose(0, 1, 4, 2, 3, 5)
    phases = gathered.reshape(window, window, in_channels, stride * stride * features)
    return phases, (pad_before, window - 1 - pad_before)


class TransposedConv(nn.Module):
    """Exact transposed convolution, (B, H, W, C_in) -> (B, H*s, W*s, features):

        y = lax.conv_transpose(x, kernel, strides=(s, s), padding=(pad, pad),
                               dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias

    with pad = `transposed_conv_padding(k, s)` and the parameter `kernel` of shape
    (k, k, C_in, features), as in the upsampling layers of the Balle 2018 synthesis transform.
    Input position i lands on output position s * i. A PyTorch `ConvTranspose2d(k, stride=s,
    padding=k // 2, output_padding=s - 1)` weight W (C_in, F, k, k) is this layer's kernel as
    W[:, :, ::-1, ::-1] transposed to (k, k, C_in, F) (for odd k). It is computed as one stride-1 convolution with
    `phase_kernel(kernel, s)` (3x3 with 4 * features outputs for k = 5, s = 2) followed by
    depth_to_space(s); its gradient costs about as much as its forward pass.
    """
    features: int
    kernel_size: int = 5
    strides: int = 2
    use_bias: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"TransposedConv expects NHWC input, got shape {x.shape}")
        if self.features < 1 or self.kernel_size < 1 or self.strides < 1:
            raise ValueError("TransposedConv: features, kernel_size and strides must be positive, "
                             f"got {self.features}, {self.kernel_size}, {self.strides}")
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (self.kernel_size, self.kernel_size, x.shape[-1], self.features),
                            jnp.float32)
        bias = (self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
                if self.use_bias else None)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        phases, padding = phase_kernel(kernel, self.strides)
        y = jax.lax.conv_general_dilated(x, phases, window_strides=(1, 1),
                                         padding=(padding, padding),
                                         dimension_numbers=_DIMENSION_NUMBERS)
        y = depth_to_space(y, self.strides)
        return y if bias is None else y + bias


class MaskedConv(nn.Module):
    """Stride-1 "SAME" convolution whose kernel is multiplied by `masked_conv_mask`.

    Output position p depends only on the input positions before p in raster order inside its
    k x k window (and on p itself for mask_type "B").
    Input (B, H, W, C_in) -> output (B, H, W, features).
    """
    features: int
    kernel_size: int = 5
    mask_type: str = "A"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"MaskedConv expects NHWC input, got shape {x.shape}")
        mask = masked_conv_mask(self.kernel_size, self.mask_type)
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (self.kernel_size, self.kernel_size, x.shape[-1], self.features),
                            jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        kernel = kernel * jnp.asarray(mask, kernel.dtype)[:, :, None, None]
        y = jax.lax.conv_general_dilated(x, kernel, window_strides=(1, 1), padding="SAME",
                                         dimension_numbers=_DIMENSION_NUMBERS)
        return y + bias
