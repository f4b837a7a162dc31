"""Times one 5x5 stride-2 transposed convolution: lax.conv_transpose vs layers.conv.TransposedConv.

Both compute the same function (128 -> 128 channels, 64x64 -> 128x128, batch 1 by default). For
each, the forward pass and the gradient of 0.5 * sum(y^2) with respect to kernel and input are
jit-compiled, run once to warm up, then timed; the median of the timed runs is printed in
seconds, with the ratio lax / phase-decomposed.

    python benchmarks/bench_transposed_conv.py [--size 64] [--channels 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jdc_jax.layers.conv import TransposedConv

KERNEL_SIZE = 5
STRIDE = 2


def median_seconds(function, args, repeats: int) -> float:
    """Median wall time of `repeats` calls after one warm-up call (which also compiles)."""
    jax.block_until_ready(function(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(function(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="input height and width")
    parser.add_argument("--channels", type=int, default=128, help="input and output channels")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((1, args.size, args.size, args.channels)), jnp.float32)
    kernel = jnp.asarray(
        rng.standard_normal((KERNEL_SIZE, KERNEL_SIZE, args.channels, args.channels))
        / np.sqrt(KERNEL_SIZE * KERNEL_SIZE * args.channels), jnp.float32)
    layer = TransposedConv(args.channels, KERNEL_SIZE, STRIDE, use_bias=False)

    def lax_forward(k, v):
        return jax.lax.conv_transpose(v, k, strides=(STRIDE, STRIDE), padding="SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def phase_forward(k, v):
        return layer.apply({"params": {"kernel": k}}, v)

    def gradient_of(forward):
        return jax.grad(lambda k, v: 0.5 * jnp.sum(jnp.square(forward(k, v))), argnums=(0, 1))

    print(f"{KERNEL_SIZE}x{KERNEL_SIZE} stride-{STRIDE} transposed conv, {args.channels} -> "
          f"{args.channels} channels, {args.size}x{args.size} -> "
          f"{args.size * STRIDE}x{args.size * STRIDE}, batch 1, {jax.devices()[0].platform}, "
          f"median of {args.repeats} runs")
    for name, make in [("forward", lambda f: f), ("gradient", gradient_of)]:
        lax_time = median_seconds(jax.jit(make(lax_forward)), (kernel, x), args.repeats)
        phase_time = median_seconds(jax.jit(make(phase_forward)), (kernel, x), args.repeats)
        print(f"{name:9s} lax.conv_transpose {lax_time:9.4f} s   TransposedConv {phase_time:9.4f} s"
              f"   ratio {lax_time / phase_time:8.1f}x")


if __name__ == "__main__":
    main()
