"""Training, input pipeline, forward pass and decode at paper size on one accelerator: one table.

    python benchmarks/bench_accelerator.py          # paper size on JAX's default device (a GPU)
    python benchmarks/bench_accelerator.py --cpu    # small sizes on the CPU (the CI smoke test)

Everything runs on JAX's default backend, one device, in one process; at paper size it is meant
to finish in under 8 minutes on one GPU (compilation included). The model is JICD (N = M = 192,
base layer 180 channels, serial context; `--channels`), randomly initialised.

1. Training, for each of `--dtypes` (float32 and bfloat16 convolutions): batch 16 of 256 x 256
   crops (`--batch`, `--crop`) from the real tf.data pipeline (`input_pipeline.
   create_train_dataset`: the built-in images, AWGN sigma 25 synthesized in TF), through the
   training loop's compiled step (`train.compile_train_step`). Compile: seconds of its
   ahead-of-time lower + compile. Then one warm-up step and `--steps` steps as the loop runs
   them (read the batch, move it to the device, run the step), each waited for before the next:
   step time (median, from the batch on the device to the step's end), images/s (the batch over
   the median whole loop iteration, input included) and input wait (the share of the
   iterations' time spent reading the pipeline).
2. Codec, for each of `--image-sizes` (H x W; default 512x768 and 2048x2048): the eval forward
   pass (jitted, all outputs and likelihoods, on the image padded to a multiple of 64), compress (serial context, wavefront order), the
   decompress of the denoised output, and the decoder's forward pass alone (hyper-synthesis and
   synthesis from the decoded latents: the decode's lower bound, `bench_codec.decoder_forward`)
   with decode / forward. Each is the median of `--repeats` calls after a first (compiling) one.
   The image is the 512 x 768 Kodak benchmark image (`bench_codec.benchmark_image`), mirrored
   to fill other sizes. Random weights code many escape symbols, so entropy coding costs more
   than with a trained model.
3. Compilations (`jdc_jax.compilation_count`): the training step's compile (1 per dtype) and
   those of the steps after it (0); the codec's first compress + decompress + decoder forward
   per image size (programs of a new shape, and the wavefront programs of new buckets), and
   those of another image of that size (0).

Prints one markdown table (figure | value) and exits with status 1 when a later step or a
repeated image size compiled anything.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench_codec import (benchmark_image, decoder_forward,  # noqa: E402
                         first_and_median_seconds)
from jdc_jax import input_pipeline, sharding, train  # noqa: E402
from jdc_jax.codec import Codec  # noqa: E402
from jdc_jax.codec.api import PADDING_MULTIPLE, pad_to_multiple  # noqa: E402
from jdc_jax.compilation_count import count_compilations  # noqa: E402
from jdc_jax.default_config import get_config  # noqa: E402
from jdc_jax.models import init_params, registry  # noqa: E402

# (paper size, --cpu): the defaults of each setting.
DEFAULTS = {
    "channels": (192, 16),
    "batch": (16, 2),
    "crop": (256, 64),
    "steps": (20, 3),
    "image_sizes": ("512x768,2048x2048", "64x96,128x128"),
    "repeats": (2, 1),
}
DTYPES = ("float32", "bfloat16")


def jicd_config(channels: int, dtype: str, batch: int, crop: int):
    """The default JICD config at `channels` (base layer 180/192 of them), AWGN 25 on the
    built-in images."""
    config = get_config()
    config.model = "jicd"
    config.channels = config.latent_channels = channels
    config.base_channels = channels * 180 // 192
    config.context_model = "serial"
    config.dtype = dtype
    config.batch_size, config.crop_size = batch, crop
    config.data_source, config.noise = "builtin", "awgn:25"
    return config


def time_training(arguments, dtype: str) -> dict:
    """Compile seconds, median step seconds, images/s, input wait share and compilations of
    the training step at `dtype`, fed by the tf.data pipeline."""
    config = jicd_config(arguments.channels, dtype, arguments.batch, arguments.crop)
    model = registry.model_from_config(config)
    tx = train.make_optimizer(config)
    mesh = sharding.make_mesh(jax.devices()[:1])
    state = sharding.replicate(train.create_train_state(config, model, tx, jax.random.key(0)),
                               mesh)
    step_rng = sharding.replicate(jax.random.key(1), mesh)
    dataset = input_pipeline.create_train_dataset(
        config.data_source, config.noise, batch_size=config.batch_size,
        crop_size=config.crop_size, seed=config.seed)
    iterator = iter(dataset)

    def next_batch():
        return {name: value.numpy() for name, value in next(iterator).items()}

    inputs = sharding.global_batch(next_batch(), mesh)
    with count_compilations() as compiled:
        start = time.perf_counter()
        step = train.compile_train_step(model, tx, config, mesh, state).lower(
            state, inputs, step_rng).compile()
        compile_seconds = time.perf_counter() - start
    state, metrics = step(state, inputs, step_rng)  # warm-up
    jax.block_until_ready((state, metrics))  # the update too, not the loss alone
    waits, steps, iterations = [], [], []
    with count_compilations() as later:
        for _ in range(arguments.steps):
            start = time.perf_counter()
            batch = next_batch()
            read = time.perf_counter()
            state, metrics = step(state, sharding.global_batch(batch, mesh), step_rng)
            jax.block_until_ready((state, metrics))  # the update too, not the loss alone
            end = time.perf_counter()
            waits.append(read - start)
            steps.append(end - read)
            iterations.append(end - start)
    loss = float(jax.device_get(metrics["loss"]))
    if not np.isfinite(loss):
        raise SystemExit(f"training at {dtype}: the loss is {loss}")
    return {"compile_seconds": compile_seconds, "step_seconds": statistics.median(steps),
            "images_per_second": config.batch_size / statistics.median(iterations),
            "input_wait": sum(waits) / sum(iterations), "compilations": compiled.count,
            "later_compilations": later.count}


def image_of_size(height: int, width: int) -> np.ndarray:
    """The benchmark image, cropped or mirrored to (height, width)."""
    image, _ = benchmark_image()
    while image.shape[0] < height or image.shape[1] < width:
        rows = min(image.shape[0], max(0, height - image.shape[0]))
        cols = min(image.shape[1], max(0, width - image.shape[1]))
        image = np.pad(image, ((0, rows), (0, cols), (0, 0)), mode="symmetric")
    return np.ascontiguousarray(image[:height, :width])


def time_codec(arguments, sizes) -> dict:
    """Per image size: forward, compress, decode and decoder-forward seconds, and the
    compilations of a first and of a repeated image."""
    config = jicd_config(arguments.channels, "float32", 1, 64)
    model = registry.model_from_config(config)
    params = jax.device_get(init_params(model, jax.random.key(0), (1, 64, 64, 3)))
    codec = Codec(model, params)
    forward = jax.jit(lambda params, x: model.apply({"params": params}, x, train=False))
    device_params = jax.device_put(params)
    results = {}
    for height, width in sizes:
        image = image_of_size(height, width)
        padded = pad_to_multiple(image, PADDING_MULTIPLE)  # what the codec's model sees
        x = jax.device_put(padded[None].astype(np.float32) / 255.0)
        _, forward_seconds, _ = first_and_median_seconds(
            lambda: jax.block_until_ready(forward(device_params, x)), arguments.repeats)
        with count_compilations() as first_image:
            _, compress_seconds, data = first_and_median_seconds(
                lambda: codec.compress(image, scan_order="wavefront"), arguments.repeats)
            _, decode_seconds, decoding = first_and_median_seconds(
                lambda: codec.decode(data, "denoised"), arguments.repeats)
            _, bound_seconds, _ = first_and_median_seconds(
                lambda: decoder_forward(codec, decoding), arguments.repeats)
        with count_compilations() as repeat:
            codec.decompress(codec.compress(np.ascontiguousarray(image[::-1])), "denoised")
        results[(height, width)] = {
            "forward_seconds": forward_seconds, "compress_seconds": compress_seconds,
            "decode_seconds": decode_seconds, "decoder_forward_seconds": bound_seconds,
            "bytes": len(data), "compilations": first_image.count,
            "repeat_compilations": repeat.count}
    return results


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """"HxW,HxW" -> [(H, W), ...]."""
    sizes = []
    for part in text.split(","):
        try:
            height, width = (int(side) for side in part.lower().split("x"))
        except ValueError:
            raise ValueError(f"image size {part!r} is not HEIGHTxWIDTH") from None
        if height < 1 or width < 1:
            raise ValueError(f"image size {part!r} must be positive")
        sizes.append((height, width))
    return sizes


def table_rows(arguments, training: dict, codec: dict, seconds: float) -> list[tuple[str, str]]:
    device = jax.devices()[0]
    rows = [("device", f"{jax.default_backend()}: {device.device_kind} "
                       f"({jax.device_count()} device(s), 1 used)"),
            ("model", f"JICD N=M={arguments.channels} (base {arguments.channels * 180 // 192}), "
                      f"serial context, random weights")]
    batch = f"batch {arguments.batch} of {arguments.crop}x{arguments.crop}"
    for dtype, figures in training.items():
        rows += [
            (f"training {dtype}: images/s ({batch}, tf.data input)",
             f"{figures['images_per_second']:.2f}"),
            (f"training {dtype}: step time (median of {arguments.steps})",
             f"{figures['step_seconds']:.4f} s"),
            (f"training {dtype}: compile time", f"{figures['compile_seconds']:.1f} s"),
            (f"training {dtype}: input wait share", f"{100 * figures['input_wait']:.2f} %"),
        ]
    for (height, width), figures in codec.items():
        size = f"{height}x{width}"
        rows += [
            (f"forward {size} (eval pass, all outputs)", f"{figures['forward_seconds']:.4f} s"),
            (f"compress {size} (serial wavefront)", f"{figures['compress_seconds']:.4f} s"),
            (f"decode {size} (denoised, serial wavefront)", f"{figures['decode_seconds']:.4f} s"),
            (f"decoder forward {size} (hyper-synthesis + synthesis)",
             f"{figures['decoder_forward_seconds']:.4f} s"),
            (f"decode / decoder forward {size}",
             f"{figures['decode_seconds'] / figures['decoder_forward_seconds']:.2f}"),
        ]
    for dtype, figures in training.items():
        rows.append((f"compilations: training step {dtype} (compile / {arguments.steps} steps)",
                     f"{figures['compilations']} / {figures['later_compilations']}"))
    for (height, width), figures in codec.items():
        rows.append((f"compilations: codec {height}x{width} (first image / second image)",
                     f"{figures['compilations']} / {figures['repeat_compilations']}"))
    rows.append(("wall time of this benchmark", f"{seconds:.0f} s"))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true",
                        help="run on the CPU with small defaults (N = M = 16, batch 2 of 64x64, "
                             "3 steps, images 64x96 and 128x128, 1 repeat)")
    parser.add_argument("--channels", type=int, help="N = M (default 192; 16 with --cpu)")
    parser.add_argument("--batch", type=int, help="training batch (default 16; 2 with --cpu)")
    parser.add_argument("--crop", type=int, help="training crop side (default 256; 64 with --cpu)")
    parser.add_argument("--steps", type=int, help="timed training steps (default 20; 3 with --cpu)")
    parser.add_argument("--dtypes", default=",".join(DTYPES),
                        help="training compute dtypes, of float32 and bfloat16")
    parser.add_argument("--image-sizes", dest="image_sizes",
                        help="codec image sizes HxW,... (default 512x768,2048x2048; "
                             "64x96,128x128 with --cpu)")
    parser.add_argument("--repeats", type=int,
                        help="timed calls after the first (default 2; 1 with --cpu)")
    arguments = parser.parse_args(argv)
    if arguments.cpu:
        jax.config.update("jax_platforms", "cpu")
    for name, defaults in DEFAULTS.items():
        if getattr(arguments, name) is None:
            setattr(arguments, name, defaults[1 if arguments.cpu else 0])
    dtypes = [dtype for dtype in arguments.dtypes.split(",") if dtype]
    if not dtypes or set(dtypes) - set(DTYPES):
        parser.error(f"--dtypes must name some of {DTYPES}, got {arguments.dtypes!r}")
    if min(arguments.steps, arguments.repeats, arguments.batch) < 1:
        parser.error("--steps, --repeats and --batch must be at least 1")
    try:
        sizes = parse_sizes(arguments.image_sizes)
    except ValueError as error:
        parser.error(str(error))

    start = time.perf_counter()
    print(f"{jax.default_backend()} backend, {jax.device_count()} device(s); load average "
          f"{os.getloadavg()}", flush=True)
    training = {}
    for dtype in dtypes:
        training[dtype] = time_training(arguments, dtype)
        print(f"training {dtype} done ({time.perf_counter() - start:.0f} s)", flush=True)
    codec = time_codec(arguments, sizes)
    rows = table_rows(arguments, training, codec, time.perf_counter() - start)
    width = max(len(figure) for figure, _ in rows)
    print(f"\n| {'figure':<{width}} | value |\n|{'-' * (width + 2)}|---|")
    for figure, value in rows:
        print(f"| {figure:<{width}} | {value} |")
    print(f"\nload average at the end {os.getloadavg()}")
    failures = [f"training {dtype}: {figures['later_compilations']} compilations after the "
                f"first step" for dtype, figures in training.items()
                if figures["later_compilations"]]
    failures += [f"codec {height}x{width}: a second image compiled "
                 f"{figures['repeat_compilations']} programs"
                 for (height, width), figures in codec.items() if figures["repeat_compilations"]]
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
