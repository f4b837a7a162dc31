"""Tiny codec models, their parameters and saved checkpoints, shared by the codec and CLI tests."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jdc_jax import checkpoints
from jdc_jax.default_config import get_config
from jdc_jax.models import build_model

TINY = dict(channels=16, latent_channels=16)
TINY_FIELDS = {"jicd": dict(TINY, base_channels=12, context_model="serial"),
               "codec": dict(TINY, context_model="serial"),
               "hyperprior": dict(TINY, context_model="none"),
               "factorized": dict(TINY)}
# Only the initial values matter, so the init program is compiled without optimization: about
# three times faster on CPU.
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
# Random initialisation predicts scales near 0 for latents of standard deviation ~1: most symbols
# would then fall in the tables' escape bin, where the estimate's likelihood floor (1e-9, 30 bits)
# says nothing about the coded size. A scale bias of this size makes the model's rate estimate
# meaningful, as training does.
SCALE_BIAS = 1.5


@functools.lru_cache(maxsize=None)
def _initial_params(kind: str, fields: tuple):
    model = build_model(kind, **dict(fields))
    x = jnp.zeros((1, 64, 64, 3), jnp.float32)
    init = jax.jit(lambda x: model.init({"params": jax.random.key(0)}, x, train=False))
    params = init.lower(x).compile(compiler_options=_FAST_COMPILE)(x)["params"]
    params = jax.tree.map(np.array, params)
    for group in ("base_parameters", "enhancement_parameters"):
        if group in params:
            bias = params[group]["ep2"]["bias"]
            bias[bias.size // 2:] += SCALE_BIAS  # the second half of the outputs is the scale
    return params


def tiny_model(kind: str, **fields):
    """(model, params): a tiny randomly initialised codec with calibrated scales.

    Parameters are cached per (kind, fields); models whose parameter trees are equal may share
    them (`params_like`)."""
    fields = {**TINY_FIELDS[kind], **fields}
    # The serial and checkerboard context layers have the same parameter shapes.
    shared = dict(fields)
    if kind not in ("hyperprior", "factorized") and fields["context_model"] == "checkerboard":
        shared["context_model"] = "serial"
    params = _initial_params(kind, tuple(sorted(shared.items())))
    return build_model(kind, **fields), jax.tree.map(np.copy, params)


def perturbed(params, amount: float = 1e-3):
    """A copy of `params` with every weight shifted by `amount` (another model, same shapes)."""
    return jax.tree.map(lambda p: np.asarray(p) + np.asarray(amount, p.dtype), params)


def save_checkpoint(workdir, kind: str, params, step: int = 1, **fields) -> str:
    """Saves `params` and a config for them as a training checkpoint; returns the workdir."""
    config = get_config()
    config.model = kind
    for name, value in {**TINY_FIELDS[kind], **fields}.items():
        setattr(config, name, value)
    manager = checkpoints.checkpoint_manager(f"{workdir}/{checkpoints.CHECKPOINT_SUBDIR}")
    manager.save(step, args=ocp.args.Composite(state=ocp.args.PyTreeSave({"params": params}),
                                               config=ocp.args.JsonSave(config.to_dict())))
    manager.wait_until_finished()
    manager.close()
    return str(workdir)


def generated_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth colour gradient with mild noise, uint8 (height, width, 3)."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, height)[:, None, None]
    cols = np.linspace(0.0, 1.0, width)[None, :, None]
    base = 0.5 + 0.4 * np.sin(3.0 * rows + 2.0 * cols + np.array([0.0, 1.0, 2.0]))
    noisy = base + 0.05 * rng.standard_normal((height, width, 3))
    return np.clip(np.round(noisy * 255), 0, 255).astype(np.uint8)
