"""A codec model's hyper synthesis and entropy-parameter networks as plain lists of layers.

The integer network (`network`) has one layer per float layer of the model, so conversion
starts from the model written in the same vocabulary: stride-1 convolutions (k x k, zero padding
(before, after)) with a bias, an activation ("identity", "relu", "leaky_relu" with slope 0.01)
and an optional depth_to_space. The model's other upsampling layers are rewritten exactly into
that form:

- `SubPixelConv`: its stride-1 convolution, then depth_to_space;
- `TransposedConv` (Balle's 5x5 stride-2 layers): `layers.conv.phase_kernel`, the 3x3 stride-1
  kernel whose output after depth_to_space is the transposed convolution, and its padding; the
  bias repeats for each of the s^2 phases;
- the serial context's `MaskedConv`: its kernel times the type-"A" mask.

`float_network(model, params)` extracts them for every model kind with a Gaussian conditional
(JICD, Cheng2020, the mean-scale hyperprior and Testolina, the scale hyperprior), and
`hyper_synthesis` / `group_parameters` evaluate them in float32, equal to the Flax model up to
float rounding (tests/test_integer_path.py), returning every intermediate activation for
calibration.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jdc_jax.layers.blocks import LEAKY_SLOPE
from jdc_jax.layers.conv import masked_conv_mask, phase_kernel

_GROUP_MODULES = {"base": "base_parameters", "enhancement": "enhancement_parameters"}


@dataclasses.dataclass(frozen=True, eq=False)
class FloatLayer:
    """kernel (k, k, C_in, F) float32, bias (F,), activation, padding (before, after),
    upscale (depth_to_space factor of the output; F = upscale^2 * features)."""

    kernel: np.ndarray
    bias: np.ndarray
    activation: str
    padding: tuple[int, int]
    upscale: int = 1


@dataclasses.dataclass(frozen=True, eq=False)
class FloatGroup:
    """One latent group: context layer (None for "none"), hidden layers, and the head layer
    (its outputs: C means then C scales, or C scales without a mean)."""

    context_model: str
    context: FloatLayer | None
    hidden: tuple[FloatLayer, ...]
    head: FloatLayer
    predicts_mean: bool
    channels: int
    extra_channels: int


@dataclasses.dataclass(frozen=True, eq=False)
class FloatNetwork:
    """The hyper synthesis (z_hat -> the groups' common input) and the groups."""

    hyper_synthesis: tuple[FloatLayer, ...]
    groups: dict


def _conv(parameters, activation, padding=None, upscale=1) -> FloatLayer:
    kernel = np.asarray(parameters["kernel"], np.float32)
    pad = (kernel.shape[0] - 1) // 2 if padding is None else padding
    return FloatLayer(kernel, np.asarray(parameters["bias"], np.float32), activation,
                      (pad, pad) if isinstance(pad, int) else tuple(pad), upscale)


def _subpixel(parameters, activation) -> FloatLayer:
    return dataclasses.replace(_conv(parameters["conv"], activation), upscale=2)


def _transposed(parameters, activation) -> FloatLayer:
    kernel, padding = phase_kernel(jnp.asarray(parameters["kernel"], jnp.float32), 2)
    bias = np.tile(np.asarray(parameters["bias"], np.float32), 4)
    return FloatLayer(np.asarray(kernel), bias, activation, tuple(int(p) for p in padding), 2)


def _hyper_layers(model, params) -> list[FloatLayer]:
    """The hyper synthesis layers of each h_s family (`models.transforms`), in order."""
    h_s = params["h_s"]
    if "subpel0" in h_s:  # ChengHyperSynthesis
        return [_conv(h_s["conv0"], "leaky_relu"), _subpixel(h_s["subpel0"], "leaky_relu"),
                _conv(h_s["conv1"], "leaky_relu"), _subpixel(h_s["subpel1"], "leaky_relu"),
                _conv(h_s["conv2"], "identity")]
    if "tconv0" in h_s:
        # ScaleHyperSynthesis: ReLU after every layer; MeanScaleHyperSynthesis: LeakyReLU, and
        # no activation after the last.
        scale_only = model.kind == "scale_hyperprior"
        activation = "relu" if scale_only else "leaky_relu"
        return [_transposed(h_s["tconv0"], activation), _transposed(h_s["tconv1"], activation),
                _conv(h_s["conv2"], "relu" if scale_only else "identity")]
    raise ValueError(f"unknown hyper synthesis with layers {sorted(h_s)}")


def float_network(model, params) -> FloatNetwork:
    """The `FloatNetwork` of a codec model with a Gaussian conditional; ValueError for other
    models (the factorized prior has no entropy parameters)."""
    streams = tuple(getattr(model, "streams", ()))
    if "side" not in streams:
        raise ValueError(f"a {getattr(model, 'kind', type(model).__name__)} model has no "
                         f"Gaussian conditional, so no entropy parameters to convert")
    bound = model.bind({"params": params})
    layers = _hyper_layers(model, params)
    groups = {}
    for stream in streams[1:]:
        module = getattr(bound, _GROUP_MODULES[stream])
        group_params = params.get(_GROUP_MODULES[stream], {})  # none without a network
        context = None
        if module.context_model == "serial":
            mask = masked_conv_mask(5, "A")[:, :, None, None]
            layer = _conv(group_params["context"], "identity")
            context = dataclasses.replace(layer, kernel=layer.kernel * mask)
        elif module.context_model == "checkerboard":
            context = _conv(group_params["context"], "identity")
        if module.parameter_network:
            hidden = (_conv(group_params["ep0"], "leaky_relu"),
                      _conv(group_params["ep1"], "leaky_relu"))
            head = _conv(group_params["ep2"], "identity")
        else:  # psi holds the parameters: the hyper synthesis' last layer is the head
            hidden, head = (), layers[-1]
        groups[stream] = FloatGroup(module.context_model, context, hidden, head,
                                    module.predicts_mean, module.channels, module.extra_channels)
    if any(group.head is layers[-1] for group in groups.values()):
        layers = layers[:-1]
    return FloatNetwork(tuple(layers), groups)


def apply_layer(layer: FloatLayer, x):
    """float32 x (B, H, W, C) -> the layer's output (after activation and depth_to_space)."""
    y = jax.lax.conv_general_dilated(
        jnp.asarray(x, jnp.float32), jnp.asarray(layer.kernel), (1, 1),
        (layer.padding, layer.padding), dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST) + layer.bias
    if layer.activation == "relu":
        y = jnp.maximum(y, 0.0)
    elif layer.activation == "leaky_relu":
        y = jnp.where(y >= 0, y, LEAKY_SLOPE * y)
    if layer.upscale > 1:
        r = layer.upscale
        b, h, w, c = y.shape
        y = y.reshape(b, h, w, r, r, c // (r * r)).transpose(0, 1, 3, 2, 4, 5)
        y = y.reshape(b, h * r, w * r, c // (r * r))
    return y


def hyper_synthesis(network: FloatNetwork, z_hat) -> list:
    """The activation after each hyper synthesis layer (the last: the groups' input)."""
    outputs, x = [], z_hat
    for layer in network.hyper_synthesis:
        x = apply_layer(layer, x)
        outputs.append(x)
    return outputs


def group_parameters(network: FloatNetwork, stream: str, psi, y_hat=None, extra=None):
    """((mean, scale), activations) of a group; activations: {"context": ..., "hidden": [...]}
    (`GroupEntropyParameters.__call__` in this vocabulary)."""
    group = network.groups[stream]
    parts, activations = [psi], {"hidden": []}
    if group.context is not None:
        if group.context_model == "checkerboard":
            rows, cols = np.indices(y_hat.shape[1:3])
            anchors = jnp.asarray(((rows + cols) % 2 == 0)[None, :, :, None], jnp.float32)
            context = apply_layer(group.context, y_hat * anchors) * (1.0 - anchors)
        else:
            context = apply_layer(group.context, y_hat)
        activations["context"] = context
        parts.append(context)
    if extra is not None:
        parts.append(extra)
    x = jnp.concatenate(parts, axis=-1)
    for layer in group.hidden:
        x = apply_layer(layer, x)
        activations["hidden"].append(x)
    out = apply_layer(group.head, x)
    if group.predicts_mean:
        mean, scale = jnp.split(out, 2, axis=-1)
    else:
        mean, scale = jnp.zeros_like(out), out
    return (mean, scale), activations
