"""XLA compilations of the training loop and of the .jdc codec: one per input shape, none after.

The requirement it checks: exactly one compilation per (input shape, config), and a training
run of many steps compiles nothing after its first step. Compilations are counted with
`jdc_jax.compilation_count` (JAX's ``/jax/core/compile/backend_compile_duration`` monitoring
event; executables loaded from a persistent cache are not counted).

1. Setup: the model, optimizer, initial state (replicated over the ('data',) mesh), step key
   and sharded, donating jit of `train_step`, built as `train.train_and_evaluate` builds them.
2. Training: `--steps` steps as the training loop runs them, on fresh random uint8 batches
   {"noisy", "clean"} of one shape (B, crop, crop, 3) instead of tf.data: the batch moved to the
   devices with `sharding.global_batch` under a "disallow" transfer guard, the compiled step, the
   loop's running sum of the metrics, and every `log_every_steps` steps the sum read back. A
   config whose target is "teacher" gets a random float32 teacher image in [0, 1] of the same
   shape: the teacher network (a separate program, compiled once) is not run. A denoiser told
   the noise level (FFDNet) gets a random "noise_level" per image (8-bit units, 0-75).
3. Codec: `Codec(model, trained params)` compresses (all layers) and decompresses (the denoised
   output) an image of the first `--image-sizes` size, another image of that size, and an image
   of the second size. Denoiser configs have no codec; this part is then reported as skipped.

Prints the compilations of the setup, of step 1, of steps 2..N (should be 0), of each codec call
(the second same-size calls should add 0) and the total of the run, each with the compiled
programs' names; `--json FILE` also writes these figures. Exit status 1 when steps 2..N or a
same-size codec call compiled anything, else 0.

    python benchmarks/bench_compilations.py [--config configs/jicd.py:small] [--steps 100]
        [--batch B] [--crop C] [--image-sizes 128x192,192x128] [--json FILE]

Run from the repository root (`--config` is a path relative to the working directory). A quick
check: `--config configs/jicd.py:smoke --steps 5`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

from jdc_jax.models import registry
from jdc_jax import sharding, train
from jdc_jax.codec import Codec, file_format
from jdc_jax.codec.api import PADDING_MULTIPLE
from jdc_jax.compilation_count import Compilations, count_compilations
from jdc_jax.config_validation import validate_config
from jdc_jax.atomic_write import write_bytes_atomic


def load_config(spec: str):
    """`path/to/config.py[:variant]` -> ConfigDict, as the training entry point's --config."""
    path, _, variant = spec.partition(":")
    if not Path(path).is_file():
        raise FileNotFoundError(f"--config {spec}: no config file {path} (run from the "
                                f"repository root)")
    module_spec = importlib.util.spec_from_file_location("benchmarked_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(variant) if variant else module.get_config()


def parse_size(text: str) -> tuple[int, int]:
    """"HxW" -> (H, W), both positive."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"image size {text!r} is not HEIGHTxWIDTH, e.g. 128x192") from None
    if height < 1 or width < 1:
        raise ValueError(f"image size {text!r} must be positive")
    return height, width


def summary(compilations: Compilations) -> dict:
    """{"count", "programs": {name: count}, "loaded_from_disk": [names]} (JSON-ready)."""
    return {"count": compilations.count, "programs": compilations.by_name(),
            "loaded_from_disk": list(compilations.loaded_from_disk)}


def report_line(label: str, figures: dict, note: str = "") -> None:
    """`label: count (program xN, ...)  note`."""
    programs = ", ".join(f"{name} x{count}" for name, count in figures["programs"].items())
    counts = f"{figures['count']}" + (f" ({programs})" if programs else "")
    print(f"{label + ':':34s} {counts}" + (f"  {note}" if note else ""), flush=True)


def random_batch(rng: np.random.Generator, shape: tuple, with_teacher: bool,
                 with_noise_level: bool = False) -> dict:
    """Random uint8 {"noisy", "clean"}, plus a float32 "teacher" image in [0, 1] and, for
    denoisers told the noise level (FFDNet), each image's "noise_level" in 8-bit units."""
    batch = {name: rng.integers(0, 256, shape, dtype=np.uint8) for name in ("noisy", "clean")}
    if with_teacher:
        batch["teacher"] = rng.uniform(0.0, 1.0, shape).astype(np.float32)
    if with_noise_level:
        batch["noise_level"] = rng.uniform(0.0, 75.0, shape[:1]).astype(np.float32)
    return batch


def build_training(config):
    """(mesh, model, replicated state, step key, compiled step) as the training loop builds them."""
    mesh = sharding.make_mesh()
    if config.batch_size % mesh.devices.size:
        raise ValueError(f"batch {config.batch_size} is not divisible by the "
                         f"{mesh.devices.size} devices")
    model = registry.model_from_config(config)
    tx = train.make_optimizer(config)
    init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
    state = sharding.replicate(train.create_train_state(config, model, tx, init_rng), mesh)
    step_rng = sharding.replicate(step_rng, mesh)
    return mesh, model, state, step_rng, train.compile_train_step(model, tx, config, mesh, state)


def run_training(config, steps: int, seed: int) -> tuple[dict, object, object]:
    """Compilations of setup, step 1 and steps 2..N; returns (figures, model, state)."""
    with count_compilations() as setup:
        mesh, model, state, step_rng, compiled_step = build_training(config)
    shape = (config.batch_size, config.crop_size, config.crop_size, 3)
    rng = np.random.default_rng(seed)
    with_teacher = config.target == "teacher"
    first, later = Compilations(), Compilations()
    seconds = []
    metric_sums = add_metrics = None
    for step in range(1, steps + 1):
        local_batch = random_batch(rng, shape, with_teacher, registry.takes_noise_level(model))
        start = time.perf_counter()
        with count_compilations() as compiled:
            # The loop body of train.train_and_evaluate, without tf.data and summaries.
            with jax.transfer_guard("disallow"):
                inputs = sharding.global_batch(local_batch, mesh)
                state, metrics = compiled_step(state, inputs, step_rng)
                if add_metrics is None:
                    add_metrics = train.compile_metric_sum(metrics)
                metric_sums = metrics if metric_sums is None else add_metrics(metric_sums,
                                                                              metrics)
            if step % config.log_every_steps == 0 or step == steps:
                jax.device_get(metric_sums)
                metric_sums = None
        jax.block_until_ready(state)
        seconds.append(time.perf_counter() - start)
        target = first if step == 1 else later
        target.names += compiled.names
        target.loaded_from_disk += compiled.loaded_from_disk
    figures = {"batch_shape": list(shape), "steps": steps, "setup": summary(setup),
               "step_1": summary(first), "steps_2_to_n": summary(later),
               "step_1_seconds": seconds[0],
               "median_later_step_seconds": statistics.median(seconds[1:])}
    return figures, model, state


def run_codec(model, params, model_kind: str, sizes: list[tuple[int, int]], seed: int) -> dict:
    """Compilations of building the codec and of each compress / decompress call."""
    with count_compilations() as setup:
        codec = Codec(model, params, model_kind=model_kind)
    rng = np.random.default_rng(seed)
    calls = []
    for label, (height, width) in (("first image", sizes[0]), ("same size", sizes[0]),
                                   ("other size", sizes[1])):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        with count_compilations() as compress:
            data = codec.compress(image)
        with count_compilations() as decompress:
            codec.decompress(data)
        calls.append({"image": label, "size": f"{height}x{width}",
                      "compress": summary(compress), "decompress": summary(decompress)})
    return {"setup": summary(setup), "calls": calls}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/jicd.py:small",
                        help="config file and variant, e.g. configs/jicd.py:small")
    parser.add_argument("--steps", type=int, default=100, help="training steps (at least 2)")
    parser.add_argument("--batch", type=int, help="global batch size (default: the config's)")
    parser.add_argument("--crop", type=int, help="crop side (default: the config's)")
    parser.add_argument("--image-sizes", default="128x192,192x128",
                        help="two codec image sizes HxW,HxW that pad to different shapes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random batches/images")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    arguments = parser.parse_args(argv)
    if arguments.steps < 2:
        parser.error("--steps must be at least 2 (step 1 compiles; the check is on the rest)")
    sizes = [parse_size(text) for text in arguments.image_sizes.split(",")]
    padded = {tuple(-(-side // PADDING_MULTIPLE) * PADDING_MULTIPLE for side in size)
              for size in sizes}
    if len(sizes) != 2 or len(padded) != 2:
        parser.error(f"--image-sizes needs two sizes that pad (to multiples of "
                     f"{PADDING_MULTIPLE}) to different shapes, got {arguments.image_sizes}")

    config = load_config(arguments.config)
    if arguments.batch is not None:
        config.batch_size = arguments.batch
    if arguments.crop is not None:
        config.crop_size = arguments.crop
    # The data source is never read (batches are random), so it is not checked.
    checked = config.copy_and_resolve_references()
    checked.data_source = "builtin"
    validate_config(checked)

    print(f"config {arguments.config} ({config.model}); {jax.device_count()} "
          f"{jax.default_backend()} device(s)", flush=True)
    with count_compilations() as everything:
        training, model, state = run_training(config, arguments.steps, arguments.seed)
        report_line("training setup", training["setup"])
        report_line("step 1", training["step_1"],
                    f"({training['step_1_seconds']:.1f} s with compilation)")
        report_line(f"steps 2..{arguments.steps}", training["steps_2_to_n"],
                    f"(should be 0; median step {training['median_later_step_seconds']:.3f} s)")
        figures = {"config": arguments.config, "model": config.model, "training": training}
        if config.model in file_format.MODEL_KINDS:
            codec = run_codec(model, sharding.local_copy(state.params), config.model, sizes,
                              arguments.seed)
            report_line("codec setup", codec["setup"])
            for call in codec["calls"]:
                for part in ("compress", "decompress"):
                    report_line(f"{part} {call['size']} ({call['image']})", call[part])
        else:
            codec = {"skipped": f"a {config.model} model has no .jdc codec"}
            print(f"codec: skipped ({codec['skipped']})")
        figures["codec"] = codec
    figures["total"] = summary(everything)
    report_line("total", figures["total"])

    failures = []
    if training["steps_2_to_n"]["count"]:
        failures.append(f"steps 2..{arguments.steps} compiled "
                        f"{training['steps_2_to_n']['programs']}")
    same_size = [call for call in codec.get("calls", []) if call["image"] == "same size"]
    for call in same_size:
        for part in ("compress", "decompress"):
            if call[part]["count"]:
                failures.append(f"{part} of a second {call['size']} image compiled "
                                f"{call[part]['programs']}")
    figures["passed"] = not failures
    if arguments.json:
        write_bytes_atomic(arguments.json, json.dumps(figures, indent=2).encode())
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
