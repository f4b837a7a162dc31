"""Training throughput of one process on every core against several processes, each pinned to
its own share of the cores ("lanes"), all running the same training step at once.

Why: on a 2-core CPU one training process keeps the cores about 80 % busy (XLA:CPU's threads
wait on each other between the small convolutions); two independent runs, each pinned to one
core, may train more steps per second in all, each run going slower. The campaign
(`results/campaign/campaign.sh`) runs its queue in lanes when this pays.

Each process builds the config's model, optimizer and compiled training step as the training
loop does (`bench_compilations.build_training`: replicated state, sharded donating jit),
compiles it with one step, and waits; when every process of an arrangement is ready they all
time `--steps` steps together on random uint8 batches (no tf.data), so their timed windows
overlap. Printed per arrangement: each process's median step time, the steps per second of all
processes together, and the ratio to one process on every core; with the load average before
and after (the machine must be otherwise quiet).

    python benchmarks/bench_lanes.py [--config configs/jicd.py:campaign_sigma25] [--steps 15]
        [--lanes 2]

Run from the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

READY = "ready"


def split_cores(cores: list[int], lanes: int) -> list[list[int]]:
    """`cores` cut into `lanes` consecutive groups whose sizes differ by at most one."""
    if not 1 <= lanes <= len(cores):
        raise ValueError(f"--lanes must be between 1 and the {len(cores)} usable cores, "
                         f"got {lanes}")
    return [cores[len(cores) * k // lanes:len(cores) * (k + 1) // lanes] for k in range(lanes)]


def worker(config_spec: str, steps: int, seed: int) -> None:
    """Compile the step, say READY, wait for a line on stdin, time `steps` steps, print JSON."""
    import jax
    import numpy as np

    from bench_compilations import build_training, load_config, random_batch
    from jdc_jax import sharding
    from jdc_jax.models import registry

    config = load_config(config_spec)
    mesh, model, state, step_rng, compiled_step = build_training(config)
    shape = (config.batch_size, config.crop_size, config.crop_size, 3)
    rng = np.random.default_rng(seed)
    batches = [sharding.global_batch(random_batch(rng, shape, config.target == "teacher",
                                                  registry.takes_noise_level(model)), mesh)
               for _ in range(steps + 1)]
    state, _ = compiled_step(state, batches[0], step_rng)
    jax.block_until_ready(state)
    print(READY, flush=True)
    sys.stdin.readline()
    seconds = []
    for batch in batches[1:]:
        start = time.perf_counter()
        state, metrics = compiled_step(state, batch, step_rng)
        jax.block_until_ready((state, metrics))
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"median_step_seconds": statistics.median(seconds)}), flush=True)


def run_arrangement(groups: list[list[int]], config_spec: str, steps: int,
                    seed: int) -> list[float]:
    """Median step seconds of one process per core group, all timed at once."""
    processes = []
    for index, group in enumerate(groups):
        processes.append(subprocess.Popen(
            [sys.executable, __file__, "--worker", "--config", config_spec, "--steps",
             str(steps), "--seed", str(seed + index)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            preexec_fn=lambda group=group: os.sched_setaffinity(0, group)))
    try:
        for process in processes:
            line = process.stdout.readline().strip()
            if line != READY:
                raise RuntimeError(f"a worker failed before timing (said {line!r}; its "
                                   f"stderr is above)")
        for process in processes:
            process.stdin.write("go\n")
            process.stdin.flush()
        results = []
        for process in processes:
            out, _ = process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"a worker exited with status {process.returncode}")
            results.append(json.loads(out.strip().splitlines()[-1])["median_step_seconds"])
        return results
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()


def cores_label(group: list[int]) -> str:
    return ",".join(str(core) for core in group)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/jicd.py:campaign_sigma25",
                        help="config file and variant, as the training entry point's --config")
    parser.add_argument("--steps", type=int, default=15, help="timed steps per process")
    parser.add_argument("--lanes", type=int, default=2,
                        help="processes of the pinned arrangement (each gets its share of cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.steps < 1:
        parser.error("--steps must be at least 1")
    if arguments.worker:
        worker(arguments.config, arguments.steps, arguments.seed)
        return 0
    cores = sorted(os.sched_getaffinity(0))
    try:
        groups = split_cores(cores, arguments.lanes)
    except ValueError as error:
        parser.error(str(error))
    print(f"config {arguments.config}; usable cores {cores_label(cores)}; {arguments.steps} "
          f"timed steps per process; load average before {os.getloadavg()}", flush=True)
    print(f"{'arrangement':44s} {'s per step, each process':26s} {'steps/s in all':>15s} "
          f"{'vs one process':>15s}")
    baseline = None
    for label, arrangement in (("one process on every core", [cores]),
                               (f"{len(groups)} processes pinned to "
                                + " | ".join(cores_label(g) for g in groups), groups)):
        seconds = run_arrangement(arrangement, arguments.config, arguments.steps, arguments.seed)
        throughput = sum(1.0 / s for s in seconds)
        baseline = baseline or throughput
        print(f"{label:44s} {', '.join(f'{s:.3f}' for s in seconds):26s} {throughput:15.3f} "
              f"{throughput / baseline:15.2f}", flush=True)
    print(f"load average after {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
