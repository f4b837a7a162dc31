"""Checks a training config before any work starts, with one clear message per problem."""

from __future__ import annotations

import math
import os

from jdc_jax import data_sources, images
from jdc_jax.models.entropy_parameters import CONTEXT_MODELS
from jdc_jax.models.registry import DENOISER_KINDS, GAUSSIAN_CONDITIONAL_KINDS, MODEL_KINDS

TARGETS = ("clean", "noisy", "teacher")


class ConfigError(ValueError):
    """A training config that cannot work."""


def _check_crop_fits(files: list[str], crop: int, what: str) -> None:
    for path in files:
        try:
            height, width = images.image_size(path)
        except ValueError:
            continue
        if min(height, width) >= crop:
            return
    raise ConfigError(f"{what}: crop_size {crop} is larger than every image")


def parse_module_lr_scales(spec: str) -> dict[str, float]:
    """{top-level module: factor} from "g_s_full=0.1,h_s=0.5" ("" gives {}).

    A factor of 0 freezes the module: its parameters stay bit-identical."""
    scales = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, value = item.partition("=")
        try:
            factor = float(value)
        except ValueError:
            factor = -1.0
        if not sep or not name or not (math.isfinite(factor) and factor >= 0):
            raise ValueError(f"module_lr_scales: expected MODULE=FACTOR with a finite FACTOR >= 0, "
                             f"got {item!r}")
        scales[name] = factor
    return scales


def module_lr_scales(config) -> dict[str, float]:
    """The parsed `module_lr_scales` of a config (a ConfigDict, or a saved config.json's dict);
    {} where it has none."""
    return parse_module_lr_scales(config.get("module_lr_scales", ""))


def frozen_modules(scales: dict[str, float]) -> frozenset[str]:
    """The modules that `scales` (`module_lr_scales`) freezes: factor 0."""
    return frozenset(name for name, factor in scales.items() if factor == 0)


def validate_config(config) -> None:
    """Raises ConfigError naming the first problem found."""
    if config.model not in MODEL_KINDS:
        raise ConfigError(f"model: unknown kind {config.model!r}; expected one of "
                          f"{sorted(MODEL_KINDS)}")
    if config.model not in DENOISER_KINDS:
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
    init_step = config.get("init_step", 0)
    if init_step and not config.get("init_from"):
        raise ConfigError(f"init_step {init_step} continues from init_from's parameters; give "
                          "init_from (a checkpoint, zoo:NAME:RATE_POINT, or zoo:NAME for a "
                          "denoiser)")
    if not 0 <= init_step < config.num_train_steps:
        raise ConfigError(f"init_step must be in [0, num_train_steps), got {init_step} "
                          f"(num_train_steps {config.num_train_steps})")
    if config.get("restart_warmup_steps", 100) < 1:
        raise ConfigError(f"restart_warmup_steps must be at least 1, got "
                          f"{config.restart_warmup_steps}")
    if not 0.0 <= config.get("final_lr_fraction", 0.0) <= 1.0:
        raise ConfigError(f"final_lr_fraction must be in [0, 1], got {config.final_lr_fraction}")
    try:
        parse_module_lr_scales(config.get("module_lr_scales", ""))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if config.dtype not in ("float32", "bfloat16"):
        raise ConfigError(f"dtype must be 'float32' or 'bfloat16', got {config.dtype!r}")
    if not 0.0 <= config.clean_fraction <= 1.0:
        raise ConfigError(f"clean_fraction must be in [0, 1], got {config.clean_fraction}")

    try:
        source = data_sources.parse_data_source(config.data_source)
        files = data_sources.source_files(source) if source.kind != "tfds" else {}
    except ValueError as error:
        raise ConfigError(f"data_source: {error}") from None
    if "clean" in files:
        _check_crop_fits(files["clean"], config.crop_size, "data_source")

    calibration = config.get("integer_calibration", "")
    if calibration and config.model in GAUSSIAN_CONDITIONAL_KINDS and \
            not os.path.isdir(calibration):
        try:
            source = data_sources.parse_data_source(calibration)
            if source.kind == "tfds":
                raise ValueError("calibration reads image files: builtin, folder:PATH or "
                                 "paired:NOISY_DIR,CLEAN_DIR")
            data_sources.source_files(source)
        except ValueError as error:
            raise ConfigError(f"integer_calibration: {error}") from None
