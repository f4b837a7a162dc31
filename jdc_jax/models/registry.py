"""Model kinds by name, and the one rule that turns a config into a model.

Configs, checkpoints, zoo entries and `.jdc` headers name a model by its kind; `model_from_config`
builds the Flax module from the kind and the config fields that kind reads (`MODEL_FIELDS`).
Training, the codec, the zoo, evaluation and export all build their models here.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from jdc_jax import checkpoints, zoo
from jdc_jax.models.cheng2020 import Cheng2020
from jdc_jax.models.denoiser import Denoiser
from jdc_jax.models.factorized_codec import FactorizedCodec
from jdc_jax.models.ffdnet import FFDNet
from jdc_jax.models.hyperprior import Hyperprior
from jdc_jax.models.jicd import JICD
from jdc_jax.models.scale_hyperprior import ScaleHyperprior
from jdc_jax.models.testolina import Testolina

# "jdc" is the hyperprior codec trained noisy -> clean (Brummer & De Vleeschouwer); "codec" is
# the single-layer Cheng2020 codec (the cascade's compression half, and CompressAI's
# "cheng2020-anchor"); "factorized" and "scale_hyperprior" are Balle et al. 2018's two models.
MODEL_KINDS = {
    "jicd": JICD,
    "hyperprior": Hyperprior,
    "testolina": Testolina,
    "jdc": Hyperprior,
    "codec": Cheng2020,
    "factorized": FactorizedCodec,
    "scale_hyperprior": ScaleHyperprior,
    "denoiser": Denoiser,
    "ffdnet": FFDNet,
}

_HYPERPRIOR_FIELDS = ("channels", "latent_channels", "context_model", "decoder_input",
                      "parameter_network", "stored_medians", "prior_filters")

DENOISER_KINDS = ("denoiser", "ffdnet")
# The codecs whose latent has a Gaussian conditional (side latent, hyper synthesis): the kinds
# with an integer entropy-parameter path (`jdc_jax.integer`).
GAUSSIAN_CONDITIONAL_KINDS = tuple(kind for kind in MODEL_KINDS
                                   if kind not in DENOISER_KINDS + ("factorized",))

# Config field -> module field, per kind (the denoiser's are prefixed in the config).
MODEL_FIELDS = {
    "jicd": ("channels", "latent_channels", "base_channels", "context_model", "decoder_input",
             "stored_medians", "prior_filters"),
    "hyperprior": _HYPERPRIOR_FIELDS,
    "testolina": _HYPERPRIOR_FIELDS,
    "jdc": _HYPERPRIOR_FIELDS,
    "codec": ("channels", "latent_channels", "context_model", "decoder_input", "stored_medians",
              "prior_filters"),
    "factorized": ("channels", "latent_channels", "stored_medians", "prior_filters"),
    "scale_hyperprior": ("channels", "latent_channels", "decoder_input", "stored_medians",
                         "prior_filters"),
    "denoiser": ("denoiser_depth", "denoiser_features"),
    "ffdnet": ("denoiser_depth", "denoiser_features"),
}

# Fields added after checkpoints were first written: a config without one means this value, and
# a model at these values has the architecture (and model identifier) it had before they existed.
FIELDS_ADDED_LATER = {"parameter_network": True, "stored_medians": False,
                      "prior_filters": (3, 3, 3)}


def build_model(kind: str, **fields):
    """An unbound Flax module of the named kind with the given dataclass fields."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(MODEL_KINDS)}")
    return MODEL_KINDS[kind](**fields)


def model_from_config(config: Mapping[str, Any]) -> Any:
    """The Flax module a config (ml_collections.ConfigDict or a checkpoint's config dict)
    describes, computing in the config's `dtype`."""
    kind = config["model"]
    if kind not in MODEL_FIELDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(MODEL_FIELDS)}")
    fields = {}
    for name in MODEL_FIELDS[kind]:
        value = config[name] if name in config else FIELDS_ADDED_LATER[name]
        # JSON gives lists; module fields are hashable (compilations are cached per module).
        fields[name.removeprefix("denoiser_")] = tuple(value) if isinstance(value, list) \
            else value
    return build_model(kind, dtype=jnp.dtype(config["dtype"]), **fields)


def takes_noise_level(model) -> bool:
    """Whether the model takes each image's noise level (FFDNet) besides the image."""
    return getattr(model, "takes_noise_level", False)


def restore_params(path):
    """(params, config dict, training steps) of a checkpoint (any path
    `checkpoints.restore_params` takes) or of a zoo entry (zoo:NAME:RATE_POINT, or zoo:NAME for
    a denoiser: `zoo.restore`)."""
    if str(path).startswith(zoo.SPEC_PREFIX):
        return zoo.restore(str(path))
    return checkpoints.restore_params(path)


def restore_model(path, kinds: tuple[str, ...] | None = None):
    """(model, params, config dict) of a checkpoint or zoo entry (`restore_params`); ValueError
    naming the path when `kinds` is given and it holds another kind."""
    params, config, _ = restore_params(path)
    model = model_from_config(config)
    if kinds is not None and model.kind not in kinds:
        raise ValueError(f"{path} holds a {config['model']!r} model, not one of "
                         f"{', '.join(kinds)}")
    return model, params, config


def init_params(model, rng, input_shape=(1, 256, 256, 3)):
    """Initial parameters of a model for inputs of `input_shape` (B, H, W, 3).

    Compiled, and at XLA's lowest backend optimization level: the program is all random-number
    generation, which XLA:CPU otherwise spends tens of seconds optimizing for a one-off run."""
    x = jnp.zeros(input_shape, jnp.float32)

    def init(rng):
        params_rng, noise_rng = jax.random.split(rng)
        return model.init({"params": params_rng, "noise": noise_rng}, x, train=True)["params"]
    compiled = jax.jit(init).lower(rng).compile(
        compiler_options={"xla_backend_optimization_level": 0})
    return compiled(rng)
