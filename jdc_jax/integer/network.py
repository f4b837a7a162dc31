"""The integer entropy-parameter network of a codec: its layers, accumulator bounds and storage.

Everything between the integer inputs of the Gaussian conditional (the side symbols of z_hat and
the quantized latent y_hat) and its integer outputs (the scale index and the fixed-point mean of
every element) is one of these integer layers (Balle, Johnston & Minnen, ICLR 2019, "Integer
networks for data compression with latent-variable models"; the scheme below is this project's,
see `calibrate` for how a float model is converted):

    acc  = sum_{taps, c} W[tap, c, f] * x[tap, c] + B[f]          int32 (exact: see bounds)
    out  = floor((acc + floor(D[f] / 2)) / D[f])                   rounding division by D[f] >= 1
           (LeakyReLU: floor((acc + floor(100 D / 2)) / (100 D)) where acc < 0, slope 1/100 = 0.01
            exactly; ReLU: max(out, 0))
    out  = clip(out, lower[f], upper[f])                           the stored activation range
    then depth_to_space(upscale) for sub-pixel and phase-decomposed transposed convolutions

A value a of a float activation channel c is represented by the integer A = a / s_c: the scales
s_c never appear at run time, they are folded into W, B and D at conversion. The inputs are
clipped first: side symbols to [-z_limit, z_limit] (then z_hat * 2^kz = symbol * 2^kz + the
stored fixed-point median), fixed-point y_hat (y_hat * 2^k) to [-latent_limit, latent_limit],
so escape-coded outliers cannot overflow anything.

The head of each latent group (`IntegerHead`) ends the chain: the mean channels are divided to
the fixed point 2^-k and clipped to [-mean_limit, mean_limit]; the scale channels' accumulators
are compared with integer thresholds, floor(SCALE_TABLE[t] / u_c) for the accumulator unit u_c,
so that index = #{t < 63 : acc > threshold_t} is the first table entry >= the scale, as
`gaussian.scale_indexes` is for a float scale.

Bounds. For every layer and output channel, |acc| + the rounding addend is at most
sum |W| * max(|lower_in|, |upper_in|) + |B| + 50 D (or D / 2 without LeakyReLU), the input
ranges being the previous layer's clip range or the input clipping. `accumulator_bounds` computes
these bounds from the stored integers, and `check_bounds` (run when a network is built or
loaded) refuses a network any of whose bounds exceeds 2^31 - 1, so no input can overflow int32.

Storage: `save` / `load` write one ``.npz`` (integer arrays, each stored in the narrowest of
int8 / int16 / int32 that holds it, and a JSON description); the integer path's model identifier
covers `named_arrays`, the int32 values (`jdc_jax.codec.model_id`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os

import numpy as np

from jdc_jax.atomic_write import write_bytes_atomic
from jdc_jax.entropy import gaussian
from jdc_jax.layers.causal_mask import masked_conv_mask

INT32_MAX = 2**31 - 1
LEAKY_DIVISOR = 100  # the float models' LeakyReLU slope 0.01 (`layers.blocks.LEAKY_SLOPE`) as 1/100
ACTIVATIONS = ("identity", "relu", "leaky_relu")
CONTEXT_MODELS = ("none", "serial", "checkerboard")
SCALE_THRESHOLDS = len(gaussian.SCALE_TABLE) - 1  # index = thresholds exceeded, at most 63
FILE_VERSION = 1


class AccumulatorOverflow(ValueError):
    """An integer layer whose worst-case accumulator does not fit int32."""


def _int32(name: str, array, ndim: int) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != np.int32:
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{name} must hold integers, got {array.dtype}")
        if array.size and (array.min() < -INT32_MAX or array.max() > INT32_MAX):
            raise ValueError(f"{name} does not fit int32")
        array = array.astype(np.int32)
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {array.shape}")
    return array


@dataclasses.dataclass(frozen=True, eq=False)
class IntegerLayer:
    """One integer convolution with requantization (module docstring).

    Attributes:
      kernel: int32 (k, k, C_in, F), a stride-1 cross-correlation (HWIO).
      bias: int32 (F,); divisor: int32 (F,) >= 1.
      lower, upper: int32 (F,), the output clip range.
      activation: one of ACTIVATIONS.
      padding: zeros (before, after) along H and along W.
      upscale: depth_to_space factor applied to the output (F = upscale^2 * features; the
        clip range of channel (i * upscale + j) * features + f is the same for every (i, j)).
    """

    kernel: np.ndarray
    bias: np.ndarray
    divisor: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    activation: str
    padding: tuple[int, int] = (0, 0)
    upscale: int = 1

    def __post_init__(self):
        for name, ndim in (("kernel", 4), ("bias", 1), ("divisor", 1), ("lower", 1),
                           ("upper", 1)):
            object.__setattr__(self, name, _int32(f"layer {name}", getattr(self, name), ndim))
        features = self.kernel.shape[-1]
        if any(getattr(self, name).shape != (features,)
               for name in ("bias", "divisor", "lower", "upper")):
            raise ValueError(f"bias, divisor and clip range must have the kernel's {features} "
                             f"output channels")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; expected one of "
                             f"{ACTIVATIONS}")
        if (self.divisor < 1).any():
            raise ValueError("every divisor must be at least 1")
        if (self.lower > self.upper).any():
            raise ValueError("clip range: lower exceeds upper")
        object.__setattr__(self, "padding", tuple(int(p) for p in self.padding))
        if self.upscale < 1 or features % (self.upscale**2):
            raise ValueError(f"{features} output channels do not split into upscale "
                             f"{self.upscale} squared phases")

    @property
    def features(self) -> int:
        """Channels after depth_to_space."""
        return self.kernel.shape[-1] // self.upscale**2

    def output_range(self) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) int64 per output channel after depth_to_space."""
        return (self.lower[: self.features].astype(np.int64),
                self.upper[: self.features].astype(np.int64))

    def rounding_divisor(self) -> np.ndarray:
        """The largest divisor each channel divides by (int64): 100 D with LeakyReLU."""
        factor = LEAKY_DIVISOR if self.activation == "leaky_relu" else 1
        return self.divisor.astype(np.int64) * factor


@dataclasses.dataclass(frozen=True, eq=False)
class IntegerHead:
    """The last layer of a latent group: means in fixed point, scale indexes by thresholds.

    Attributes:
      kernel: int32 (k, k, C_in, P * C), P = 2 (mean channels first, then scale) or 1 (scale
        only, zero mean); bias: int32 (P * C,).
      mean_divisor: int32 (C,) >= 1, to the fixed point 2^-k (ones when P = 1).
      mean_limit: the clip of the fixed-point mean.
      scale_thresholds: int32 (C, 63), ascending per channel.
      padding: as `IntegerLayer.padding`.
    """

    kernel: np.ndarray
    bias: np.ndarray
    mean_divisor: np.ndarray
    mean_limit: int
    scale_thresholds: np.ndarray
    predicts_mean: bool
    padding: tuple[int, int] = (0, 0)

    def __post_init__(self):
        for name, ndim in (("kernel", 4), ("bias", 1), ("mean_divisor", 1),
                           ("scale_thresholds", 2)):
            object.__setattr__(self, name, _int32(f"head {name}", getattr(self, name), ndim))
        channels = self.channels
        if self.kernel.shape[-1] != channels * (2 if self.predicts_mean else 1) \
                or self.bias.shape != (self.kernel.shape[-1],):
            raise ValueError("head kernel and bias do not match its channels")
        if self.mean_divisor.shape != (channels,) or (self.mean_divisor < 1).any():
            raise ValueError(f"head mean divisors must be {channels} values >= 1")
        if self.scale_thresholds.shape != (channels, SCALE_THRESHOLDS) \
                or (np.diff(self.scale_thresholds.astype(np.int64), axis=1) < 0).any():
            raise ValueError(f"head scale thresholds must be ({channels}, {SCALE_THRESHOLDS}) "
                             f"and ascending")
        if not 0 < int(self.mean_limit) <= INT32_MAX:
            raise ValueError(f"mean limit {self.mean_limit} is outside [1, 2^31 - 1]")
        object.__setattr__(self, "mean_limit", int(self.mean_limit))
        object.__setattr__(self, "padding", tuple(int(p) for p in self.padding))

    @property
    def channels(self) -> int:
        return self.scale_thresholds.shape[0]


@dataclasses.dataclass(frozen=True, eq=False)
class IntegerGroup:
    """The integer entropy parameters of one latent group: concat(psi, context, extra) ->
    hidden layers -> head. `context` is the 5x5 context layer over fixed-point y_hat (serial:
    the masked kernel, zero at the non-causal taps; checkerboard: over the anchors); None for
    context "none". `extra_channels`: the JICD enhancement group's base-latent input (fixed-point
    y_hat, clipped like the context input), 0 otherwise."""

    context_model: str
    context: IntegerLayer | None
    hidden: tuple[IntegerLayer, ...]
    head: IntegerHead
    extra_channels: int = 0

    def __post_init__(self):
        if self.context_model not in CONTEXT_MODELS:
            raise ValueError(f"unknown context model {self.context_model!r}")
        if (self.context is None) != (self.context_model == "none"):
            raise ValueError(f"a {self.context_model!r} group "
                             f"{'has no' if self.context_model == 'none' else 'needs a'} "
                             f"context layer")
        object.__setattr__(self, "hidden", tuple(self.hidden))

    def causal_context(self) -> IntegerLayer:
        """The serial context restricted to its causal taps, as one 1x1 layer over the taps of a
        position (T * C inputs in the window's raster order: `scan_order.causal_offsets`)."""
        if self.context_model != "serial":
            raise ValueError(f"the {self.context_model!r} context has no causal taps")
        kernel = self.context.kernel
        taps = masked_conv_mask(kernel.shape[0], "A") > 0
        matrix = kernel[taps].reshape(1, 1, -1, kernel.shape[-1])
        return dataclasses.replace(self.context, kernel=matrix, padding=(0, 0))


@dataclasses.dataclass(frozen=True, eq=False)
class IntegerEntropyModel:
    """The integer hyper synthesis and entropy-parameter networks of one codec model.

    Attributes:
      z_fraction_bits: kz, the fixed point of z_hat inside the hyper synthesis.
      z_medians: int32 (N,), round(median * 2^kz) of each side channel.
      z_limit: side symbols are clipped to [-z_limit, z_limit].
      hyper_synthesis: the layers from z_hat to psi.
      mean_fraction_bits: k, the fixed point of means and y_hat.
      latent_limit: fixed-point y_hat inputs are clipped to [-latent_limit, latent_limit].
      groups: stream ("base", "enhancement") -> `IntegerGroup`.
    """

    z_fraction_bits: int
    z_medians: np.ndarray
    z_limit: int
    hyper_synthesis: tuple[IntegerLayer, ...]
    mean_fraction_bits: int
    latent_limit: int
    groups: dict

    def __post_init__(self):
        object.__setattr__(self, "z_medians", _int32("z medians", self.z_medians, 1))
        object.__setattr__(self, "hyper_synthesis", tuple(self.hyper_synthesis))
        if not 4 <= self.mean_fraction_bits <= 16:
            raise ValueError(f"mean fraction bits {self.mean_fraction_bits} outside [4, 16]")
        if not 0 <= self.z_fraction_bits <= 16:
            raise ValueError(f"z fraction bits {self.z_fraction_bits} outside [0, 16]")
        for name in ("z_limit", "latent_limit"):
            if not 0 < int(getattr(self, name)) <= INT32_MAX:
                raise ValueError(f"{name} {getattr(self, name)} is outside [1, 2^31 - 1]")
        self.check_bounds()

    @property
    def psi_range(self) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) int64 per channel of the hyper synthesis output."""
        return self.hyper_synthesis[-1].output_range()

    def input_range(self) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) int64 per side channel of the clipped fixed-point z_hat."""
        low = -np.int64(self.z_limit) * 2**self.z_fraction_bits + self.z_medians.astype(np.int64)
        high = np.int64(self.z_limit) * 2**self.z_fraction_bits + self.z_medians.astype(np.int64)
        return low, high

    def group_input_ranges(self, stream: str) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) int64 of concat(psi, context, extra) of a group."""
        group = self.groups[stream]
        lows, highs = [self.psi_range[0]], [self.psi_range[1]]
        if group.context is not None:
            low, high = group.context.output_range()
            lows.append(np.minimum(low, 0))  # checkerboard anchors read a zero context
            highs.append(np.maximum(high, 0))
        limit = np.full(group.extra_channels, self.latent_limit, np.int64)
        return np.concatenate(lows + [-limit]), np.concatenate(highs + [limit])

    def accumulator_bounds(self) -> dict[str, int]:
        """name -> the worst-case |accumulator| + rounding addend of each layer (module
        docstring), from the stored integers and the input clipping."""
        bounds = {}
        low, high = self.input_range()
        for position, layer in enumerate(self.hyper_synthesis):
            bounds[f"hyper_synthesis/{position}"] = _layer_bound(layer, low, high)
            low, high = layer.output_range()
        for stream, group in self.groups.items():
            if group.context is not None:
                limit = np.full(group.context.kernel.shape[2], self.latent_limit, np.int64)
                bounds[f"{stream}/context"] = _layer_bound(group.context, -limit, limit)
            low, high = self.group_input_ranges(stream)
            for position, layer in enumerate(group.hidden):
                bounds[f"{stream}/hidden/{position}"] = _layer_bound(layer, low, high)
                low, high = layer.output_range()
            head = group.head
            addend = int(head.mean_divisor.max()) // 2
            bounds[f"{stream}/head"] = _accumulator_bound(head.kernel, head.bias, low, high,
                                                          addend)
        return bounds

    def check_bounds(self) -> None:
        """Raises AccumulatorOverflow naming each layer whose bound exceeds 2^31 - 1."""
        if (np.abs(self.input_range()[0]).max(initial=0) > INT32_MAX
                or np.abs(self.input_range()[1]).max(initial=0) > INT32_MAX):
            raise AccumulatorOverflow("the clipped z_hat input does not fit int32")
        for layer in self._all_layers():
            if layer.rounding_divisor().max() > INT32_MAX:
                raise AccumulatorOverflow("a LeakyReLU divisor 100 D does not fit int32")
        over = {name: bound for name, bound in self.accumulator_bounds().items()
                if bound > INT32_MAX}
        if over:
            listed = ", ".join(f"{name} ({bound})" for name, bound in over.items())
            raise AccumulatorOverflow(f"worst-case accumulators exceed 2^31 - 1 = {INT32_MAX} "
                                      f"in {listed}: narrow the input clipping or the "
                                      f"activation / weight bits")

    def _all_layers(self):
        yield from self.hyper_synthesis
        for group in self.groups.values():
            if group.context is not None:
                yield group.context
            yield from group.hidden

    # ------------------------------------------------------------------- storage, identity

    def named_arrays(self) -> list[tuple[str, np.ndarray]]:
        """(name, array) of every stored array, plus "description" (the JSON of the rest, as
        uint8): what `save` writes and the model identifier hashes."""
        arrays = [("z_medians", self.z_medians)]
        description = {"file_version": FILE_VERSION, "z_fraction_bits": self.z_fraction_bits,
                       "z_limit": int(self.z_limit),
                       "mean_fraction_bits": self.mean_fraction_bits,
                       "latent_limit": int(self.latent_limit),
                       "hyper_synthesis": [], "groups": {}}
        for position, layer in enumerate(self.hyper_synthesis):
            arrays += _layer_arrays(f"hyper_synthesis/{position}", layer)
            description["hyper_synthesis"].append(_layer_description(layer))
        for stream, group in self.groups.items():
            prefix = f"groups/{stream}"
            entry = {"context_model": group.context_model, "extra_channels": group.extra_channels,
                     "context": None, "hidden": [],
                     "head": {"mean_limit": group.head.mean_limit,
                              "predicts_mean": group.head.predicts_mean,
                              "padding": list(group.head.padding)}}
            if group.context is not None:
                arrays += _layer_arrays(f"{prefix}/context", group.context)
                entry["context"] = _layer_description(group.context)
            for position, layer in enumerate(group.hidden):
                arrays += _layer_arrays(f"{prefix}/hidden/{position}", layer)
                entry["hidden"].append(_layer_description(layer))
            head = group.head
            arrays += [(f"{prefix}/head/{name}", getattr(head, name)) for name in
                       ("kernel", "bias", "mean_divisor", "scale_thresholds")]
            description["groups"][stream] = entry
        text = json.dumps(description, sort_keys=True).encode()
        return arrays + [("description", np.frombuffer(text, np.uint8))]

    def to_bytes(self) -> bytes:
        """The ``.npz`` bytes: each array in the narrowest of int8, int16 and int32 holding its
        values (`load` widens them back to int32, so `named_arrays` and the model identifier do
        not depend on it)."""
        buffer = io.BytesIO()
        np.savez(buffer, **{name: _narrowest(array) for name, array in self.named_arrays()})
        return buffer.getvalue()

    def save(self, path: str | os.PathLike) -> None:
        """Writes the ``.npz`` atomically."""
        write_bytes_atomic(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "IntegerEntropyModel":
        """Reads a `save`d network; ValueError naming the file when it is not one, and
        AccumulatorOverflow when its bounds do not hold."""
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {key: stored[key] for key in stored.files}
            description = json.loads(arrays.pop("description").tobytes())
            if description.get("file_version") != FILE_VERSION:
                raise ValueError(f"version {description.get('file_version')}, this reader "
                                 f"reads {FILE_VERSION}")
            return cls._from_arrays(arrays, description)
        except AccumulatorOverflow:
            raise
        except (OSError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path} is not a readable integer entropy network "
                             f"({type(error).__name__}: {error})") from None

    @classmethod
    def _from_arrays(cls, arrays, description) -> "IntegerEntropyModel":
        def layer(prefix, entry):
            return IntegerLayer(**{name: arrays[f"{prefix}/{name}"] for name in
                                   ("kernel", "bias", "divisor", "lower", "upper")},
                                activation=entry["activation"],
                                padding=tuple(entry["padding"]), upscale=entry["upscale"])
        groups = {}
        for stream, entry in description["groups"].items():
            prefix = f"groups/{stream}"
            head = IntegerHead(**{name: arrays[f"{prefix}/head/{name}"] for name in
                                  ("kernel", "bias", "mean_divisor", "scale_thresholds")},
                               mean_limit=entry["head"]["mean_limit"],
                               predicts_mean=entry["head"]["predicts_mean"],
                               padding=tuple(entry["head"]["padding"]))
            groups[stream] = IntegerGroup(
                entry["context_model"],
                None if entry["context"] is None else layer(f"{prefix}/context",
                                                            entry["context"]),
                tuple(layer(f"{prefix}/hidden/{i}", e) for i, e in enumerate(entry["hidden"])),
                head, entry["extra_channels"])
        return cls(
            z_fraction_bits=description["z_fraction_bits"], z_medians=arrays["z_medians"],
            z_limit=description["z_limit"],
            hyper_synthesis=tuple(layer(f"hyper_synthesis/{i}", e)
                                  for i, e in enumerate(description["hyper_synthesis"])),
            mean_fraction_bits=description["mean_fraction_bits"],
            latent_limit=description["latent_limit"], groups=groups)


def _narrowest(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.int32 or not array.size:
        return array
    for dtype in (np.int8, np.int16):
        limits = np.iinfo(dtype)
        if limits.min <= array.min() and array.max() <= limits.max:
            return array.astype(dtype)
    return array


def _layer_arrays(prefix: str, layer: IntegerLayer):
    return [(f"{prefix}/{name}", getattr(layer, name))
            for name in ("kernel", "bias", "divisor", "lower", "upper")]


def _layer_description(layer: IntegerLayer) -> dict:
    return {"activation": layer.activation, "padding": list(layer.padding),
            "upscale": layer.upscale}


def _layer_bound(layer: IntegerLayer, low, high) -> int:
    return _accumulator_bound(layer.kernel, layer.bias, low, high,
                              int(layer.rounding_divisor().max()) // 2)


def _accumulator_bound(kernel, bias, low, high, addend: int) -> int:
    """max over output channels of sum |W| * max(|low|, |high|) + |B| + addend, exactly (Python
    integers via int64: every term is below 2^62 for int32 weights and inputs)."""
    magnitude = np.maximum(np.abs(np.asarray(low, np.int64)), np.abs(np.asarray(high, np.int64)))
    if magnitude.shape != (kernel.shape[2],):
        raise ValueError(f"input range of {magnitude.shape[0]} channels for a kernel of "
                         f"{kernel.shape[2]} input channels")
    weights = np.abs(kernel.astype(np.int64))
    per_output = np.einsum("hwco,c->o", weights, magnitude) + np.abs(bias.astype(np.int64))
    return int(per_output.max(initial=0)) + int(addend)
