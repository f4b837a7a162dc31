"""Model kinds by name, so configs, checkpoints and files can name a model."""

from __future__ import annotations

from jdc_jax.models.cheng2020 import Cheng2020
from jdc_jax.models.denoiser import Denoiser
from jdc_jax.models.hyperprior import Hyperprior
from jdc_jax.models.jicd import JICD
from jdc_jax.models.testolina import Testolina

# "jdc" is the hyperprior codec trained noisy -> clean (Brummer & De Vleeschouwer); "codec" is
# the single-layer Cheng2020 codec trained noisy -> noisy (the cascade's compression half).
MODEL_KINDS = {
    "jicd": JICD,
    "hyperprior": Hyperprior,
    "testolina": Testolina,
    "jdc": Hyperprior,
    "codec": Cheng2020,
    "denoiser": Denoiser,
}


def build_model(kind: str, **fields):
    """An unbound Flax module of the named kind with the given dataclass fields."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(MODEL_KINDS)}")
    return MODEL_KINDS[kind](**fields)


def init_params(model, rng, input_shape=(1, 256, 256, 3)):
    """Initial parameters of a model for inputs of `input_shape` (B, H, W, 3).

    Compiled, and at XLA's lowest backend optimization level: the program is all random-number
    generation, which XLA:CPU otherwise spends tens of seconds optimizing for a one-off run."""
    import jax
    import jax.numpy as jnp

    x = jnp.zeros(input_shape, jnp.float32)

    def init(rng):
        params_rng, noise_rng = jax.random.split(rng)
        return model.init({"params": params_rng, "noise": noise_rng}, x, train=True)["params"]
    compiled = jax.jit(init).lower(rng).compile(
        compiler_options={"xla_backend_optimization_level": 0})
    return compiled(rng)
