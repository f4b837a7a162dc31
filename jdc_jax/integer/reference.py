"""A plain numpy reference of the integer entropy-parameter network, for tests.

The same arithmetic as `ops` (the `network` module docstring), written independently: int64
throughout, convolutions as an explicit sum over the kernel taps, the rounding division by
numpy's floor division, the scale index by counting thresholds one at a time. Every accumulator
is checked against the layer's stored worst-case bound (`IntegerEntropyModel.accumulator_bounds`),
so a test running this also shows that no value came near int32's limits.
"""

from __future__ import annotations

import numpy as np

from jdc_jax.integer.network import LEAKY_DIVISOR, IntegerEntropyModel


class BoundExceeded(AssertionError):
    """An accumulator larger than the bound the network claims."""


def _accumulate(x, kernel, bias, padding, bound: int, name: str):
    x = np.asarray(x, np.int64)
    kernel = np.asarray(kernel, np.int64)
    before, after = padding
    x = np.pad(x, ((0, 0), (before, after), (before, after), (0, 0)))
    k = kernel.shape[0]
    height, width = x.shape[1] - k + 1, x.shape[2] - k + 1
    total = np.zeros(x.shape[:1] + (height, width, kernel.shape[-1]), np.int64)
    for i in range(k):
        for j in range(k):
            total += np.tensordot(x[:, i: i + height, j: j + width, :], kernel[i, j], axes=1)
    total += np.asarray(bias, np.int64)
    if np.abs(total).max(initial=0) > bound:
        raise BoundExceeded(f"{name}: accumulator {np.abs(total).max()} above its bound {bound}")
    return total


def _rounded(total, divisor):
    divisor = np.asarray(divisor, np.int64)
    return np.floor_divide(total + divisor // 2, divisor)


def _layer(layer, x, bound, name):
    total = _accumulate(x, layer.kernel, layer.bias, layer.padding, bound, name)
    out = _rounded(total, layer.divisor)
    if layer.activation == "relu":
        out = np.maximum(out, 0)
    elif layer.activation == "leaky_relu":
        negative = _rounded(total, np.asarray(layer.divisor, np.int64) * LEAKY_DIVISOR)
        out = np.where(total >= 0, out, negative)
    out = np.minimum(np.maximum(out, layer.lower), layer.upper)
    r = layer.upscale
    if r > 1:
        b, h, w, c = out.shape
        f = c // (r * r)
        shuffled = np.zeros((b, h * r, w * r, f), np.int64)
        for i in range(r):
            for j in range(r):
                shuffled[:, i::r, j::r, :] = out[..., (i * r + j) * f: (i * r + j + 1) * f]
        out = shuffled
    return out


def hyper_synthesis(model: IntegerEntropyModel, side_symbols) -> np.ndarray:
    """psi (B, 4h, 4w, P) int64 of side symbols (B, h, w, N)."""
    bounds = model.accumulator_bounds()
    symbols = np.clip(np.asarray(side_symbols, np.int64), -model.z_limit, model.z_limit)
    x = symbols * 2**model.z_fraction_bits + model.z_medians.astype(np.int64)
    for position, layer in enumerate(model.hyper_synthesis):
        name = f"hyper_synthesis/{position}"
        x = _layer(layer, x, bounds[name], name)
    return x


def group_parameters(model: IntegerEntropyModel, stream: str, psi, y_fixed=None, extra=None):
    """(mean_fixed, scale_index) int64 (B, H, W, C): `ops.group_parameters` in numpy. For a
    serial group, y_fixed is the whole decoded latent (the masked kernel reads causal taps)."""
    bounds = model.accumulator_bounds()
    group = model.groups[stream]
    limit = model.latent_limit
    parts = [np.asarray(psi, np.int64)]
    if group.context is not None:
        y = np.clip(np.asarray(y_fixed, np.int64), -limit, limit)
        name = f"{stream}/context"
        if group.context_model == "checkerboard":
            rows, cols = np.indices(y.shape[1:3])
            anchors = ((rows + cols) % 2 == 0)[None, :, :, None]
            context = _layer(group.context, np.where(anchors, y, 0), bounds[name], name)
            parts.append(np.where(anchors, 0, context))
        else:
            parts.append(_layer(group.context, y, bounds[name], name))
    if extra is not None:
        parts.append(np.clip(np.asarray(extra, np.int64), -limit, limit))
    x = np.concatenate(parts, axis=-1)
    for position, layer in enumerate(group.hidden):
        name = f"{stream}/hidden/{position}"
        x = _layer(layer, x, bounds[name], name)
    head = group.head
    total = _accumulate(x, head.kernel, head.bias, head.padding, bounds[f"{stream}/head"],
                        f"{stream}/head")
    channels = head.channels
    scale_total = total[..., -channels:]
    index = np.zeros(scale_total.shape, np.int64)
    for t in range(head.scale_thresholds.shape[1]):
        index += scale_total > head.scale_thresholds[:, t].astype(np.int64)
    if not head.predicts_mean:
        return np.zeros_like(index), index
    mean = _rounded(total[..., :channels], head.mean_divisor)
    return np.clip(mean, -head.mean_limit, head.mean_limit), index
