"""Training-step and inference times of CompressAI models next to ours, in one process.

    bash benchmarks/setup_peer_env.sh      # once: torch + CompressAI + jdc_jax in one virtualenv
    benchmarks/.peer-venv/bin/python benchmarks/bench_vs_compressai.py [--repeats 3] [--json F]
    benchmarks/.peer-venv/bin/python benchmarks/bench_vs_compressai.py --quick   # smoke check
    ... --pairs cheng2020-anchor --ours jicd    # one model per process: less peak memory

Pairs, all randomly initialised (CompressAI pretrained=False), N = M = 192:

- CompressAI "mbt2018-mean" vs our `Hyperprior` (context "none"). The zoo's qualities use
  (N, M) = (128, 192) or (192, 320), so `MeanScaleHyperprior(N=192, M=192)` is built directly.
- CompressAI "cheng2020-anchor" (`Cheng2020Anchor(N=192)`, zoo qualities 4-6; its M = N) vs our
  `codec` (Cheng2020 without attention, serial context) and our JICD (base 180 / enhancement
  12, serial context; two synthesis transforms, so more work than the anchor).

Measured:

(a) training step, batch 8 of 256x256 images, loss bpp + lambda * 255^2 * MSE (lambda 0.013).
    Ours: `train.compile_train_step` on one device (jit, donated state; gradient clipping at
    norm 1, Adam, plateau schedule), its compile time reported apart and excluded. Peer: the
    step of CompressAI's examples/train.py: forward, RateDistortionLoss, backward,
    clip_grad_norm_(1.0), Adam on the network, then the auxiliary (quantile) loss's backward and
    its Adam step.
(b) inference: the eval-mode forward pass (transforms, rounding, likelihoods), batch 1, one
    512x768 (H x W) image. Ours jitted (compile excluded); peer in eval mode under no_grad.

Each figure is the median of --repeats timed runs after one untimed warm-up (for ours the
warm-up is the compiling call); ratio = peer / ours, so above 1 means ours is faster. Threads:
torch.set_num_threads(2) for intra-op parallelism; XLA:CPU uses its own pool over all cores.
The peer runs first in each pair, then each of ours; the peak resident memory of the process
so far is printed after each. Wall-clock times on whatever else the machine runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jdc_jax import train
from jdc_jax.checkpoints import write_json_atomic
from jdc_jax.default_config import get_config

LMBDA = 0.013
TORCH_THREADS = 2
# Our model kinds and fields compared with each CompressAI architecture.
PAIRS = {
    "mbt2018-mean": (("hyperprior", {"context_model": "none"}),),
    "cheng2020-anchor": (("codec", {"context_model": "serial"}),
                         ("jicd", {"context_model": "serial"})),
}


def import_peer():
    """torch and compressai, with a clear message when they are not installed."""
    try:
        import compressai
        import torch
    except ImportError as error:
        raise SystemExit(f"{error}: run benchmarks/setup_peer_env.sh and use "
                         "benchmarks/.peer-venv/bin/python") from error
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


def time_ours(kind: str, fields: dict, args) -> dict:
    """Our training step and inference pass: compile seconds and median seconds of each."""
    config = our_config(kind, fields, args.channels, args.train_batch, args.train_size)
    model = train.model_from_config(config)
    tx = train.make_optimizer(config)
    mesh = train.make_mesh(jax.devices()[:1])
    replicated = NamedSharding(mesh, P())
    start = time.perf_counter()
    state = jax.device_put(train.create_train_state(config, model, tx, jax.random.key(0)),
                           replicated)
    init_seconds = time.perf_counter() - start
    rng = jax.device_put(jax.random.key(1), replicated)
    clean, noisy = synthetic_images(args.train_batch, args.train_size, args.train_size)
    batch = train.global_batch({"clean": clean, "noisy": noisy}, mesh)
    step = train.compile_train_step(model, tx, config, mesh, state)
    holder = {"state": state}

    def training_step():
        holder["state"], metrics = step(holder["state"], batch, rng)
        jax.block_until_ready((holder["state"], metrics))

    start = time.perf_counter()
    training_step()
    step_first_call = time.perf_counter() - start
    step_seconds = median_seconds(training_step, args.repeats)

    _, image = synthetic_images(1, args.image_height, args.image_width, seed=1)
    x = jax.device_put(image.astype(np.float32) / 255.0)
    params = holder["state"].params
    forward = jax.jit(lambda params, x: model.apply({"params": params}, x, train=False))
    start = time.perf_counter()
    jax.block_until_ready(forward(params, x))
    forward_first_call = time.perf_counter() - start
    forward_seconds = median_seconds(lambda: jax.block_until_ready(forward(params, x)),
                                     args.repeats)
    return {"init_seconds": init_seconds,
            "train_step_first_call_seconds": step_first_call, "train_step_seconds": step_seconds,
            "inference_first_call_seconds": forward_first_call,
            "inference_seconds": forward_seconds}


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


def time_peer(torch, architecture: str, args) -> dict:
    """CompressAI's training step and inference pass: median seconds of each."""
    from compressai.losses import RateDistortionLoss

    net = peer_model(torch, architecture, args.channels)
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
    step_seconds = median_seconds(training_step, args.repeats)

    _, image = synthetic_images(1, args.image_height, args.image_width, seed=1)
    image = nchw_tensor(torch, image)
    net.eval()

    def forward():
        with torch.no_grad():
            net(image)
    forward()  # warm-up
    return {"train_step_seconds": step_seconds,
            "inference_seconds": median_seconds(forward, args.repeats)}


def peak_memory_gib() -> float:
    """Peak resident memory of this process so far (Linux reports kibibytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default=",".join(PAIRS),
                        help=f"comma-separated CompressAI architectures, of {list(PAIRS)}")
    parser.add_argument("--ours", default="hyperprior,codec,jicd",
                        help="comma-separated model kinds of ours to run (within the pairs)")
    parser.add_argument("--channels", type=int, default=192, help="N = M of every model")
    parser.add_argument("--train_batch", type=int, default=8)
    parser.add_argument("--train_size", type=int, default=256, help="training crop side")
    parser.add_argument("--image_height", type=int, default=512)
    parser.add_argument("--image_width", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="smoke check: N = M = 32, batch 2 of 64x64, a 128x192 image, "
                             "1 repetition")
    parser.add_argument("--json", default="", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.channels, args.train_batch, args.train_size = 32, 2, 64
        args.image_height, args.image_width, args.repeats = 128, 192, 1
    pairs = [p for p in args.pairs.split(",") if p]
    unknown = sorted(set(pairs) - set(PAIRS))
    if unknown:
        parser.error(f"unknown pairs {unknown}; expected some of {list(PAIRS)}")
    ours_kinds = [k for k in args.ours.split(",") if k]
    known_kinds = [kind for models in PAIRS.values() for kind, _ in models]
    if sorted(set(ours_kinds) - set(known_kinds)):
        parser.error(f"unknown --ours {sorted(set(ours_kinds) - set(known_kinds))}; expected "
                     f"some of {known_kinds}")
    for side in (args.train_size, args.image_height, args.image_width):
        if side % 64:
            parser.error(f"image sides must be multiples of 64, got {side}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    torch, compressai = import_peer()
    torch.set_num_threads(TORCH_THREADS)
    setting = {
        "torch": torch.__version__, "compressai": compressai.__version__,
        "jax": jax.__version__, "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(), "jax_devices": str(jax.devices()),
        "channels": args.channels, "train_batch": args.train_batch,
        "train_size": args.train_size, "image": [args.image_height, args.image_width],
        "repeats": args.repeats,
    }
    print(" ".join(f"{k}={v}" for k, v in setting.items()), flush=True)
    print(f"{'peer':<17} {'ours':<11} {'measure':<22} {'ours s':>9} {'peer s':>9} "
          f"{'peer/ours':>9}")
    rows = []
    for architecture in pairs:
        models = [(kind, fields) for kind, fields in PAIRS[architecture] if kind in ours_kinds]
        if not models:
            continue
        peer = time_peer(torch, architecture, args)
        print(f"{architecture:<17} {'':<11} peak memory so far {peak_memory_gib():.1f} GiB",
              flush=True)
        for kind, fields in models:
            timings = time_ours(kind, fields, args)
            for measure in ("train_step_seconds", "inference_seconds"):
                ratio = peer[measure] / timings[measure]
                rows.append({"peer": architecture, "ours": kind, "measure": measure,
                             "ours_seconds": timings[measure], "peer_seconds": peer[measure],
                             "peer_over_ours": ratio, "ours_timings": timings})
                print(f"{architecture:<17} {kind:<11} {measure:<22} {timings[measure]:9.3f} "
                      f"{peer[measure]:9.3f} {ratio:9.2f}")
            print(f"{'':<17} {kind:<11} first calls (compile + run, excluded): train step "
                  f"{timings['train_step_first_call_seconds']:.1f} s, inference "
                  f"{timings['inference_first_call_seconds']:.1f} s; init "
                  f"{timings['init_seconds']:.1f} s; peak memory so far "
                  f"{peak_memory_gib():.1f} GiB", flush=True)
    if args.json:
        write_json_atomic(args.json, {"setting": setting, "results": rows})


if __name__ == "__main__":
    main()
