"""Training-step time per image on 1 and on 4 devices of a ('data',) mesh, same global batch.

    python benchmarks/bench_data_parallel.py [--model jicd] [--channels 64] [--batch 8]
        [--size 128] [--repeats 3]

Runs `train.compile_train_step` (parameters replicated, the batch split along its leading axis)
on a 1-device mesh and on a 4-device mesh, with the same parameters, global batch and step key.
On a machine without accelerators the 4 devices are XLA's fake host devices
(--xla_force_host_platform_device_count=4, set below before JAX starts): they share the
machine's cores, so this measures the cost of splitting the batch and all-reducing the
gradients, not a speed-up. Defaults are the CPU-scale reproduction (N = M = 64, 128x128 crops,
batch 8). Prints the compile time (first call), the median of --repeats steps after it, seconds
per image, the ratio 4-device / 1-device per-image time (below 1: the split pays), and the
first step's loss on each mesh (equal up to summation order).
"""

from __future__ import annotations

import os

DEVICE_COUNT = 4
# Must precede the first `import jax` of the process.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           f" --xla_force_host_platform_device_count={DEVICE_COUNT}").strip()

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from jdc_jax.models import registry
from jdc_jax import sharding, train  # noqa: E402
from jdc_jax.default_config import get_config  # noqa: E402


def step_timing(config, devices, batch_arrays: dict, repeats: int) -> dict:
    """Compile seconds, median step seconds and the first step's loss on a mesh of `devices`."""
    model = registry.model_from_config(config)
    tx = train.make_optimizer(config)
    mesh = sharding.make_mesh(devices)
    replicated = NamedSharding(mesh, P())
    state = jax.device_put(train.create_train_state(config, model, tx, jax.random.key(0)),
                           replicated)
    rng = jax.device_put(jax.random.key(1), replicated)
    batch = sharding.global_batch(batch_arrays, mesh)
    step = train.compile_train_step(model, tx, config, mesh, state)

    start = time.perf_counter()
    state, metrics = step(state, batch, rng)
    first_loss = float(jax.device_get(metrics["loss"]))
    compile_seconds = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, metrics = step(state, batch, rng)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - start)
    return {"compile_seconds": compile_seconds, "step_seconds": statistics.median(times),
            "first_loss": first_loss}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="jicd")
    parser.add_argument("--channels", type=int, default=64, help="N = M")
    parser.add_argument("--batch", type=int, default=8, help="global batch size")
    parser.add_argument("--size", type=int, default=128, help="crop side (multiple of 64)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.batch % DEVICE_COUNT:
        parser.error(f"--batch must be divisible by {DEVICE_COUNT}, got {args.batch}")
    if args.size % 64:
        parser.error(f"--size must be a multiple of 64, got {args.size}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    devices = jax.devices()
    if len(devices) < DEVICE_COUNT:
        raise SystemExit(f"{len(devices)} devices; this benchmark needs {DEVICE_COUNT} (JAX "
                         "was imported before XLA_FLAGS could be set?)")

    config = get_config()
    config.model = args.model
    config.channels = config.latent_channels = args.channels
    config.base_channels = args.channels * 180 // 192  # the default 180 / 12 split, scaled
    config.batch_size, config.crop_size = args.batch, args.size
    rng = np.random.default_rng(0)
    shape = (args.batch, args.size, args.size, 3)
    clean = rng.integers(0, 256, shape, dtype=np.uint8)
    noisy = np.clip(clean + rng.normal(0, 25, shape), 0, 255).astype(np.uint8)
    batch = {"clean": clean, "noisy": noisy}

    print(f"model={args.model} N=M={args.channels} global batch={args.batch} "
          f"size={args.size} repeats={args.repeats} devices={devices[0].platform} x "
          f"{len(devices)} on {os.cpu_count()} cores")
    results = {}
    for count in (1, DEVICE_COUNT):
        timing = step_timing(config, devices[:count], batch, args.repeats)
        results[count] = timing
        print(f"{count} device(s): first call (compile + run) {timing['compile_seconds']:.1f} s, "
              f"step {timing['step_seconds']:.3f} s, "
              f"{timing['step_seconds'] / args.batch * 1e3:.1f} ms/image, "
              f"first loss {timing['first_loss']:.6g}", flush=True)
    ratio = results[DEVICE_COUNT]["step_seconds"] / results[1]["step_seconds"]
    print(f"per-image time, {DEVICE_COUNT} devices / 1 device: {ratio:.2f}")


if __name__ == "__main__":
    main()
