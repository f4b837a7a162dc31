"""The integer entropy-parameter network evaluated with XLA integer operations.

Every operation is an int32 addition, multiplication, floor division, comparison, clip, pad,
reshape or concatenation, so CPU, GPU and TPU compute bit-identical results, jitted or op by op,
with any thread count. Convolutions are written as one integer matrix product of the im2col
patches (`lax.dot_general` on int32 with int32 accumulation): XLA's GPU backend has no integer
convolution, while integer matrix products run on every backend. Accumulators cannot overflow:
`network.IntegerEntropyModel.check_bounds` proves a bound below 2^31 for every input.

Shapes are NHWC (batch 1 in the codec) for the parallel functions and (n, ...) for the serial
context's front of n positions. Outputs: (mean_fixed, scale_index), int32, each (..., C).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jdc_jax.integer.network import (LEAKY_DIVISOR, IntegerEntropyModel, IntegerHead,
                                     IntegerLayer)
from jdc_jax.layers.causal_mask import checkerboard_anchors
from jdc_jax.layers.rearrange import depth_to_space


def round_div(accumulator, divisor):
    """floor((accumulator + floor(divisor / 2)) / divisor), int32, divisor >= 1: division
    rounding to nearest, halves up."""
    return jnp.floor_divide(accumulator + divisor // 2, divisor)


def accumulate(x, kernel, bias, padding):
    """Stride-1 cross-correlation of int32 x (B, H, W, C) with an int32 (k, k, C, F) kernel,
    zero-padded by padding = (before, after) on H and W, plus bias: (B, H', W', F) int32."""
    k = kernel.shape[0]
    before, after = padding
    if before or after:
        x = jnp.pad(x, ((0, 0), (before, after), (before, after), (0, 0)))
    height, width = x.shape[1] - k + 1, x.shape[2] - k + 1
    if k == 1:
        patches = x
    else:
        patches = jnp.concatenate([x[:, i: i + height, j: j + width, :]
                                   for i in range(k) for j in range(k)], axis=-1)
    matrix = jnp.asarray(kernel.reshape(-1, kernel.shape[-1]), jnp.int32)
    product = jax.lax.dot_general(patches.astype(jnp.int32), matrix,
                                  (((patches.ndim - 1,), (0,)), ((), ())),
                                  preferred_element_type=jnp.int32)
    return product + jnp.asarray(bias, jnp.int32)


def apply_layer(layer: IntegerLayer, x):
    """One `IntegerLayer` on int32 x (B, H, W, C_in)."""
    accumulator = accumulate(x, layer.kernel, layer.bias, layer.padding)
    divisor = jnp.asarray(layer.divisor, jnp.int32)
    out = round_div(accumulator, divisor)
    if layer.activation == "relu":
        out = jnp.maximum(out, 0)
    elif layer.activation == "leaky_relu":
        out = jnp.where(accumulator >= 0, out, round_div(accumulator, divisor * LEAKY_DIVISOR))
    out = jnp.clip(out, jnp.asarray(layer.lower), jnp.asarray(layer.upper))
    return depth_to_space(out, layer.upscale) if layer.upscale > 1 else out


def apply_head(head: IntegerHead, x):
    """(mean_fixed, scale_index) int32 (B, H, W, C) of the head on x (B, H, W, C_in)."""
    accumulator = accumulate(x, head.kernel, head.bias, head.padding)
    channels = head.channels
    scale_accumulator = accumulator[..., -channels:]
    index = jnp.sum(scale_accumulator[..., None] > jnp.asarray(head.scale_thresholds),
                    axis=-1, dtype=jnp.int32)
    if not head.predicts_mean:
        return jnp.zeros_like(index), index
    mean = round_div(accumulator[..., :channels], jnp.asarray(head.mean_divisor))
    return jnp.clip(mean, -head.mean_limit, head.mean_limit), index


def hyper_synthesis(model: IntegerEntropyModel, side_symbols):
    """psi (B, 4h, 4w, P) int32 of the side symbols (B, h, w, N) int32 (z_hat - median)."""
    symbols = jnp.clip(jnp.asarray(side_symbols, jnp.int32), -model.z_limit, model.z_limit)
    x = symbols * (1 << model.z_fraction_bits) + jnp.asarray(model.z_medians)
    for layer in model.hyper_synthesis:
        x = apply_layer(layer, x)
    return x


def group_parameters(model: IntegerEntropyModel, stream: str, psi, y_fixed=None, extra=None):
    """(mean_fixed, scale_index) (B, H, W, C) of every position of a group at once.

    psi: (B, H, W, P) int32; y_fixed: the group's fixed-point y_hat (B, H, W, C) int32 ("serial":
    the whole latent, each position reading only its causal taps; "checkerboard": read at the
    anchors only; None for "none"); extra: the enhancement group's fixed-point base latent."""
    group = model.groups[stream]
    parts = [jnp.asarray(psi, jnp.int32)]
    if group.context is not None:
        if y_fixed is None:
            raise ValueError(f"the {group.context_model!r} context needs the quantized latent")
        y = jnp.clip(jnp.asarray(y_fixed, jnp.int32), -model.latent_limit, model.latent_limit)
        if group.context_model == "checkerboard":
            anchors = jnp.asarray(checkerboard_anchors(*y.shape[1:3]), jnp.int32)[None, :, :, None]
            parts.append(apply_layer(group.context, y * anchors) * (1 - anchors))
        else:
            parts.append(apply_layer(group.context, y))
    return _parameters(model, group, parts, extra)


def front_parameters(model: IntegerEntropyModel, stream: str, psi_at, causal_taps,
                     extra_at=None):
    """(mean_fixed, scale_index) (n, C) at n positions of a serial group: psi_at (n, P), the
    fixed-point y_hat at their causal taps (n, T, C), extra_at (n, E) or None."""
    group = model.groups[stream]
    taps = jnp.clip(jnp.asarray(causal_taps, jnp.int32), -model.latent_limit,
                    model.latent_limit)
    flat = taps.reshape(taps.shape[0], 1, 1, taps.shape[1] * taps.shape[2])
    parts = [jnp.asarray(psi_at, jnp.int32)[:, None, None, :],
             apply_layer(group.causal_context(), flat)]
    extra = None if extra_at is None else jnp.asarray(extra_at)[:, None, None, :]
    mean, index = _parameters(model, group, parts, extra)
    return mean[:, 0, 0], index[:, 0, 0]


def _parameters(model, group, parts, extra):
    if extra is not None:
        parts.append(jnp.clip(jnp.asarray(extra, jnp.int32), -model.latent_limit,
                              model.latent_limit))
    x = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)
    for layer in group.hidden:
        x = apply_layer(layer, x)
    return apply_head(group.head, x)
