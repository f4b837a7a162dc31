"""The gradient-preserving lower bound (Balle et al. 2018), in plain JAX.

`lower_bound(x, bound)` is max(x, bound) whose gradient still flows where the bound is active if
the gradient would push x up, back above the bound. GDN's reparametrization and the entropy
models' likelihood and scale floors share it. This module imports no Flax, so the range-coding
path of an exported package can use it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def lower_bound(x: jax.Array, bound: jax.Array | float) -> jax.Array:
    """max(x, bound), whose gradient still reaches x where it would push x up.

    The plain maximum has zero gradient wherever x < bound, so a parameter that falls below its
    bound could never come back. Here the gradient passes through where x >= bound, or where a
    gradient-descent step (x -= lr * grad, i.e. grad < 0) would increase x. No gradient flows to
    the bound.
    """
    return _lower_bound(x, jnp.asarray(bound, dtype=x.dtype))


@jax.custom_vjp
def _lower_bound(x, bound):
    return jnp.maximum(x, bound)


def _lower_bound_forward(x, bound):
    return jnp.maximum(x, bound), (x, bound)


def _lower_bound_backward(residuals, grad):
    x, bound = residuals
    passes = (x >= bound) | (grad < 0)
    return jnp.where(passes, grad, jnp.zeros_like(grad)), jnp.zeros_like(bound)


_lower_bound.defvjp(_lower_bound_forward, _lower_bound_backward)
