"""Generalized divisive normalization (GDN) and its inverse (IGDN).

GDN (Balle, Laparra & Simoncelli, "Density modeling of images using a generalized normalization
transformation", ICLR 2016) normalizes each channel by a learned pool of the squared activations
of all channels at the same position:

    y_i = x_i / sqrt(beta_i + sum_j gamma_ij * x_j^2)

The simplified form (Balle 2018; Johnston et al., "Computationally efficient neural image
compression", 2019) drops the square and the square root:

    y_i = x_i / (beta_i + sum_j gamma_ij * |x_j|)

The inverse (IGDN), used in synthesis transforms, multiplies by the same denominator instead of
dividing. It approximately inverts GDN; it is not its exact inverse.

Parameters live in a non-negative reparametrization (as in Balle's work and
tensorflow_compression): the stored value p of an effective value v >= bound is

    p = sqrt(max(v + pedestal, pedestal)),   pedestal = reparam_offset^2
    v = lower_bound(p, sqrt(bound + pedestal))^2 - pedestal

with bound = beta_min for beta and 0 for gamma, so beta >= beta_min and gamma >= 0 hold whatever
the optimizer does. Shapes: x is (..., C) (channels last, e.g. NHWC); beta is (C,) and gamma is
(C, C) with gamma[i, j] the weight of input channel j in the pool of output channel i. The layer
is unit-free: it maps activations to activations.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jdc_jax.layers.bound import lower_bound


def _reparametrized_bound(bound: float, pedestal: float) -> np.float32:
    """sqrt(bound + pedestal) in float32, nudged up until squaring it gives back >= bound."""
    reparam = np.float32(np.sqrt(bound + pedestal))
    # float32 rounding of the square could otherwise land one ulp below the bound.
    while np.float32(reparam * reparam) - np.float32(pedestal) < np.float32(bound):
        reparam = np.nextafter(reparam, np.float32(np.inf))
    return reparam


def to_reparametrized(value: jax.Array, pedestal: float) -> jax.Array:
    """The stored form p = sqrt(max(value + pedestal, pedestal)) of an effective value."""
    return jnp.sqrt(jnp.maximum(value + pedestal, pedestal))


def from_reparametrized(reparam: jax.Array, bound: float, pedestal: float) -> jax.Array:
    """The effective value lower_bound(p, sqrt(bound + pedestal))^2 - pedestal, always >= bound."""
    bounded = lower_bound(reparam, _reparametrized_bound(bound, pedestal))
    return jnp.square(bounded) - pedestal


class GDN(nn.Module):
    """GDN over the last axis; `inverse=True` gives IGDN, `simplified=True` the L1 form.

    Attributes:
        inverse: multiply by the normalization pool instead of dividing (IGDN).
        simplified: use beta + gamma |x| instead of sqrt(beta + gamma x^2).
        beta_min: lower bound of the effective beta (keeps the denominator positive).
        gamma_init: the initial effective gamma is gamma_init * identity; the initial beta is 1.
        reparam_offset: sqrt of the pedestal of the reparametrization (see the module docstring).

    The normalization is computed in float32 whatever the dtype of x (e.g. bfloat16), and the
    result is cast back to x.dtype. Input and output shape: (..., C).
    """
    inverse: bool = False
    simplified: bool = False
    beta_min: float = 1e-6
    gamma_init: float = 0.1
    reparam_offset: float = 2.0**-18

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim < 1:
            raise ValueError(f"GDN needs a channel axis, got a scalar of shape {x.shape}")
        if self.beta_min <= 0:
            raise ValueError(f"beta_min must be positive, got {self.beta_min}")
        if self.gamma_init < 0:
            raise ValueError(f"gamma_init must be non-negative, got {self.gamma_init}")
        channels = x.shape[-1]
        pedestal = self.reparam_offset**2

        beta_reparam = self.param(
            "beta", lambda _, shape: to_reparametrized(jnp.ones(shape, jnp.float32), pedestal),
            (channels,))
        gamma_reparam = self.param(
            "gamma",
            lambda _, shape: to_reparametrized(
                self.gamma_init * jnp.eye(shape[0], dtype=jnp.float32), pedestal),
            (channels, channels))
        beta = from_reparametrized(beta_reparam, self.beta_min, pedestal)
        gamma = from_reparametrized(gamma_reparam, 0.0, pedestal)

        x32 = x.astype(jnp.float32)
        pooled_input = jnp.abs(x32) if self.simplified else jnp.square(x32)
        # HIGHEST keeps the pool in true float32 on backends whose default matmul is bfloat16.
        pool = beta + jnp.einsum(
            "...j,ij->...i", pooled_input, gamma, precision=jax.lax.Precision.HIGHEST)
        if self.simplified:
            y = x32 * pool if self.inverse else x32 / pool
        else:
            y = x32 * jnp.sqrt(pool) if self.inverse else x32 * jax.lax.rsqrt(pool)
        return y.astype(x.dtype)


class IGDN(GDN):
    """Inverse GDN: y_i = x_i * sqrt(beta_i + sum_j gamma_ij x_j^2) (or the simplified form).

    The same parameters as GDN; see GDN for the attributes.
    """
    inverse: bool = True
