"""Share of training-step time spent waiting for the tf.data input pipeline.

Runs the real training job for the paper-size JICD (N = M = 192, 256x256 crops, batch 16,
AWGN sigma 25 synthesized in tf.data) on the built-in images, and prints the pipeline's own
throughput and the `input_wait_fraction` the training loop measures over the steps after the
first (compiling) logging window.

    python benchmarks/bench_input_wait.py [--steps 6] [--batch 16] [--crop 256] [--channels 192]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--channels", type=int, default=192)
    args = parser.parse_args(argv)

    from jdc_jax import input_pipeline, train
    from jdc_jax.default_config import get_config

    ds = input_pipeline.create_train_dataset("builtin", "awgn:25", batch_size=args.batch,
                                             crop_size=args.crop, seed=0)
    it = iter(ds)
    next(it)
    t0 = time.perf_counter()
    for _ in range(10):
        next(it)
    per_batch = (time.perf_counter() - t0) / 10
    print(f"pipeline alone: {per_batch * 1000:.1f} ms per batch of {args.batch} "
          f"({args.batch / per_batch:.0f} images/s)")

    config = get_config()
    config.data_source = "builtin"
    config.channels = config.latent_channels = args.channels
    config.base_channels = args.channels - 12
    config.batch_size, config.crop_size = args.batch, args.crop
    config.num_train_steps = 2 * args.steps
    config.log_every_steps = args.steps
    config.checkpoint_every_steps = 10 ** 9
    config.eval_folder = ""
    with tempfile.TemporaryDirectory() as workdir:
        metrics = train.train_and_evaluate(config, workdir)
    print(f"training window of {args.steps} steps after compilation: "
          f"{metrics['images_per_second']:.2f} images/s, "
          f"input wait {100 * metrics['input_wait_fraction']:.2f}% of step time")


if __name__ == "__main__":
    main()
