"""Training-step, inference and compress/decompress times of CompressAI models next to ours.

All in one process, so both run on the same machine under the same load.

    bash benchmarks/setup_peer_env.sh      # once: torch + CompressAI + jdc_jax in one virtualenv
    benchmarks/.peer-venv/bin/python benchmarks/bench_vs_compressai.py [--repeats 3] [--json F]
    benchmarks/.peer-venv/bin/python benchmarks/bench_vs_compressai.py --quick   # smoke check
    ... --pairs cheng2020-anchor --ours jicd    # one model per process: less peak memory
    ... --parts coding --coding_contexts serial-wavefront,checkerboard   # only some measurements

Pairs, all randomly initialised (CompressAI pretrained=False), N = M = 192:

- CompressAI "mbt2018-mean" vs our `Hyperprior` (context "none"). The zoo's qualities use
  (N, M) = (128, 192) or (192, 320), so `MeanScaleHyperprior(N=192, M=192)` is built directly.
- CompressAI "cheng2020-anchor" (`Cheng2020Anchor(N=192)`, zoo qualities 4-6; its M = N) vs our
  `codec` (Cheng2020 without attention, serial context) and our JICD (base 180 / enhancement
  12, serial context; two synthesis transforms, so more work than the anchor). For coding, each
  of ours runs with the serial context in wavefront order (the default of our files) and in
  raster order, and with the checkerboard context (`--coding_contexts`).

Measured (`--parts`, default all three):

(a) train: training step, batch 8 of 256x256 images, loss bpp + lambda * 255^2 * MSE (lambda
    0.013). Ours: `train.compile_train_step` on one device (jit, donated state; gradient
    clipping at norm 1, Adam, plateau schedule), its compile time reported apart and excluded.
    Peer: the step of CompressAI's examples/train.py: forward, RateDistortionLoss, backward,
    clip_grad_norm_(1.0), Adam on the network, then the auxiliary (quantile) loss's backward
    and its Adam step.
(b) inference: the eval-mode forward pass (transforms, rounding, likelihoods), batch 1, one
    512x768 (H x W) generated image. Ours jitted (compile excluded); peer in eval mode under
    no_grad.
(c) coding: the full compress and decompress of one 512x768 image, entropy coding included:
    the first landscape Kodak image (`bench_codec.benchmark_image`; a generated one without
    ../shared/testsets/kodak24; cropped at its top left for smaller --image sizes). Peer: eval
    mode, `update(force=True)` (builds its CDF tables; timed as setup), then under no_grad
    `compress(x)` of the 1x3xHxW tensor in [0, 1] and `decompress(strings, shape)`; bytes =
    all its strings. Ours: `jdc_jax.codec.Codec(model, params)` (table building and setup timed
    apart), `compress(image)` of the uint8 image and `decompress(data, output)`, for JICD both
    outputs "denoised" (side + base chunks) and "noisy" (all chunks); bytes = the whole .jdc
    file, header included. Autoregressive (serial) decoding is a loop over the 32 x 48 latent
    positions on the peer's side, so its Cheng2020 decompress takes seconds to minutes; ours
    loops over 141 wavefronts (serial-wavefront) or the 1536 positions (serial-raster).
    Beside each of our decompresses, the decoder's forward pass alone (`bench_codec.
    decoder_forward`: hyper-synthesis and the output's synthesis, from the decoded latents,
    with the codec's own compiled functions): the lower bound of a decode. The two alternate,
    one of each per repeat, so both see the same load; decode / forward, the context overhead
    (1 = no cost beyond the transforms), is the median of the repeats' ratios.
    Random weights give unrepresentative rates: CompressAI's initial analysis transforms give
    latents below 0.5 in magnitude, so all its symbols are 0 (both its models write the same
    12508 bytes at 512x768), while ours code many symbols through the escape code
    (bench_codec.py). The bytes only show that both coded something; the times are meaningful
    (our range coding is a small part of ours, the transforms the rest).

Timing: for (a) and (b), the median of --repeats timed runs after one untimed warm-up (for ours
the warm-up is the compiling call). For (c), the first call (ours: compile included) is
reported apart and the figure is the median of --repeats further calls (the peer's:
--peer_repeats, default --repeats). Ratio = peer / ours, so
above 1 means ours is faster. Threads: torch.set_num_threads(2) for intra-op parallelism;
XLA:CPU uses its own pool over all cores. Within a pair the peer runs first, then each of ours;
the peak resident memory of the process so far is printed after each. A table of the coding
ratios closes the run. Wall-clock times on whatever else the machine runs.

Load and torch's threads. With other processes busy on the cores, torch's OpenMP threads
spin-wait for each other (libgomp's default active wait) and the peer's many small per-position
calls of a serial context slow down by up to an order of magnitude (Cheng2020 compress 3.4 s to
77 s on 2 cores within minutes); OMP_WAIT_POLICY=PASSIVE in the environment (recorded in the
first line) keeps them near their idle speed under load, and is the fairer setting there.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

# torch before TensorFlow, which jdc_jax.train imports: with TensorFlow 2.21 loaded first,
# torch 2.14.1's import of triton crashes the process (segmentation fault).
try:
    import compressai
    import torch
except ImportError as error:
    _PEER_IMPORT_ERROR = error
else:
    _PEER_IMPORT_ERROR = None
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from bench_codec import benchmark_image, decoder_forward, first_and_median_seconds
from jdc_jax.models import registry
from jdc_jax import sharding, train
from jdc_jax.checkpoints import write_json_atomic
from jdc_jax.codec import Codec
from jdc_jax.default_config import get_config
from jdc_jax.models import init_params

LMBDA = 0.013
TORCH_THREADS = 2
PARTS = ("train", "inference", "coding")
# The measure each model part times (its results are "<name>_seconds").
MEASURE_NAMES = {"train": "train_step", "inference": "inference"}
# Our model kinds and fields compared with each CompressAI architecture.
PAIRS = {
    "mbt2018-mean": (("hyperprior", {"context_model": "none"}),),
    "cheng2020-anchor": (("codec", {"context_model": "serial"}),
                         ("jicd", {"context_model": "serial"})),
}
# Context models (and scan orders of the serial one) our autoregressive kinds are coded with in
# part (c).
CODING_CONTEXTS = ("serial-wavefront", "serial-raster", "checkerboard")


def import_peer():
    """torch and compressai, with a clear message when they are not installed."""
    if _PEER_IMPORT_ERROR is not None:
        raise SystemExit(f"{_PEER_IMPORT_ERROR}: run benchmarks/setup_peer_env.sh and use "
                         "benchmarks/.peer-venv/bin/python")
    return torch, compressai


def median_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def synthetic_images(batch: int, height: int, width: int, seed: int = 0):
    """(clean, noisy) uint8 NHWC: smooth colour gradients with texture, and an AWGN-25 copy."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, height)[None, :, None, None]
    cols = np.linspace(0.0, 1.0, width)[None, None, :, None]
    phase = rng.uniform(0, 2 * np.pi, (batch, 1, 1, 3))
    clean = 0.5 + 0.4 * np.sin(6.0 * rows + 4.0 * cols + phase)
    clean = np.clip(255 * clean + rng.normal(0, 8, clean.shape), 0, 255)
    noisy = np.clip(clean + rng.normal(0, 25, clean.shape), 0, 255)
    return clean.astype(np.uint8), noisy.astype(np.uint8)


def coding_image(height: int, width: int) -> tuple[np.ndarray, str]:
    """The uint8 (height, width, 3) image both codecs code, and where it came from: the
    512x768 benchmark image, cropped at its top left when a smaller size is asked for."""
    image, source = benchmark_image()
    if height > image.shape[0] or width > image.shape[1]:
        raise ValueError(f"the coding image is {image.shape[0]}x{image.shape[1]}; cannot code "
                         f"{height}x{width}")
    if (height, width) != image.shape[:2]:
        source = f"{source} (top-left {height}x{width})"
    return np.ascontiguousarray(image[:height, :width]), source


def our_config(kind: str, fields: dict, channels: int, batch: int, size: int):
    config = get_config()
    config.model = kind
    config.channels = config.latent_channels = channels
    config.base_channels = channels * 180 // 192  # the default 180 / 12 split, scaled
    config.lmbda = LMBDA
    config.target = "clean"
    config.batch_size, config.crop_size = batch, size
    for name, value in fields.items():
        setattr(config, name, value)
    return config


def time_ours(kind: str, fields: dict, args, parts) -> dict:
    """Our training step and/or inference pass: compile seconds and median seconds of each.
    Inference runs on the trained state's parameters when the step ran, else on fresh ones."""
    config = our_config(kind, fields, args.channels, args.train_batch, args.train_size)
    model = registry.model_from_config(config)
    timings = {}
    if "train" in parts:
        tx = train.make_optimizer(config)
        mesh = sharding.make_mesh(jax.devices()[:1])
        replicated = NamedSharding(mesh, P())
        start = time.perf_counter()
        state = jax.device_put(train.create_train_state(config, model, tx, jax.random.key(0)),
                               replicated)
        timings["init_seconds"] = time.perf_counter() - start
        rng = jax.device_put(jax.random.key(1), replicated)
        clean, noisy = synthetic_images(args.train_batch, args.train_size, args.train_size)
        batch = sharding.global_batch({"clean": clean, "noisy": noisy}, mesh)
        step = train.compile_train_step(model, tx, config, mesh, state)
        holder = {"state": state}

        def training_step():
            holder["state"], metrics = step(holder["state"], batch, rng)
            jax.block_until_ready((holder["state"], metrics))

        (timings["train_step_first_call_seconds"], timings["train_step_seconds"],
         _) = first_and_median_seconds(training_step, args.repeats)
        params = holder["state"].params
    else:
        start = time.perf_counter()
        params = init_params(model, jax.random.key(0), (1, args.train_size, args.train_size, 3))
        timings["init_seconds"] = time.perf_counter() - start

    if "inference" in parts:
        _, image = synthetic_images(1, args.image_height, args.image_width, seed=1)
        x = jax.device_put(image.astype(np.float32) / 255.0)
        forward = jax.jit(lambda params, x: model.apply({"params": params}, x, train=False))
        (timings["inference_first_call_seconds"], timings["inference_seconds"],
         _) = first_and_median_seconds(lambda: jax.block_until_ready(forward(params, x)),
                                       args.repeats)
    return timings


def time_ours_coding(kind: str, coding_context: str, image: np.ndarray, args) -> dict:
    """Our `Codec` on randomly initialised weights: setup, compress and each output's
    decompress and decoder forward pass (first call and median seconds), and the file's bytes.
    coding_context: a context model, for the serial one with its scan order
    ("serial-wavefront", "serial-raster")."""
    context_model, _, scan_order = coding_context.partition("-")
    config = our_config(kind, {"context_model": context_model}, args.channels,
                        args.train_batch, args.train_size)
    model = registry.model_from_config(config)
    start = time.perf_counter()
    params = jax.device_get(init_params(model, jax.random.key(0), (1, 64, 64, 3)))
    init_seconds = time.perf_counter() - start
    start = time.perf_counter()
    codec = Codec(model, params, model_kind=kind)
    timings = {"init_seconds": init_seconds, "setup_seconds": time.perf_counter() - start}
    first, median, data = first_and_median_seconds(
        lambda: codec.compress(image, scan_order=scan_order or "raster"), args.repeats)
    timings.update(compress_first_call_seconds=first, compress_seconds=median, bytes=len(data))
    # Single-output models decode one reconstruction; JICD decodes the base layer alone
    # ("denoised") or all layers ("noisy").
    outputs = ("denoised", "noisy") if codec.scalable else ("reconstruction",)
    for output in outputs:
        start = time.perf_counter()
        decoding = codec.decode(data, output)
        timings[f"decompress_{output}_first_call_seconds"] = time.perf_counter() - start
        if decoding.image.shape != image.shape:
            raise RuntimeError(f"{kind} decoded a {decoding.image.shape} image from a "
                               f"{image.shape} one")
        start = time.perf_counter()
        decoder_forward(codec, decoding)
        timings[f"forward_{output}_first_call_seconds"] = time.perf_counter() - start
        # Decode and forward pass alternate, so both see the same load.
        decodes, forwards = [], []
        for _ in range(args.repeats):
            decodes.append(median_seconds(lambda: codec.decompress(data, output), 1))
            forwards.append(median_seconds(lambda: decoder_forward(codec, decoding), 1))
        timings[f"decompress_{output}_seconds"] = statistics.median(decodes)
        timings[f"forward_{output}_seconds"] = statistics.median(forwards)
        timings[f"decode_over_forward_{output}"] = statistics.median(
            decode / forward for decode, forward in zip(decodes, forwards))
    return timings


def peer_model(torch, architecture: str, channels: int):
    from compressai.models import Cheng2020Anchor, MeanScaleHyperprior

    torch.manual_seed(0)
    if architecture == "mbt2018-mean":
        return MeanScaleHyperprior(N=channels, M=channels)
    if architecture == "cheng2020-anchor":
        return Cheng2020Anchor(N=channels)
    raise ValueError(f"no CompressAI model for {architecture!r}; expected one of {list(PAIRS)}")


def nchw_tensor(torch, images):
    """uint8 NHWC images -> a contiguous float NCHW tensor in [0, 1], the layout CompressAI's
    data loaders give. (A transposed, channels-last-strided view made torch 2.14.1's CPU
    training step of Cheng2020Anchor crash at batch 8 of 256x256.)"""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2),
                                                 dtype=np.float32) / 255.0)


def time_peer(torch, architecture: str, args, parts) -> dict:
    """CompressAI's training step and/or inference pass: median seconds of each."""
    from compressai.losses import RateDistortionLoss

    net = peer_model(torch, architecture, args.channels)
    timings = {}
    if "train" in parts:
        # examples/train.py: quantiles get their own optimizer, driven by the auxiliary loss.
        main_parameters = [p for n, p in net.named_parameters() if not n.endswith(".quantiles")]
        aux_parameters = [p for n, p in net.named_parameters() if n.endswith(".quantiles")]
        optimizer = torch.optim.Adam(main_parameters, lr=1e-4)
        aux_optimizer = torch.optim.Adam(aux_parameters, lr=1e-3)
        criterion = RateDistortionLoss(lmbda=LMBDA)
        _, noisy = synthetic_images(args.train_batch, args.train_size, args.train_size)
        x = nchw_tensor(torch, noisy)

        def training_step():
            optimizer.zero_grad()
            aux_optimizer.zero_grad()
            loss = criterion(net(x), x)["loss"]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            net.aux_loss().backward()
            aux_optimizer.step()

        net.train()
        training_step()  # warm-up
        timings["train_step_seconds"] = median_seconds(training_step, args.repeats)

    if "inference" in parts:
        _, image = synthetic_images(1, args.image_height, args.image_width, seed=1)
        image = nchw_tensor(torch, image)
        net.eval()

        def forward():
            with torch.no_grad():
                net(image)
        forward()  # warm-up
        timings["inference_seconds"] = median_seconds(forward, args.repeats)
    return timings


def time_peer_coding(torch, architecture: str, image: np.ndarray, args) -> dict:
    """CompressAI's compress and decompress of `image` (uint8 HWC): first call and median
    seconds of each, the seconds of `update(force=True)`, and the bytes of its strings."""
    net = peer_model(torch, architecture, args.channels).eval()
    x = nchw_tensor(torch, image[None])
    start = time.perf_counter()
    net.update(force=True)
    timings = {"setup_seconds": time.perf_counter() - start}

    def compress():
        with torch.no_grad():
            return net.compress(x)
    first, median, compressed = first_and_median_seconds(compress, args.peer_repeats)
    # strings: one list per stream (y, z), one byte string per batch item in each.
    timings.update(compress_first_call_seconds=first, compress_seconds=median,
                   bytes=sum(len(s) for stream in compressed["strings"] for s in stream))

    def decompress():
        with torch.no_grad():
            return net.decompress(compressed["strings"], compressed["shape"])
    first, median, decoded = first_and_median_seconds(decompress, args.peer_repeats)
    if tuple(decoded["x_hat"].shape) != tuple(x.shape):
        raise RuntimeError(f"{architecture} decoded {tuple(decoded['x_hat'].shape)} from "
                           f"{tuple(x.shape)}")
    timings.update(decompress_first_call_seconds=first, decompress_seconds=median)
    return timings


def peak_memory_gib() -> float:
    """Peak resident memory of this process so far (Linux reports kibibytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def coding_rows(architecture: str, kind: str, context_model: str, ours: dict,
                peer: dict) -> list[dict]:
    """One result row per measure of a coding comparison: compress, and the decompress of
    each of our outputs against the peer's one decompress."""
    measures = [("compress_seconds", "compress_seconds")]
    measures += [(name, "decompress_seconds") for name in ours
                 if name.startswith("decompress_") and not name.endswith("first_call_seconds")]
    rows = []
    for our_measure, peer_measure in measures:
        first_call = our_measure.replace("_seconds", "_first_call_seconds")
        peer_first_call = peer_measure.replace("_seconds", "_first_call_seconds")
        row = {"part": "coding", "peer": architecture, "ours": kind,
               "context_model": context_model, "measure": our_measure,
               "ours_seconds": ours[our_measure], "peer_seconds": peer[peer_measure],
               "peer_over_ours": peer[peer_measure] / ours[our_measure],
               "ours_first_call_seconds": ours[first_call],
               "peer_first_call_seconds": peer[peer_first_call],
               "ours_bytes": ours["bytes"], "peer_bytes": peer["bytes"],
               "ours_timings": ours, "peer_timings": peer}
        forward = our_measure.replace("decompress_", "forward_")
        if forward != our_measure:
            row["ours_forward_seconds"] = ours[forward]
            row["decode_over_forward"] = ours[our_measure.replace("decompress_",
                                                                  "decode_over_forward_")
                                              .removesuffix("_seconds")]
        rows.append(row)
    return rows


def print_coding_table(rows: list[dict], image_source: str, repeats: int,
                       peer_repeats: int) -> None:
    """Ours / peer seconds and the ratio peer / ours of compress and decompress, per pair."""
    coding = [row for row in rows if row["part"] == "coding"]
    if not coding:
        return
    print(f"\ncoding {image_source}: median seconds of {repeats} (peer: {peer_repeats}) after a "
          f"first call, ours / peer (peer/ours); forward: our decoder's forward pass alone "
          f"(decode / forward, median of paired repeats); bytes ours / peer")
    print(f"{'pair':<54} {'compress':>26} {'decompress':>26} {'forward':>16} {'bytes':>17}")
    compress = {(row["peer"], row["ours"], row["context_model"]): row for row in coding
                if row["measure"] == "compress_seconds"}

    def cell(row):
        return (f"{row['ours_seconds']:.3f} / {row['peer_seconds']:.3f} "
                f"({row['peer_over_ours']:.1f})")
    for row in coding:
        if row["measure"] == "compress_seconds":
            continue
        output = row["measure"][len("decompress_"):-len("_seconds")]
        pair = f"{row['ours']} {row['context_model']} {output} vs {row['peer']}"
        forward = f"{row['ours_forward_seconds']:.3f} ({row['decode_over_forward']:.2f})"
        print(f"{pair:<54} {cell(compress[(row['peer'], row['ours'], row['context_model'])]):>26} "
              f"{cell(row):>26} {forward:>16} {row['ours_bytes']:>8d} / {row['peer_bytes']:<6d}")


def parse_list(text: str, known, what: str, parser) -> list[str]:
    """Comma-separated names, each one of `known` (else a parser error naming them)."""
    names = [name for name in text.split(",") if name]
    unknown = sorted(set(names) - set(known))
    if unknown:
        parser.error(f"unknown {what} {unknown}; expected some of {list(known)}")
    return names


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default=",".join(PAIRS),
                        help=f"comma-separated CompressAI architectures, of {list(PAIRS)}")
    parser.add_argument("--ours", default="hyperprior,codec,jicd",
                        help="comma-separated model kinds of ours to run (within the pairs)")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated measurements, of {list(PARTS)}")
    parser.add_argument("--coding_contexts", default=",".join(CODING_CONTEXTS),
                        help="context models our codec and JICD are coded with (coding part), "
                             f"of {list(CODING_CONTEXTS)}")
    parser.add_argument("--channels", type=int, default=192, help="N = M of every model")
    parser.add_argument("--train_batch", type=int, default=8)
    parser.add_argument("--train_size", type=int, default=256, help="training crop side")
    parser.add_argument("--image_height", type=int, default=512)
    parser.add_argument("--image_width", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer_repeats", type=int,
                        help="timed repeats of the peer's calls (default: --repeats); its "
                             "serial decompress takes about a minute")
    parser.add_argument("--quick", action="store_true",
                        help="smoke check: N = M = 32, batch 2 of 64x64, a 128x192 image, "
                             "1 repetition")
    parser.add_argument("--json", default="", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.channels, args.train_batch, args.train_size = 32, 2, 64
        args.image_height, args.image_width, args.repeats = 128, 192, 1
    pairs = parse_list(args.pairs, PAIRS, "pairs", parser)
    known_kinds = [kind for models in PAIRS.values() for kind, _ in models]
    ours_kinds = parse_list(args.ours, known_kinds, "--ours", parser)
    parts = parse_list(args.parts, PARTS, "--parts", parser)
    coding_contexts = parse_list(args.coding_contexts, CODING_CONTEXTS, "--coding_contexts",
                                 parser)
    if not parts:
        parser.error(f"--parts is empty; expected some of {list(PARTS)}")
    if "coding" in parts and not coding_contexts:
        parser.error(f"--coding_contexts is empty; expected some of {list(CODING_CONTEXTS)}")
    for side in (args.train_size, args.image_height, args.image_width):
        if side % 64:
            parser.error(f"image sides must be multiples of 64, got {side}")
    if args.peer_repeats is None:
        args.peer_repeats = args.repeats
    if min(args.repeats, args.peer_repeats) < 1:
        parser.error("--repeats and --peer_repeats must be at least 1")

    torch, compressai = import_peer()
    torch.set_num_threads(TORCH_THREADS)
    image_source = ""
    if "coding" in parts:
        try:
            image, image_source = coding_image(args.image_height, args.image_width)
        except ValueError as error:
            parser.error(str(error))
    setting = {
        "torch": torch.__version__, "compressai": compressai.__version__,
        "jax": jax.__version__, "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        "cpu_count": os.cpu_count(), "jax_devices": str(jax.devices()),
        "channels": args.channels, "train_batch": args.train_batch,
        "train_size": args.train_size, "image": [args.image_height, args.image_width],
        "repeats": args.repeats, "peer_repeats": args.peer_repeats, "parts": parts, "coding_contexts": coding_contexts,
        "coding_image": image_source, "load_average": os.getloadavg(),
    }
    print(" ".join(f"{k}={v}" for k, v in setting.items()), flush=True)
    print(f"{'peer':<17} {'ours':<22} {'measure':<34} {'ours s':>9} {'peer s':>9} "
          f"{'peer/ours':>9}")
    rows = []
    for architecture in pairs:
        models = [(kind, fields) for kind, fields in PAIRS[architecture] if kind in ours_kinds]
        if not models:
            continue
        print(f"load average before {architecture}: {os.getloadavg()}", flush=True)
        model_parts = [part for part in parts if part in ("train", "inference")]
        if model_parts:
            peer = time_peer(torch, architecture, args, model_parts)
            print(f"{architecture:<17} {'':<22} peak memory so far {peak_memory_gib():.1f} GiB",
                  flush=True)
            for kind, fields in models:
                timings = time_ours(kind, fields, args, model_parts)
                for part in model_parts:
                    measure = f"{MEASURE_NAMES[part]}_seconds"
                    ratio = peer[measure] / timings[measure]
                    rows.append({"part": part, "peer": architecture, "ours": kind,
                                 "measure": measure, "ours_seconds": timings[measure],
                                 "peer_seconds": peer[measure], "peer_over_ours": ratio,
                                 "ours_timings": timings})
                    print(f"{architecture:<17} {kind:<22} {measure:<34} "
                          f"{timings[measure]:9.3f} {peer[measure]:9.3f} {ratio:9.2f}")
                first_calls = ", ".join(
                    f"{MEASURE_NAMES[part].replace('_', ' ')} "
                    f"{timings[MEASURE_NAMES[part] + '_first_call_seconds']:.1f} s"
                    for part in model_parts)
                print(f"{'':<17} {kind:<22} first calls (compile + run, excluded): "
                      f"{first_calls}; init {timings['init_seconds']:.1f} s; peak memory so "
                      f"far {peak_memory_gib():.1f} GiB", flush=True)
        if "coding" in parts:
            peer = time_peer_coding(torch, architecture, image, args)
            print(f"{architecture:<17} {'':<22} coding: update(force=True) "
                  f"{peer['setup_seconds']:.2f} s; first calls compress "
                  f"{peer['compress_first_call_seconds']:.2f} s, decompress "
                  f"{peer['decompress_first_call_seconds']:.2f} s; {peer['bytes']} bytes; peak "
                  f"memory so far {peak_memory_gib():.1f} GiB", flush=True)
            for kind, fields in models:
                contexts = (coding_contexts if fields["context_model"] != "none"
                            else [fields["context_model"]])
                for context_model in contexts:
                    timings = time_ours_coding(kind, context_model, image, args)
                    label = f"{kind} {context_model}"
                    new_rows = coding_rows(architecture, kind, context_model, timings, peer)
                    for row in new_rows:
                        print(f"{architecture:<17} {label:<22} {row['measure']:<34} "
                              f"{row['ours_seconds']:9.3f} {row['peer_seconds']:9.3f} "
                              f"{row['peer_over_ours']:9.2f}")
                    first_calls = ", ".join(
                        f"{row['measure'][:-len('_seconds')]} "
                        f"{row['ours_first_call_seconds']:.1f} s" for row in new_rows)
                    print(f"{'':<17} {label:<22} first calls (compile + run, excluded): "
                          f"{first_calls}; init {timings['init_seconds']:.1f} s, codec setup "
                          f"{timings['setup_seconds']:.1f} s; {timings['bytes']} bytes; peak "
                          f"memory so far {peak_memory_gib():.1f} GiB", flush=True)
                    rows.extend(new_rows)
        print(f"load average after {architecture}: {os.getloadavg()}", flush=True)
    print_coding_table(rows, image_source, args.repeats, args.peer_repeats)
    setting["load_average_at_end"] = os.getloadavg()
    print(f"load average at the end {setting['load_average_at_end']}")
    if args.json:
        write_json_atomic(args.json, {"setting": setting, "results": rows})


if __name__ == "__main__":
    main()
