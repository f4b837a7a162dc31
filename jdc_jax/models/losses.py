"""Rates and rate-distortion losses.

Rates are in bits, from likelihoods as -log2(p); bits per pixel divide by the number of input
pixels H * W (per image). Distortion is the MSE of images in [0, 1]; the loss scales it by
255^2 so lambda has the usual meaning for 8-bit images (the JICD paper's lambda ladder
0.0018 ... 0.0483):

    JICD:          L = R + lambda * 255^2 * ((1 - w) * MSE(clean, denoised)
                                               + w * MSE(noisy, noisy_reconstruction))
    single output: L = R + lambda * 255^2 * MSE(target, reconstruction)

R is the total rate over all streams (side + base [+ enhancement]), in bits per pixel.
"""

from __future__ import annotations

from typing import Mapping

import jax.numpy as jnp


def stream_bits(likelihoods):
    """{stream: (B,) bits} from {stream: (B, ...) likelihoods}."""
    return {name: jnp.sum(-jnp.log2(lik.astype(jnp.float32)), axis=tuple(range(1, lik.ndim)))
            for name, lik in likelihoods.items()}


def mse(a, b):
    """Per-image mean squared error, (B,)."""
    diff = (a.astype(jnp.float32) - b.astype(jnp.float32)) ** 2
    return jnp.mean(diff, axis=tuple(range(1, diff.ndim)))


def psnr_from_mse(mse_value, peak: float = 1.0):
    return 10.0 * jnp.log10(peak ** 2 / jnp.maximum(mse_value, 1e-12))


def distortion_weights(outputs, noisy_weight: float):
    """Weights of each output's MSE: JICD uses (1 - w) for `denoised` and w for
    `noisy_reconstruction`; single-output models weigh their one output by 1."""
    if set(outputs) == {"denoised", "noisy_reconstruction"}:
        return {"denoised": 1.0 - noisy_weight, "noisy_reconstruction": noisy_weight}
    if len(outputs) != 1:
        raise ValueError(f"no distortion weighting for outputs {tuple(outputs)}")
    return {outputs[0]: 1.0}


def rate_distortion_loss(out, targets: Mapping[str, jnp.ndarray], *, lmbda: float,
                         noisy_weight: float = 0.05):
    """Returns (scalar loss, metrics dict of scalars averaged over the batch).

    out: a model's output dict; targets: {output name: (B, H, W, 3) target in [0, 1]}.
    Metrics: loss, bpp (total), bpp_<stream>, mse_<output>, psnr_<output> (dB, peak 1).
    """
    weights = distortion_weights([k for k in out if k != "likelihoods"], noisy_weight)
    first = targets[next(iter(weights))]
    num_pixels = first.shape[1] * first.shape[2]
    metrics = {}
    rate = jnp.zeros(first.shape[0], jnp.float32)
    for name, bits in stream_bits(out.get("likelihoods", {})).items():
        bpp = bits / num_pixels
        metrics[f"bpp_{name}"] = jnp.mean(bpp)
        rate = rate + bpp
    distortion = jnp.zeros(first.shape[0], jnp.float32)
    for name, weight in weights.items():
        if name not in targets:
            raise ValueError(f"no target image for output {name!r}")
        err = mse(out[name], targets[name])
        metrics[f"mse_{name}"] = jnp.mean(err)
        metrics[f"psnr_{name}"] = jnp.mean(psnr_from_mse(err))
        distortion = distortion + weight * err
    loss = jnp.mean(rate + lmbda * 255.0 ** 2 * distortion)
    metrics["bpp"] = jnp.mean(rate)
    metrics["loss"] = loss
    return loss, metrics


def rate_lambda(config) -> float:
    """lambda of the config's rate point (1-based), unless `lmbda` overrides it."""
    if config.lmbda > 0:
        return float(config.lmbda)
    return float(config.lambdas[config.rate_point - 1])
