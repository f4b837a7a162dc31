"""Training step of a config with every module trained against the same step with some modules
frozen (factor 0 in `module_lr_scales`), in one process.

A frozen module enters the loss as a constant, so the step computes no gradient for it and
backpropagates only as far as the trained modules need (`train.train_step`). The A/B that shows
what this saves: the campaign's fine-tune of JICD's noisy-reconstruction synthesis alone
(results/campaign/README.md, "The enhancement layer against the clean codec") against the
campaign's full step.

Both steps are built as the training loop builds them (`bench_compilations.build_training`:
replicated state, sharded donating jit), compiled with one step each, then timed in alternating
rounds of `--steps` steps on the same random uint8 batches (no tf.data). Prints each step's
median seconds, the ratio and the count of convolutions in each step's lowered program (StableHLO,
before XLA's optimizations), with the load average before and after (the machine must be
otherwise quiet).

    python benchmarks/bench_frozen_step.py [--config configs/jicd.py:campaign_sigma25]
        [--frozen g_a,h_a,side_prior,h_s,base_parameters,g_s_base] [--steps 10] [--rounds 3]

Run from the repository root.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import numpy as np

from bench_compilations import build_training, load_config, random_batch
from jdc_jax import sharding
from jdc_jax.models import registry

# Everything but JICD's noisy-reconstruction synthesis and its entropy parameters.
ENHANCEMENT_FINE_TUNE = "g_a,h_a,side_prior,h_s,base_parameters,g_s_base"


def build(config_spec: str, frozen: list[str]):
    config = load_config(config_spec)
    if frozen:
        config.module_lr_scales = ",".join(f"{name}=0" for name in frozen)
    mesh, model, state, step_rng, compiled_step = build_training(config)
    return config, mesh, model, state, step_rng, compiled_step


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/jicd.py:campaign_sigma25",
                        help="config file[:variant], as --config of the training job")
    parser.add_argument("--frozen", default=ENHANCEMENT_FINE_TUNE,
                        help="comma-separated top-level modules to freeze in the B step")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of A and B")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.rounds < 1:
        parser.error("--steps and --rounds must be at least 1")
    frozen = [name for name in args.frozen.split(",") if name]

    print(f"load average before: {os.getloadavg()[0]:.2f}")
    arms = {}
    for label, names in (("all trained", []), (f"frozen {','.join(frozen)}", frozen)):
        config, mesh, model, state, step_rng, compiled_step = build(args.config, names)
        convolutions = compiled_step.lower(state, sharding.global_batch(random_batch(
            np.random.default_rng(0), (config.batch_size, config.crop_size, config.crop_size, 3),
            config.target == "teacher", registry.takes_noise_level(model)), mesh),
            step_rng).as_text().count("stablehlo.convolution")
        arms[label] = dict(config=config, mesh=mesh, model=model, state=state, rng=step_rng,
                           step=compiled_step, seconds=[], convolutions=convolutions)
    config = next(iter(arms.values()))["config"]
    shape = (config.batch_size, config.crop_size, config.crop_size, 3)
    rng = np.random.default_rng(args.seed)
    host_batches = [random_batch(rng, shape, config.target == "teacher",
                                 registry.takes_noise_level(arms["all trained"]["model"]))
                    for _ in range(args.steps + 1)]
    for arm in arms.values():
        batches = [sharding.global_batch(batch, arm["mesh"]) for batch in host_batches]
        arm["batches"] = batches
        arm["state"], _ = arm["step"](arm["state"], batches[0], arm["rng"])  # compiles
        jax.block_until_ready(arm["state"])
    for _ in range(args.rounds):
        for arm in arms.values():
            for batch in arm["batches"][1:]:
                start = time.perf_counter()
                arm["state"], metrics = arm["step"](arm["state"], batch, arm["rng"])
                jax.block_until_ready((arm["state"], metrics))
                arm["seconds"].append(time.perf_counter() - start)
    medians = {label: statistics.median(arm["seconds"]) for label, arm in arms.items()}
    print(f"{args.config}, batch {config.batch_size} of {config.crop_size}x{config.crop_size}, "
          f"{args.rounds} x {args.steps} steps per step kind")
    for label, arm in arms.items():
        print(f"  {label}: median {medians[label]:.3f} s per step "
              f"({arm['convolutions']} convolutions in the lowered step)")
    first, second = medians.values()
    print(f"  ratio all trained / frozen: {first / second:.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
