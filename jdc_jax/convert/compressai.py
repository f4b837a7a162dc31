"""CompressAI state dicts -> jdc_jax checkpoints.

    python -m jdc_jax.convert compressai --arch cheng2020-anchor --weights FILE --out DIR

or `convert_state_dict(arch, state_dict)` / `convert_file(arch, path, out)` from Python. The
output directory is a checkpoint like a training run's (`DIR/config.json`,
`DIR/checkpoints/0/...`, with its coding tables), so `Codec.from_checkpoint`, `jdc_jax.compress`,
`jdc_jax.evaluate`, `jdc_jax.export` and fine-tuning (`--config.init_from=DIR`) accept it.

Architectures (CompressAI name -> model kind here):

| CompressAI | kind | what |
|---|---|---|
| bmshj2018-factorized | factorized | Balle 2018, factorized prior |
| bmshj2018-hyperprior | scale_hyperprior | Balle 2018, scale-only hyperprior |
| mbt2018-mean | hyperprior (parameter_network=False) | Minnen 2018, mean-scale hyperprior |
| mbt2018 | hyperprior (context_model="serial") | Minnen 2018, with the serial context |
| cheng2020-anchor | codec (Cheng2020) | Cheng 2020 anchor (no attention) |

The widths N and M are read off the weights, so any N, M converts.

Mappings (each tested in tests/test_convert.py):

- convolution weights OIHW -> HWIO; every layer pads as PyTorch does (`layers.conv`);
- transposed convolutions (`deconv`: ConvTranspose2d(5, 2, padding=2, output_padding=1)):
  weight (C_in, C_out, k, k) flipped spatially and transposed to (k, k, C_in, C_out);
- sub-pixel convolutions: PyTorch's PixelShuffle reads output channel c of sub-pixel (i, j) from
  conv channel c * r^2 + i * r + j, `depth_to_space` from (i * r + j) * C + c: the conv's
  output channels (kernel and bias) are permuted;
- the masked context convolution: the stored `mask` must be the type-"A" raster mask
  (`masked_conv_mask`), and the kernel is stored multiplied by it;
- GDN / IGDN: `beta` and `gamma` are CompressAI's reparametrized values (sqrt(v + pedestal)) and
  are copied as they are: the pedestal (2^-36) and beta's bound (1e-6) are the same here, and
  are checked against the stored `*_reparam` buffers; gamma[i, j] weighs input j for output i
  in both;
- entropy bottleneck: `matrices.k` / `biases.k` / `factors.k` (or the older `_matrix{k}`,
  `_bias{k}`, `_factor{k}`) are this project's `matrix_k` / `bias_k` / `factor_k` unchanged
  ((C, out, in), (C, out, 1)); the number of matrices gives the CDF network's widths
  (`prior_filters`: CompressAI 1.2 uses (3, 3, 3, 3), its older zoo weights (3, 3, 3)); the
  medians are `quantiles[:, 0, 1]`, stored as they are (`stored_medians=True`), so z is
  quantized exactly where CompressAI quantizes it;
- Gaussian conditional: the scale bound (`lower_bound_scale.bound`) must be 0.11 and the
  likelihood bound 1e-9, this project's;
- entropy parameters: CompressAI orders (scales, means), this project (means, scales): the last
  layer's output channels (the EP network's, or h_s's for mbt2018-mean) are swapped.

Buffers CompressAI derives (`_quantized_cdf`, `_offset`, `_cdf_length`, `scale_table`, the
bottleneck's `target`) are accepted and not used: the coding tables are this project's own. A
key that is neither a weight of the architecture nor such a buffer, a missing weight, or a
tensor of the wrong shape is a `ConversionError` naming the key; nothing is written then.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jdc_jax import checkpoints
from jdc_jax.codec import api
from jdc_jax.default_config import get_config
from jdc_jax.entropy import gaussian
from jdc_jax.layers.conv import masked_conv_mask
from jdc_jax.models.registry import model_from_config

PEDESTAL = float(np.float32(2.0 ** -18) ** 2)
GDN_BETA_MIN = 1e-6
LIKELIHOOD_BOUND = 1e-9

# Buffers CompressAI computes from the weights (or constants it stores); never weights.
_DERIVED_BUFFERS = re.compile(
    r"(^|\.)(_offset|_quantized_cdf|_cdf_length|scale_table|target)$")


# The last name component of every tensor a CompressAI module stores.
_KNOWN_NAME = re.compile(r"weight|bias|beta|gamma|mask|quantiles|pedestal|bound|scale_bound|"
                         r"_offset|_quantized_cdf|_cdf_length|scale_table|target|\d+|"
                         r"_(matrix|bias|factor)\d+")


class ConversionError(ValueError):
    """A state dict that does not convert: the message names the offending key."""


@dataclasses.dataclass(frozen=True)
class Architecture:
    """How one CompressAI architecture maps onto a model kind here."""

    kind: str
    context_model: str = "none"
    parameter_network: bool = True
    convert: Callable | None = None


class _StateDict:
    """The state dict being converted: records which keys were read."""

    def __init__(self, state_dict: Mapping[str, np.ndarray]):
        self.arrays = {key: np.asarray(value) for key, value in state_dict.items()}
        self.used: set[str] = set()
        self.sources: dict[tuple, str] = {}

    def take(self, key: str) -> np.ndarray:
        if key not in self.arrays:
            self.missing(key)
        self.used.add(key)
        return self.arrays[key].astype(np.float32)

    def missing(self, key: str):
        """Raises for a missing key; a key no CompressAI module has (a renamed one) is named
        in the message when one is close to it."""
        foreign = [k for k in self.arrays if not _KNOWN_NAME.fullmatch(k.rsplit(".", 1)[-1])]
        close = difflib.get_close_matches(key, foreign, n=1, cutoff=0.8)
        hint = f"the state dict has {close[0]!r} instead" if close else \
            "expected in this architecture's state dict"
        raise ConversionError(f"missing key {key!r} ({hint})")

    def optional(self, key: str) -> np.ndarray | None:
        if key not in self.arrays:
            return None
        self.used.add(key)
        return self.arrays[key]

    def check_unused(self) -> None:
        extra = sorted(key for key in self.arrays
                       if key not in self.used and not _DERIVED_BUFFERS.search(key))
        if extra:
            raise ConversionError(f"unexpected key {extra[0]!r}" + (
                f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
                + ": not a weight of this architecture")

    def shape_of(self, key: str) -> tuple:
        if key not in self.arrays:
            self.missing(key)
        return tuple(self.arrays[key].shape)


# ----------------------------------------------------------------------------- layer mappings

def _swap_halves(array: np.ndarray) -> np.ndarray:
    """(scales, means) -> (means, scales) along the last axis."""
    half = array.shape[-1] // 2
    return np.concatenate([array[..., half:], array[..., :half]], axis=-1)


def conv(sd: _StateDict, prefix: str, *, swap_outputs: bool = False) -> dict:
    """Conv2d (OIHW) -> {"kernel" HWIO, "bias"}."""
    kernel = sd.take(f"{prefix}.weight").transpose(2, 3, 1, 0)
    bias = sd.take(f"{prefix}.bias")
    if swap_outputs:
        kernel, bias = _swap_halves(kernel), _swap_halves(bias)
    return {"kernel": kernel, "bias": bias, "__source__": prefix}


def transposed_conv(sd: _StateDict, prefix: str) -> dict:
    """ConvTranspose2d (C_in, C_out, k, k) -> our kernel (k, k, C_in, C_out), flipped."""
    weight = sd.take(f"{prefix}.weight")
    return {"kernel": np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)),
            "bias": sd.take(f"{prefix}.bias"), "__source__": prefix}


def pixel_shuffle_order(channels: int, upscale: int) -> np.ndarray:
    """perm with ours[..., k] = pytorch[..., perm[k]]: depth_to_space channel (i*r + j)*C + c
    is PixelShuffle channel c*r^2 + i*r + j."""
    r2 = upscale * upscale
    ours = np.arange(channels * r2)
    sub_pixel, channel = ours // channels, ours % channels
    return channel * r2 + sub_pixel


def subpixel_conv(sd: _StateDict, prefix: str, upscale: int = 2) -> dict:
    """Conv2d + PixelShuffle(r) -> our SubPixelConv {"conv": {...}} (outputs reordered)."""
    layer = conv(sd, prefix)
    order = pixel_shuffle_order(layer["bias"].shape[0] // upscale ** 2, upscale)
    layer["kernel"], layer["bias"] = layer["kernel"][..., order], layer["bias"][order]
    return {"conv": layer}


def masked_conv(sd: _StateDict, prefix: str) -> dict:
    """MaskedConv2d (type "A"): the stored mask must be ours; the kernel is stored masked."""
    weight = sd.take(f"{prefix}.weight")
    mask = sd.optional(f"{prefix}.mask")
    expected = masked_conv_mask(weight.shape[-1], "A")
    if mask is not None and not np.array_equal(
            np.asarray(mask, np.float32), np.broadcast_to(expected, weight.shape)):
        raise ConversionError(f"key {prefix + '.mask'!r} is not the type-'A' raster mask of a "
                              f"{weight.shape[-1]}x{weight.shape[-1]} context convolution")
    return {"kernel": (weight * expected).transpose(2, 3, 1, 0),
            "bias": sd.take(f"{prefix}.bias"), "__source__": prefix}


def gdn(sd: _StateDict, prefix: str) -> dict:
    """GDN / IGDN: the reparametrized beta and gamma, after checking the reparametrization."""
    for name, bound in (("beta", GDN_BETA_MIN), ("gamma", 0.0)):
        pedestal = sd.optional(f"{prefix}.{name}_reparam.pedestal")
        if pedestal is not None and not np.allclose(pedestal, PEDESTAL, rtol=1e-6, atol=0):
            raise ConversionError(f"key {prefix}.{name}_reparam.pedestal is {float(pedestal[0])}"
                                  f", not the pedestal 2^-36 this GDN uses")
        lower = sd.optional(f"{prefix}.{name}_reparam.lower_bound.bound")
        if lower is not None and not np.allclose(lower, np.sqrt(bound + PEDESTAL), rtol=1e-6):
            raise ConversionError(f"key {prefix}.{name}_reparam.lower_bound.bound is "
                                  f"{float(lower[0])}: a minimum {name} other than {bound}")
    return {"beta": sd.take(f"{prefix}.beta"), "gamma": sd.take(f"{prefix}.gamma"),
            "__source__": prefix}


def entropy_bottleneck(sd: _StateDict, prefix: str = "entropy_bottleneck"
                       ) -> tuple[dict, tuple[int, ...]]:
    """The factorized prior's parameters (with stored medians) and its hidden widths."""
    new_style = f"{prefix}.matrices.0" in sd.arrays

    def key(kind: str, index: int) -> str:
        plural = {"matrix": "matrices", "bias": "biases", "factor": "factors"}[kind]
        return f"{prefix}.{plural}.{index}" if new_style else f"{prefix}._{kind}{index}"

    layers = 0
    while key("matrix", layers) in sd.arrays:
        layers += 1
    if layers < 2:
        raise ConversionError(f"missing key {key('matrix', 0 if layers == 0 else 1)!r}: the "
                              f"entropy bottleneck needs at least two CDF layers")
    params = {}
    for index in range(layers):
        params[f"matrix_{index}"] = sd.take(key("matrix", index))
        params[f"bias_{index}"] = sd.take(key("bias", index))
        if index < layers - 1:
            params[f"factor_{index}"] = sd.take(key("factor", index))
    quantiles = sd.take(f"{prefix}.quantiles")
    if quantiles.ndim != 3 or quantiles.shape[1:] != (1, 3):
        raise ConversionError(f"key {prefix}.quantiles has shape {quantiles.shape}, expected "
                              f"(C, 1, 3)")
    params["medians"] = quantiles[:, 0, 1]
    bound = sd.optional(f"{prefix}.likelihood_lower_bound.bound")
    if bound is not None and not np.allclose(bound, LIKELIHOOD_BOUND, rtol=1e-6):
        raise ConversionError(f"key {prefix}.likelihood_lower_bound.bound is {float(bound[0])}, "
                              f"not the likelihood bound {LIKELIHOOD_BOUND}")
    filters = tuple(int(params[f"matrix_{index}"].shape[1]) for index in range(layers - 1))
    params["__source__"] = prefix
    return params, filters


def check_gaussian_conditional(sd: _StateDict, prefix: str = "gaussian_conditional") -> None:
    for name in ("lower_bound_scale.bound", "scale_bound"):
        scale = sd.optional(f"{prefix}.{name}")
        if scale is not None and not np.allclose(scale, gaussian.SCALE_BOUND, rtol=1e-6):
            raise ConversionError(f"key {prefix}.{name} is {float(scale.reshape(-1)[0])}, not "
                                  f"the scale bound {gaussian.SCALE_BOUND} of the coding tables")
    bound = sd.optional(f"{prefix}.likelihood_lower_bound.bound")
    if bound is not None and not np.allclose(bound, LIKELIHOOD_BOUND, rtol=1e-6):
        raise ConversionError(f"key {prefix}.likelihood_lower_bound.bound is {float(bound[0])}, "
                              f"not the likelihood bound {LIKELIHOOD_BOUND}")


# ----------------------------------------------------------------------------- transforms

def balle_analysis(sd: _StateDict) -> dict:
    params = {}
    for i in range(4):
        params[f"conv{i}"] = conv(sd, f"g_a.{2 * i}")
        if i < 3:
            params[f"gdn{i}"] = gdn(sd, f"g_a.{2 * i + 1}")
    return params


def balle_synthesis(sd: _StateDict) -> dict:
    params = {}
    for i in range(4):
        params[f"tconv{i}"] = transposed_conv(sd, f"g_s.{2 * i}")
        if i < 3:
            params[f"igdn{i}"] = gdn(sd, f"g_s.{2 * i + 1}")
    return params


def _residual_block(sd: _StateDict, prefix: str) -> dict:
    params = {"conv1": conv(sd, f"{prefix}.conv1"), "conv2": conv(sd, f"{prefix}.conv2")}
    if f"{prefix}.skip.weight" in sd.arrays:
        params["skip"] = conv(sd, f"{prefix}.skip")
    return params


def cheng_analysis(sd: _StateDict) -> dict:
    params = {}
    for i in range(3):
        params[f"rbs{i}"] = dict(_residual_block(sd, f"g_a.{2 * i}"),
                                 gdn=gdn(sd, f"g_a.{2 * i}.gdn"))
        params[f"rb{i}"] = _residual_block(sd, f"g_a.{2 * i + 1}")
    params["conv_out"] = conv(sd, "g_a.6")
    return params


def cheng_synthesis(sd: _StateDict) -> dict:
    params = {}
    for i in range(3):
        params[f"rb{i}"] = _residual_block(sd, f"g_s.{2 * i}")
        prefix = f"g_s.{2 * i + 1}"
        params[f"rbu{i}"] = {"subpel_conv": subpixel_conv(sd, f"{prefix}.subpel_conv.0"),
                             "conv": conv(sd, f"{prefix}.conv"),
                             "igdn": gdn(sd, f"{prefix}.igdn"),
                             "upsample": subpixel_conv(sd, f"{prefix}.upsample.0")}
    params["rb3"] = _residual_block(sd, "g_s.6")
    params["subpel_out"] = subpixel_conv(sd, "g_s.7.0")
    return params


def entropy_parameter_network(sd: _StateDict) -> dict:
    return {"ep0": conv(sd, "entropy_parameters.0"), "ep1": conv(sd, "entropy_parameters.2"),
            "ep2": conv(sd, "entropy_parameters.4", swap_outputs=True)}


# ----------------------------------------------------------------------------- architectures

def _factorized(sd: _StateDict) -> tuple[dict, tuple]:
    prior, filters = entropy_bottleneck(sd)
    return {"g_a": balle_analysis(sd), "prior": prior, "g_s": balle_synthesis(sd)}, filters


def _balle_hyperprior(sd: _StateDict, *, swap_parameters: bool) -> tuple[dict, tuple]:
    """The Balle transforms with a 3-layer hyper analysis and a (transposed, transposed, 3x3)
    hyper synthesis: bmshj2018-hyperprior, mbt2018-mean and mbt2018 (before its context)."""
    check_gaussian_conditional(sd)
    prior, filters = entropy_bottleneck(sd)
    return {
        "g_a": balle_analysis(sd),
        "h_a": {f"conv{i}": conv(sd, f"h_a.{2 * i}") for i in range(3)},
        "side_prior": prior,
        "h_s": {"tconv0": transposed_conv(sd, "h_s.0"), "tconv1": transposed_conv(sd, "h_s.2"),
                "conv2": conv(sd, "h_s.4", swap_outputs=swap_parameters)},
        "g_s": balle_synthesis(sd),
    }, filters


def _scale_hyperprior(sd: _StateDict) -> tuple[dict, tuple]:
    return _balle_hyperprior(sd, swap_parameters=False)  # h_s gives the scales alone


def _mean_scale(sd: _StateDict, *, serial: bool) -> tuple[dict, tuple]:
    # Without an EP network (mbt2018-mean), h_s's output is (scales, means) itself.
    params, filters = _balle_hyperprior(sd, swap_parameters=not serial)
    if serial:
        params["base_parameters"] = dict(entropy_parameter_network(sd),
                                         context=masked_conv(sd, "context_prediction"))
    return params, filters


def _cheng2020(sd: _StateDict) -> tuple[dict, tuple]:
    check_gaussian_conditional(sd)
    prior, filters = entropy_bottleneck(sd)
    return {
        "g_a": cheng_analysis(sd),
        "h_a": {f"conv{i}": conv(sd, f"h_a.{2 * i}") for i in range(5)},
        "side_prior": prior,
        "h_s": {"conv0": conv(sd, "h_s.0"), "subpel0": subpixel_conv(sd, "h_s.2.0"),
                "conv1": conv(sd, "h_s.4"), "subpel1": subpixel_conv(sd, "h_s.6.0"),
                "conv2": conv(sd, "h_s.8")},
        "base_parameters": dict(entropy_parameter_network(sd),
                                context=masked_conv(sd, "context_prediction")),
        "g_s": cheng_synthesis(sd),
    }, filters


ARCHITECTURES = {
    "bmshj2018-factorized": Architecture("factorized", convert=_factorized),
    "bmshj2018-hyperprior": Architecture("scale_hyperprior", convert=_scale_hyperprior),
    "mbt2018-mean": Architecture("hyperprior", parameter_network=False,
                                 convert=lambda sd: _mean_scale(sd, serial=False)),
    "mbt2018": Architecture("hyperprior", context_model="serial",
                            convert=lambda sd: _mean_scale(sd, serial=True)),
    "cheng2020-anchor": Architecture("codec", context_model="serial", convert=_cheng2020),
}


def _widths(arch: str, sd: _StateDict) -> tuple[int, int]:
    """(N, M) read off the weights."""
    if arch == "cheng2020-anchor":
        return sd.shape_of("g_a.0.conv1.weight")[0], sd.shape_of("g_a.6.weight")[0]
    return sd.shape_of("g_a.0.weight")[0], sd.shape_of("g_a.6.weight")[0]


# ----------------------------------------------------------------------------- conversion

def _split_sources(tree) -> tuple[dict, dict]:
    """(params without "__source__" entries, {param path tuple: source prefix})."""
    sources = {}

    def walk(node, path, source):
        if isinstance(node, dict):
            here = node.get("__source__", source)
            return {k: walk(v, path + (k,), here) for k, v in node.items() if k != "__source__"}
        sources[path] = source
        return node
    return walk(tree, (), None), sources


def model_config(arch: str, n: int, m: int, filters: tuple[int, ...]) -> dict:
    """The config of the converted model: the project's defaults with its architecture."""
    spec = ARCHITECTURES[arch]
    config = get_config()
    config.model = spec.kind
    config.channels, config.latent_channels = n, m
    config.context_model = spec.context_model
    config.parameter_network = spec.parameter_network
    config.stored_medians = True
    config.prior_filters = filters
    config.noise = "none"
    config.target = "clean"
    return config.to_dict()


def convert_state_dict(arch: str, state_dict: Mapping[str, np.ndarray]) -> tuple[dict, dict]:
    """(params, config dict) of the model equal to a CompressAI state dict of `arch`.

    Raises ConversionError naming the key for a missing, unexpected or misshapen tensor."""
    if arch not in ARCHITECTURES:
        raise ConversionError(f"unknown architecture {arch!r}; expected one of "
                              f"{', '.join(ARCHITECTURES)}")
    sd = _StateDict(_strip_module_prefix(state_dict))
    n, m = _widths(arch, sd)
    tree, filters = ARCHITECTURES[arch].convert(sd)
    sd.check_unused()
    params, sources = _split_sources(tree)
    config = model_config(arch, n, m, filters)
    model = model_from_config(config)
    expected = jax.eval_shape(
        lambda: model.init({"params": jax.random.key(0), "noise": jax.random.key(1)},
                           jnp.zeros((1, 64, 64, 3)), train=True)["params"])
    expected = {tuple(k.key for k in path): leaf.shape
                for path, leaf in jax.tree_util.tree_flatten_with_path(expected)[0]}
    got = {tuple(k.key for k in path): leaf.shape
           for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}
    for path, shape in got.items():
        if path not in expected:
            raise ConversionError(f"key {sources[path]!r} maps to {'/'.join(path)}, which a "
                                  f"{arch} model with N={n}, M={m} does not have")
        if tuple(shape) != tuple(expected[path]):
            raise ConversionError(
                f"key {sources[path]!r} does not fit {arch} with N={n}, M={m}: converted to "
                f"{'/'.join(path)} of shape {tuple(shape)}, the model needs "
                f"{tuple(expected[path])}")
    missing = sorted(set(expected) - set(got))
    if missing:
        raise ConversionError(f"no weight for {'/'.join(missing[0])} of {arch}")
    params = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), params)
    return params, config


def _strip_module_prefix(state_dict: Mapping[str, np.ndarray]) -> dict:
    """Keys saved from a DataParallel model start with "module."; drop that prefix."""
    if state_dict and all(key.startswith("module.") for key in state_dict):
        return {key[len("module."):]: value for key, value in state_dict.items()}
    return dict(state_dict)


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A state dict from an .npz file, or from a .pth / .pth.tar file when PyTorch is
    importable (a training checkpoint's "state_dict" entry is used when present)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as data:
            prefix = "state/" if any(k.startswith("state/") for k in data.files) else ""
            return {key[len(prefix):]: data[key] for key in data.files if key.startswith(prefix)}
    if path.endswith((".pth", ".pth.tar", ".pt", ".ckpt")):
        try:
            import torch
        except ImportError:
            raise ConversionError(
                f"{path} is a PyTorch file and PyTorch is not installed: install it (pip install "
                f"torch), or convert the file to .npz where PyTorch is: python -c \"import torch,"
                f" numpy as np; sd = torch.load('{path}', map_location='cpu'); sd = "
                f"sd.get('state_dict', sd); np.savez('weights.npz', **{{k: v.numpy() for k, v "
                f"in sd.items()}})\"") from None
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(loaded, dict) and "state_dict" in loaded:
            loaded = loaded["state_dict"]
        return {key: value.detach().cpu().numpy() for key, value in loaded.items()}
    raise ConversionError(f"{path}: unknown weights format; expected .npz, .pth or .pth.tar")


def write_checkpoint(params: dict, config: dict, out: str | os.PathLike, *,
                     source: dict | None = None) -> Path:
    """Writes `params` and `config` as a checkpoint directory `out` (step 0) with its coding
    tables; the directory appears whole or not at all. Returns its path."""
    out = Path(out).absolute()
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        config = dict(config, converted_from=source or {})
        checkpoints.write_json_atomic(staging / "config.json", config)
        manager = checkpoints.checkpoint_manager(staging / checkpoints.CHECKPOINT_SUBDIR)
        state = {"step": np.int32(0), "params": params}
        manager.save(0, args=ocp.args.Composite(state=ocp.args.PyTreeSave(state),
                                                config=ocp.args.JsonSave(config)), force=True)
        manager.wait_until_finished()
        manager.close()
        model = model_from_config(config)
        api.load_or_build_tables(staging / checkpoints.CHECKPOINT_SUBDIR / "0" /
                                 api.TABLES_DIRECTORY, model, jax.tree_util.tree_map(
                                     jnp.asarray, params))
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def convert_file(arch: str, weights: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Converts a CompressAI weights file (.npz, or .pth / .pth.tar with PyTorch) of `arch` into
    the checkpoint directory `out`."""
    state_dict = load_state_dict(weights)
    params, config = convert_state_dict(arch, state_dict)
    digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    return write_checkpoint(params, config, out, source={
        "library": "compressai", "arch": arch, "weights": os.path.basename(weights),
        "sha256": digest})
