"""The pure functions of a codec model that `FileCodec` runs, each f(weights, *arrays).

`weights` is a list of arrays: the leaves, in `jax.tree_util` order, of the model's "params"
tree, or of the one-entry tree {scope: params[scope]} for a function that needs only one
top-level module (`ModelFunction.scope`; the serial per-position step takes only its latent
group's weights, so each of its thousands of calls hands over few arrays). The names and array
signatures are those of the `file_codec` module docstring.

The weights are arguments, never constants folded into the program: the native codec
(`api.Codec`, which jits these functions) and an exported package (`jdc_jax.export`, which
serializes the same functions with `jax.export`) then compile the same computation from the same
inputs, and give bit-identical floats on one machine. It also keeps one copy of the weights in a
package, however many functions share them.

Argument shapes are `jax.export.symbolic_shape` specifications, float32. Height and width are
symbolic with the divisibility each transform needs (g_a: four stride-2 layers, 16 * h; h_a:
two, 4 * h); the per-position step has fixed shapes and the front step a symbolic number of
positions b (the codec calls it with a few bucket sizes, `scan_order.front_bucket`).

Each function is named after its entry (`__name__`), so compilation counts name the program,
e.g. "jit(base_parameters_front)".
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jdc_jax.codec.file_codec import LatentGroup, group_streams

_GROUP_MODULES = {"base": "base_parameters", "enhancement": "enhancement_parameters"}


@dataclasses.dataclass(frozen=True)
class ModelFunction:
    """One function of a codec model.

    Attributes:
      function: f(weights: list of arrays, *arrays) -> array or tuple of arrays.
      scope: the top-level parameter module whose leaves `weights` are; None: all leaves.
      argument_shapes: a `jax.export.symbolic_shape` specification per array argument.
    """

    function: Callable
    scope: str | None
    argument_shapes: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class ModelDescription:
    """What the coder needs to know of a codec model besides its functions.

    Attributes:
      streams: ("side", "base"), ("side", "base", "enhancement") or ("base",) (the factorized
        prior: no side stream).
      context_model: "none", "serial" or "checkerboard".
      side_channels: channels of the latent the factorized tables code: N (z), or M (y) without
        a side stream; latent_channels: M, channels of y;
      hyper_channels: P, channels of psi (0 without a side stream).
      groups: stream -> `LatentGroup` (channels, causal taps of a serial context).
    """

    streams: tuple[str, ...]
    context_model: str
    side_channels: int
    latent_channels: int
    hyper_channels: int
    groups: dict[str, LatentGroup]


def describe_model(model, params) -> ModelDescription:
    """The `ModelDescription` of a Flax codec module with its parameters (shapes by
    `jax.eval_shape` on a 64 x 64 image, which also checks the strides 16 and 64)."""
    streams = tuple(getattr(model, "streams", ()))
    bound = model.bind({"params": params})
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    y = jax.eval_shape(lambda x: bound.analysis(x), x)
    if y.shape[1:3] != (4, 4):
        raise ValueError(f"{type(model).__name__} does not downsample by 16: a 64 x 64 image "
                         f"gives y {y.shape}")
    if "side" not in streams:
        return ModelDescription(streams, model.context_model, int(y.shape[-1]),
                                int(y.shape[-1]), 0, {})
    z = jax.eval_shape(lambda y: bound.hyper_analysis(y), y)
    psi = jax.eval_shape(lambda z: bound.hyper_synthesis(z), z)
    if z.shape[1:3] != (1, 1) or psi.shape[1:3] != (4, 4):
        raise ValueError(f"{type(model).__name__} does not downsample by 64 (z): a 64 x 64 "
                         f"image gives z {z.shape} and psi {psi.shape}")
    groups = {}
    for stream in group_streams(streams):
        group = getattr(bound, _GROUP_MODULES[stream])
        taps = group.serial_context_taps() if group.context_model == "serial" else None
        groups[stream] = LatentGroup(group.channels, taps)
    return ModelDescription(streams, model.context_model, int(z.shape[-1]), int(y.shape[-1]),
                            int(psi.shape[-1]), groups)


def model_functions(model, params) -> dict[str, ModelFunction]:
    """name -> `ModelFunction` of every piece the coder of `model` runs (`file_codec`)."""
    description = describe_model(model, params)
    return _model_functions(model, jax.tree_util.tree_structure(params), description.streams,
                            description.context_model, description.side_channels,
                            description.latent_channels, description.hyper_channels,
                            tuple((stream, group.channels, _taps_count(group))
                                  for stream, group in description.groups.items()))


def scope_weights(params, scope: str | None) -> list:
    """The leaves a function of that scope takes, in its order."""
    return jax.tree_util.tree_leaves(params if scope is None else {scope: params[scope]})


def scope_leaf_indexes(params, scope: str | None) -> list[int]:
    """Positions in `jax.tree_util.tree_leaves(params)` of the leaves of a scope."""
    paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    if scope is None:
        return list(range(len(paths)))
    return [index for index, path in enumerate(paths) if path[0] == jax.tree_util.DictKey(scope)]


def _taps_count(group: LatentGroup) -> int:
    return 0 if group.causal_taps is None else int(np.sum(group.causal_taps))


@functools.lru_cache(maxsize=None)
def _model_functions(model, treedef, streams, context_model, side_channels, latent_channels,
                     hyper_channels, groups) -> dict[str, ModelFunction]:
    """Cached per architecture (Flax modules compare by their fields), so codecs of several
    checkpoints share the functions and their compilations."""
    base_channels = groups[0][1] if groups else latent_channels

    def apply(method, scope=None):
        tree = treedef if scope is None else jax.tree_util.tree_structure(
            {scope: jax.tree_util.tree_unflatten(treedef, [0] * treedef.num_leaves)[scope]})

        def function(weights, *arrays):
            params = jax.tree_util.tree_unflatten(tree, weights)
            return model.apply({"params": params}, *arrays, method=method)
        return function

    latent = f"1, h, w, {latent_channels}"
    functions = {"analysis": ModelFunction(apply(lambda m, x: m.analysis(x)), None,
                                           ("1, 16*h, 16*w, 3",))}
    if "side" in streams:
        functions["hyper_analysis"] = ModelFunction(
            apply(lambda m, y: m.hyper_analysis(y)), None, (f"1, 4*h, 4*w, {latent_channels}",))
        functions["hyper_synthesis"] = ModelFunction(
            apply(lambda m, z: m.hyper_synthesis(z)), None, (f"1, h, w, {side_channels}",))
    if "enhancement" in streams:
        enhancement_channels = latent_channels - base_channels
        functions["synthesize_denoised"] = ModelFunction(
            apply(lambda m, base: m.synthesize(base, output="denoised")), None,
            (f"1, h, w, {base_channels}",))
        functions["synthesize_noisy"] = ModelFunction(
            apply(lambda m, base, enhancement: m.synthesize(
                base, enhancement, output="noisy_reconstruction")), None,
            (f"1, h, w, {base_channels}", f"1, h, w, {enhancement_channels}"))
    else:
        functions["synthesize"] = ModelFunction(apply(lambda m, y_hat: m.synthesize(y_hat)),
                                                None, (latent,))
    for stream, channels, taps in groups:
        module = _GROUP_MODULES[stream]
        extra = stream == "enhancement"
        if context_model == "serial":
            functions[f"{stream}_context_matrix"] = ModelFunction(
                apply(lambda m, module=module: getattr(m, module).serial_context_matrix(),
                      module), module, ())
            functions[f"{stream}_parameters_at"] = ModelFunction(
                apply(functools.partial(_parameters_at, module=module), module), module,
                (f"1, {hyper_channels}", f"1, {taps}, {channels}",
                 f"{taps * channels}, {2 * channels}", f"{2 * channels}")
                + ((f"1, {base_channels}",) if extra else ()))
            functions[f"{stream}_parameters_front"] = ModelFunction(
                apply(functools.partial(_parameters_front, module=module), module), module,
                (f"b, {hyper_channels}", f"b, {taps}, {channels}",
                 f"{taps * channels}, {2 * channels}", f"{2 * channels}")
                + ((f"b, {base_channels}",) if extra else ()))
        else:
            checkerboard = context_model == "checkerboard"
            functions[f"{stream}_parameters"] = ModelFunction(
                apply(functools.partial(_group_parameters, module=module,
                                        has_context=checkerboard, has_extra=extra)), None,
                (f"1, h, w, {hyper_channels}",)
                + ((f"1, h, w, {channels}",) if checkerboard else ())
                + ((f"1, h, w, {base_channels}",) if extra else ()))
    for name, function in functions.items():
        function.function.__name__ = function.function.__qualname__ = name
    return functions


def _parameters_at(m, psi_at, taps, matrix, bias, extra_at=None, *, module):
    """(2, C): mean and scale at one position of a serial-context group."""
    mean, scale = getattr(m, module).entropy_parameters_at(psi_at, taps, matrix, bias, extra_at)
    return jnp.stack([mean[0], scale[0]])


def _parameters_front(m, psi_at, taps, matrix, bias, extra_at=None, *, module):
    """(b, 2, C): mean and scale at the b positions of a serial-context group's front."""
    mean, scale = getattr(m, module).entropy_parameters_at(psi_at, taps, matrix, bias, extra_at)
    return jnp.stack([mean, scale], axis=1)


def _group_parameters(m, psi, *arrays, module, has_context, has_extra):
    """(mean, scale) of all positions of a group (none / checkerboard context)."""
    arrays = list(arrays)
    y_hat = arrays.pop(0) if has_context else None
    extra = arrays.pop(0) if has_extra else None
    return getattr(m, module)(psi, y_hat, extra)
