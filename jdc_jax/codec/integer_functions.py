"""The integer entropy path's functions for the coder, and the identifier of its files.

`integer_functions` turns a stored `jdc_jax.integer.network.IntegerEntropyModel` into the
`file_codec.IntegerFunctions` record both the native codec (`api.Codec`) and an exported package
(`jdc_jax.exported`) run: the functions of `jdc_jax.integer.ops`, jitted with the integer weights
as constants (integers need no care about how XLA folds or fuses them: every order of integer
sums gives the same result). No model class or Flax is imported.
"""

from __future__ import annotations

import functools

import jax

from jdc_jax.codec import model_id
from jdc_jax.codec.file_codec import IntegerFunctions
from jdc_jax.integer import ops as integer_ops
from jdc_jax.integer.network import IntegerEntropyModel


def integer_functions(integer_entropy: IntegerEntropyModel, context_model: str,
                      float_model_id: bytes) -> IntegerFunctions:
    """The `IntegerFunctions` record of an integer entropy network: its functions jitted with
    the integer weights as constants, and the integer path's model identifier."""
    wrong = {stream: group.context_model for stream, group in integer_entropy.groups.items()
             if group.context_model != context_model}
    if wrong:
        raise ValueError(f"integer entropy network has context models {wrong}, this model's is "
                         f"{context_model!r}")
    groups, fronts = {}, {}
    for stream in integer_entropy.groups:
        if context_model == "serial":
            fronts[stream] = jax.jit(functools.partial(integer_ops.front_parameters,
                                                       integer_entropy, stream))
        else:
            groups[stream] = jax.jit(functools.partial(integer_ops.group_parameters,
                                                       integer_entropy, stream))
    return IntegerFunctions(
        model_id=integer_model_identifier(float_model_id, integer_entropy),
        fraction_bits=integer_entropy.mean_fraction_bits,
        hyper_synthesis=jax.jit(functools.partial(integer_ops.hyper_synthesis, integer_entropy)),
        groups=groups, fronts=fronts)


def integer_model_identifier(float_model_id: bytes,
                             integer_entropy: IntegerEntropyModel) -> bytes:
    """The identifier of integer-path files (`model_id.integer_model_identifier`)."""
    return model_id.integer_model_identifier(
        float_model_id, model_id.weights_digest(integer_entropy.named_arrays()))
