"""Times one forward (inference) pass and one training step (gradient + Adam) of a model.

    python benchmarks/bench_model_step.py --model jicd --batch 4 --size 256 --repeats 3

Prints compile time and the median of `--repeats` runs after a warm-up, and images/s.
Defaults: JICD at paper size (N = M = 192, base 180, serial context).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jdc_jax.models import build_model, init_params
from jdc_jax.models.losses import rate_distortion_loss


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="jicd")
    parser.add_argument("--channels", type=int, default=192)
    parser.add_argument("--base_channels", type=int, default=180)
    parser.add_argument("--context_model", default="serial")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args(argv)

    fields = dict(channels=args.channels, latent_channels=args.channels,
                  context_model=args.context_model, dtype=jnp.dtype(args.dtype))
    if args.model == "jicd":
        fields["base_channels"] = args.base_channels
    model = build_model(args.model, **fields)
    shape = (args.batch, args.size, args.size, 3)
    params = init_params(model, jax.random.key(0), shape)
    rng = np.random.default_rng(0)
    clean = jnp.asarray(rng.uniform(0, 1, shape), jnp.float32)
    noisy = jnp.clip(clean + jnp.asarray(rng.normal(0, 0.1, shape), jnp.float32), 0, 1)
    targets = ({"denoised": clean, "noisy_reconstruction": noisy} if args.model == "jicd"
               else {model.outputs[0]: clean})
    tx = optax.adam(1e-4)
    opt_state = tx.init(params)

    forward = jax.jit(lambda p, x: model.apply({"params": p}, x, train=False))

    @jax.jit
    def step(params, opt_state, key):
        def loss_fn(p):
            out = model.apply({"params": p}, noisy, train=True, rngs={"noise": key})
            return rate_distortion_loss(out, targets, lmbda=0.013)[0]
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    def timed(fn):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        return time.perf_counter() - t0

    compile_forward = timed(lambda: forward(params, noisy))
    forward_times = [timed(lambda: forward(params, noisy)) for _ in range(args.repeats)]
    compile_step = timed(lambda: step(params, opt_state, jax.random.key(1)))
    step_times = [timed(lambda: step(params, opt_state, jax.random.key(1)))
                  for _ in range(args.repeats)]
    fwd, stp = statistics.median(forward_times), statistics.median(step_times)
    print(f"model={args.model} N=M={args.channels} batch={args.batch} size={args.size} "
          f"dtype={args.dtype} context={args.context_model} devices={jax.devices()}")
    print(f"forward: first call (compile + run) {compile_forward:.1f} s, median {fwd:.3f} s "
          f"({args.batch / fwd:.2f} images/s)")
    print(f"train step: first call (compile + run) {compile_step:.1f} s, median {stp:.3f} s "
          f"({args.batch / stp:.2f} images/s)")


if __name__ == "__main__":
    main()
