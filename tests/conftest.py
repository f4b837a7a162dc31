"""Helpers shared by the tests: config loading, tiny training configs and image folders, and tiny
codec models with their parameters and saved checkpoints.

Tests import them (`from conftest import tiny_model`); subprocess scripts started by tests put
the repository root on sys.path and import `tests.conftest`."""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

# The tests compile hundreds of small XLA programs and run most for a step or a few: LLVM's
# optimization passes are about half of XLA:CPU's compile time, and they would pay off only over
# many steps. Without them the same programs compute the same functions (the tests compare
# results within one setting, or within tolerances); subprocesses inherit the setting.
FAST_COMPILE = "--xla_backend_optimization_level=0"
if FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()

import jax  # noqa: E402 (after XLA_FLAGS)
import numpy as np
import orbax.checkpoint as ocp
from PIL import Image

from jdc_jax import checkpoints
from jdc_jax.codec import Codec
from jdc_jax.default_config import get_config
from jdc_jax.models import build_model, registry

REPO = Path(__file__).resolve().parents[1]


def load_config(spec: str):
    """configs/<file>.py[:variant] -> ConfigDict, as the --config flag would."""
    path, _, variant = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("cfg", REPO / path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(variant) if variant else module.get_config()


def write_images(folder: Path, sizes, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(sizes):
        ramp = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
        img = np.clip(ramp + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"img{i}.png")
    return folder


def tiny(config, tmp_path, **overrides):
    config.channels = config.latent_channels = 8
    if config.model == "jicd":
        config.base_channels = 6
    config.denoiser_depth, config.denoiser_features = 3, 8
    config.crop_size, config.batch_size = 64, 2
    config.num_train_steps, config.log_every_steps = 3, 1
    config.checkpoint_every_steps, config.eval_every_steps = 2, 3
    config.eval_folder = str(write_images(tmp_path / "eval", [(70, 90), (64, 64)]))
    config.shuffle_buffer = 4
    # The final checkpoint's integer calibration is tested on its own (test_train); the other
    # end-to-end runs skip its seconds.
    config.integer_calibration = ""
    for k, v in overrides.items():
        setattr(config, k, v)
    return config


TINY = dict(channels=16, latent_channels=16)
TINY_FIELDS = {"jicd": dict(TINY, base_channels=12, context_model="serial"),
               "codec": dict(TINY, context_model="serial"),
               "hyperprior": dict(TINY, context_model="none"),
               "scale_hyperprior": dict(TINY),
               "factorized": dict(TINY)}
# Random initialisation predicts scales near 0 for latents of standard deviation ~1: most symbols
# would then fall in the tables' escape bin, where the estimate's likelihood floor (1e-9, 30 bits)
# says nothing about the coded size. A scale bias of this size makes the model's rate estimate
# meaningful, as training does.
SCALE_BIAS = 1.5


@functools.lru_cache(maxsize=None)
def _initial_params(kind: str, fields: tuple):
    params = registry.init_params(build_model(kind, **dict(fields)), jax.random.key(0),
                                  (1, 64, 64, 3))
    params = jax.tree.map(np.array, params)
    for group in ("base_parameters", "enhancement_parameters"):
        if group in params:
            bias = params[group]["ep2"]["bias"]
            bias[bias.size // 2:] += SCALE_BIAS  # the second half of the outputs is the scale
    return params


def tiny_model(kind: str, **fields):
    """(model, params): a tiny randomly initialised codec with calibrated scales.

    Parameters are cached per (kind, fields); models whose parameter trees are equal may share
    them (`params_like`)."""
    fields = {**TINY_FIELDS[kind], **fields}
    # The serial and checkerboard context layers have the same parameter shapes.
    shared = dict(fields)
    if kind not in ("hyperprior", "factorized") and fields.get("context_model") == "checkerboard":
        shared["context_model"] = "serial"
    params = _initial_params(kind, tuple(sorted(shared.items())))
    return build_model(kind, **fields), jax.tree.map(np.copy, params)


@functools.lru_cache(maxsize=None)
def _calibrated(kind: str, fields: tuple):
    from jdc_jax.integer import calibrate
    model, params = tiny_model(kind, **dict(fields))
    codec = Codec(model, params)
    images = [generated_image(64, 64, seed=20), generated_image(96, 128, seed=21)]
    return codec, calibrate.calibrate(model, params, codec.side_tables.medians, images)


def integer_codec(kind: str, **fields):
    """(codec with the integer entropy path, its `IntegerEntropyModel`): a tiny codec
    calibrated on two generated images (cached per kind and fields)."""
    codec, integer = _calibrated(kind, tuple(sorted(fields.items())))
    return codec.with_integer_entropy(integer), integer


def perturbed(params, amount: float = 1e-3):
    """A copy of `params` with every weight shifted by `amount` (another model, same shapes)."""
    return jax.tree.map(lambda p: np.asarray(p) + np.asarray(amount, p.dtype), params)


def save_checkpoint(workdir, kind: str, params, step: int = 1, **fields) -> str:
    """Saves `params` and a config for them as a training checkpoint; returns the workdir."""
    config = get_config()
    config.model = kind
    for name, value in {**TINY_FIELDS.get(kind, {}), **fields}.items():
        setattr(config, name, value)
    manager = checkpoints.checkpoint_manager(f"{workdir}/{checkpoints.CHECKPOINT_SUBDIR}")
    manager.save(step, args=ocp.args.Composite(state=ocp.args.PyTreeSave({"params": params}),
                                               config=ocp.args.JsonSave(config.to_dict())))
    manager.wait_until_finished()
    manager.close()
    return str(workdir)


def generated_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth colour gradient with mild noise, uint8 (height, width, 3)."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, height)[:, None, None]
    cols = np.linspace(0.0, 1.0, width)[None, :, None]
    base = 0.5 + 0.4 * np.sin(3.0 * rows + 2.0 * cols + np.array([0.0, 1.0, 2.0]))
    noisy = base + 0.05 * rng.standard_normal((height, width, 3))
    return np.clip(np.round(noisy * 255), 0, 255).astype(np.uint8)


# The tiny codecs the decoder fuzz runs (tests/test_faults.py, benchmarks/fuzz_decoder.py).
FUZZ_CODECS = {"jicd-serial": ("jicd", {}),
               "jicd-checkerboard": ("jicd", {"context_model": "checkerboard"}),
               "hyperprior": ("hyperprior", {}),
               "factorized": ("factorized", {})}


def fuzz_targets() -> dict:
    """name -> (codec, files, outputs) of each FUZZ_CODECS codec: its files of two images and
    a base-only file, a file of the next codec (another model), and the outputs it decodes."""
    codecs = {name: Codec(*tiny_model(kind, **fields)) for name, (kind, fields)
              in FUZZ_CODECS.items()}
    names = list(codecs)
    targets = {}
    for position, name in enumerate(names):
        codec, foreign = codecs[name], codecs[names[(position + 1) % len(names)]]
        files = [codec.compress(generated_image(64, 64, seed=1)),
                 codec.compress(generated_image(48, 80, seed=2)),
                 codec.compress(generated_image(64, 64, seed=3), layers="base"),
                 foreign.compress(generated_image(64, 64, seed=4))]
        targets[name] = (codec, files, codec.outputs)
    return targets
