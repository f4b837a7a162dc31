"""Checks a training config before any work starts, with one clear message per problem."""

from __future__ import annotations

import os

DATA_SOURCE_KINDS = ("builtin", "folder", "paired", "tfds")
TARGETS = ("clean", "noisy", "teacher")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".bmp")


class ConfigError(ValueError):
    """A training config that cannot work."""


def _image_files(folder: str) -> list[str]:
    found = []
    for root, _, names in os.walk(folder):
        found += [os.path.join(root, n) for n in names if n.lower().endswith(IMAGE_SUFFIXES)]
    return found


def _check_folder(folder: str, what: str) -> list[str]:
    if not os.path.isdir(folder):
        raise ConfigError(f"{what}: folder does not exist: {folder}")
    files = _image_files(folder)
    if not files:
        raise ConfigError(f"{what}: no PNG/JPEG images in {folder}")
    return files


def _check_crop_fits(files: list[str], crop: int, what: str) -> None:
    from PIL import Image

    for path in files:
        try:
            with Image.open(path) as im:
                if min(im.size) >= crop:
                    return
        except OSError:
            continue
    raise ConfigError(f"{what}: crop_size {crop} is larger than every image")


def validate_config(config) -> None:
    """Raises ConfigError naming the first problem found."""
    from jdc_jax.models.entropy_parameters import CONTEXT_MODELS
    from jdc_jax.models.registry import MODEL_KINDS

    if config.model not in MODEL_KINDS:
        raise ConfigError(f"model: unknown kind {config.model!r}; expected one of "
                          f"{sorted(MODEL_KINDS)}")
    if config.model != "denoiser":
        if config.channels < 1 or config.latent_channels < 1:
            raise ConfigError("channels and latent_channels must be positive")
        if config.context_model not in CONTEXT_MODELS:
            raise ConfigError(f"context_model: unknown {config.context_model!r}; expected one "
                              f"of {CONTEXT_MODELS}")
        if config.model in ("factorized", "scale_hyperprior") and \
                config.context_model != "none":
            raise ConfigError(f"context_model must be 'none' for {config.model} (it has no "
                              f"context model), got {config.context_model!r}")
        if not config.get("parameter_network", True) and (
                config.model not in ("hyperprior", "testolina", "jdc")
                or config.context_model != "none"):
            raise ConfigError("parameter_network=False (mean and scale read off h_s) needs a "
                              "hyperprior, testolina or jdc model with context_model 'none'")
    if config.model == "jicd":
        if config.base_channels >= config.latent_channels:
            raise ConfigError(f"base_channels ({config.base_channels}) must be smaller than "
                              f"latent_channels ({config.latent_channels}): the enhancement "
                              "layer needs at least one channel")
        if config.base_channels < 1:
            raise ConfigError(f"base_channels must be >= 1, got {config.base_channels}")
    if not 1 <= config.rate_point <= len(config.lambdas):
        raise ConfigError(f"rate_point must be in 1..{len(config.lambdas)}, got "
                          f"{config.rate_point}")
    if config.target not in TARGETS:
        raise ConfigError(f"target: unknown {config.target!r}; expected one of {TARGETS}")
    if config.target == "teacher" and not config.teacher_checkpoint:
        raise ConfigError("target 'teacher' needs teacher_checkpoint")
    if config.crop_size < 64 or config.crop_size % 64:
        raise ConfigError(f"crop_size must be a positive multiple of 64, got {config.crop_size}")
    if config.batch_size < 1 or config.num_train_steps < 1:
        raise ConfigError("batch_size and num_train_steps must be positive")
    if config.get("lr_schedule", "constant") not in ("constant", "cosine"):
        raise ConfigError(f"lr_schedule must be 'constant' or 'cosine', got "
                          f"{config.lr_schedule!r}")
    if not 0 <= config.get("warmup_steps", 0) < config.num_train_steps:
        raise ConfigError(f"warmup_steps must be in [0, num_train_steps), got "
                          f"{config.warmup_steps}")
    if not 0.0 <= config.get("final_lr_fraction", 0.0) <= 1.0:
        raise ConfigError(f"final_lr_fraction must be in [0, 1], got {config.final_lr_fraction}")
    if config.dtype not in ("float32", "bfloat16"):
        raise ConfigError(f"dtype must be 'float32' or 'bfloat16', got {config.dtype!r}")
    if not 0.0 <= config.clean_fraction <= 1.0:
        raise ConfigError(f"clean_fraction must be in [0, 1], got {config.clean_fraction}")

    source = config.data_source
    kind, _, arg = source.partition(":")
    if kind not in DATA_SOURCE_KINDS:
        raise ConfigError(f"data_source: unknown source {source!r}; expected builtin, "
                          "folder:PATH, paired:NOISY_DIR,CLEAN_DIR or tfds:NAME")
    if kind == "folder":
        _check_crop_fits(_check_folder(arg, "data_source"), config.crop_size, "data_source")
    elif kind == "paired":
        dirs = arg.split(",")
        if len(dirs) != 2:
            raise ConfigError(f"data_source: paired needs NOISY_DIR,CLEAN_DIR, got {arg!r}")
        _check_folder(dirs[0], "data_source (noisy)")
        _check_crop_fits(_check_folder(dirs[1], "data_source (clean)"), config.crop_size,
                         "data_source")
    elif kind == "tfds" and not arg:
        raise ConfigError("data_source: tfds needs a dataset name, e.g. tfds:clic")
