"""`Codec`: 8-bit RGB images to scalable ``.jdc`` files and back, with a trained codec model.

Encoding (the decoder mirrors it from the decoded symbols):

    image uint8 (H, W, 3) -> edge-replicate bottom/right to multiples of 64 -> x = image / 255
    y = g_a(x);  z = h_a(y)
    side:        symbol = round(z - median_c), z_hat = symbol + median_c   (one table per channel)
    psi = h_s(z_hat)
    base:        the base latent (all of y for single-layer models), in the order of its context
                 model (`context_decoding`): none, checkerboard or serial
    enhancement: JICD only; its entropy parameters also see the decoded base latent
    output = synthesis(decoded latents) cropped to (H, W), rounded and clipped to uint8

The side and base chunks alone decode the denoised image (JICD, Ranjbar Alvar et al. 2022), so a
file cut after its base chunk (`file_format.truncate_to_base`) decodes it identically.
Bits per pixel always divide by the real H * W pixels, never the padded size.

Exactness. Only integers cross the channel. The medians z_hat is centred on are the float32
values stored in the side tables, never recomputed. Encoder and decoder run the same jitted
functions on the same inputs, so on one platform they see bit-identical means and scales. Each
chunk stores the CRC-32 of its symbols (int32 little-endian, coding order); a decoder whose
floats differ from the encoder's (another platform) finds a different CRC and raises
`SymbolsMismatch` instead of returning a wrong image.

Coding tables. `Codec.from_checkpoint` builds the side tables (from the factorized prior's
parameters) and the latent tables once and stores them beside the checkpoint step, in
`<step>/coding_tables/{side,latent}.bin` with a `manifest.json` recording the sha256 of the
parameters they were built from; later loads read them (after checking that digest) instead of
rebuilding, so every encoder and decoder of that checkpoint uses the same integers. The model
identifier in each file header is the sha256 of the model kind and architecture, the weights
(canonical order: sorted parameter paths, each with dtype, shape and little-endian bytes) and
both table digests (`model_identifier`).

Outputs. JICD decodes "denoised" (side + base) or "noisy" (all three chunks: the noisy
reconstruction). Single-output models (hyperprior, testolina, jdc, codec) decode their one
output, its reconstruction, for output="denoised" or "reconstruction"; "noisy" is refused (they
have no noisy product).

Compiled pieces are jitted once per Codec; JAX compiles each once per image shape.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import sys
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jdc_jax import checkpoints
from jdc_jax.codec import context_decoding, file_format
from jdc_jax.codec.file_info import file_info
from jdc_jax.entropy import latent_coding, range_coder
from jdc_jax.entropy.tables import CodingTables
from jdc_jax.train import model_from_config, pad_to_multiple

# g_a downsamples by 16 and h_a by 4 more: z is the image / 64.
PADDING_MULTIPLE = 64
TABLES_DIRECTORY = "coding_tables"
_MODEL_ID_VERSION = b"jdc model id v1\0"
_GROUPS = {"base": "base_parameters", "enhancement": "enhancement_parameters"}


class SymbolsMismatch(file_format.CorruptChunk):
    """A chunk's decoded symbols are not the encoder's: their CRC-32 differs from the stored one,
    or the range decoder finds the payload undecodable although its byte CRC is right. The
    decoder's entropy parameters differ from the encoder's (e.g. another platform's floating
    point, or a different build of the model)."""


@dataclasses.dataclass(frozen=True)
class Encoding:
    """What `Codec.encode` produced.

    Attributes:
      data: the ``.jdc`` file.
      symbols: int32 symbols per stream ("side", "base", "enhancement"), flattened in coding
        order (what the decoder must reproduce).
      latents: quantized latents per stream, float32: side (h/4, w/4, N) z_hat, base and
        enhancement (h, w, C) y_hat (h, w the latent size).
    """

    data: bytes
    symbols: dict[str, np.ndarray]
    latents: dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Decoding:
    """What `Codec.decode` produced.

    Attributes:
      image: the model's output, float32 (H, W, 3) in [0, 1] (unclipped), cropped to the real size.
      output: which output it is ("denoised", "noisy" or "reconstruction").
      symbols, latents: as in `Encoding`, for the streams decoded.
    """

    image: np.ndarray
    output: str
    symbols: dict[str, np.ndarray]
    latents: dict[str, np.ndarray]


class Codec:
    """Compresses uint8 RGB images with one codec model and decodes its ``.jdc`` files.

    Args:
      model: an unbound Flax codec module (JICD, Hyperprior, Testolina or Cheng2020).
      params: its parameters (the "params" collection).
      side_tables, latent_tables: the coding tables; built from `params` when None (tests).
        `from_checkpoint` loads or builds and stores them.
      model_kind: the name written in file headers (`file_format.MODEL_KINDS`); default the
        module's own kind. Checkpoints use their config's name ("jdc", "codec", ...).
    """

    def __init__(self, model, params, *, side_tables: CodingTables | None = None,
                 latent_tables: CodingTables | None = None, model_kind: str | None = None):
        streams = getattr(model, "streams", None)
        if streams not in (("side", "base"), ("side", "base", "enhancement")):
            raise ValueError(f"{type(model).__name__} is not a codec model (it has no side and "
                             f"base streams)")
        kind = model_kind or model.kind
        if kind not in file_format.MODEL_KINDS:
            raise ValueError(f"model kind {kind!r} cannot be written to a .jdc file; expected "
                             f"one of {file_format.MODEL_KINDS}")
        self.model = model
        self.model_kind = kind
        self.streams = streams
        self.context_model = model.context_model
        self.params = jax.device_put(params)
        self.side_tables = (build_side_tables(model, params) if side_tables is None
                            else side_tables)
        self.latent_tables = _latent_tables() if latent_tables is None else latent_tables
        self.model_id = model_identifier(model, kind, params, self.side_tables,
                                         self.latent_tables)
        self.outputs = (("denoised", "noisy") if self.scalable
                        else ("denoised", "reconstruction"))
        self._medians = np.asarray(self.side_tables.medians, np.float32)
        self._analysis = _compiled(model, "analysis")
        self._hyper_analysis = _compiled(model, "hyper_analysis")
        self._hyper_synthesis = _compiled(model, "hyper_synthesis")
        if self.scalable:
            self._synthesis = {"denoised": _compiled(model, "synthesize_denoised"),
                               "noisy": _compiled(model, "synthesize_noisy")}
        else:
            synthesis = _compiled(model, "synthesize")
            self._synthesis = {"denoised": synthesis, "reconstruction": synthesis}
        self._groups = {stream: _GroupFunctions(model, self.params, attribute)
                        for stream, attribute in _GROUPS.items() if stream in streams}
        self._latent_shape_cache: dict[tuple[int, int], tuple] = {}

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike) -> "Codec":
        """The codec of a checkpoint (work directory, checkpoints/ or one step directory; the
        latest step unless a step directory is given), with its stored coding tables."""
        params, config, step = checkpoints.restore_params(path)
        kind = config.get("model")
        if kind not in file_format.MODEL_KINDS:
            raise ValueError(f"checkpoint {path} holds a {kind!r} model, not a codec")
        model = model_from_config(config)
        step_directory = checkpoints.resolve_checkpoint_dir(path) / str(step)
        side_tables, latent_tables = load_or_build_tables(
            step_directory / TABLES_DIRECTORY, model, params)
        return cls(model, params, side_tables=side_tables, latent_tables=latent_tables,
                   model_kind=kind)

    @property
    def scalable(self) -> bool:
        """Whether the model has an enhancement layer (JICD)."""
        return "enhancement" in self.streams

    # ----------------------------------------------------------------------- public API

    def compress(self, image, layers: str = "full") -> bytes:
        """A ``.jdc`` file of `image`, uint8 (H, W, 3) in [0, 255] (grey (H, W) or (H, W, 1)
        and RGBA / grey-alpha are converted, with a note on stderr).

        layers: "full" (JICD: side, base and enhancement chunks) or "base" (no enhancement
        chunk: decodes the denoised output only). Single-layer models write the same file for
        both. Compressing the same image twice gives the same bytes.
        """
        return self.encode(image, layers).data

    def decompress(self, data: bytes, output: str = "denoised") -> np.ndarray:
        """The decoded image, uint8 (H, W, 3), of a ``.jdc`` file written with this model.

        output: "denoised" (JICD base layer; needs only the side and base chunks) or "noisy"
        (JICD; needs the enhancement chunk); single-output models accept "denoised" or
        "reconstruction". Raises `file_format.JdcFormatError` subclasses for damaged, foreign
        or other-model files, `SymbolsMismatch` when the decoded symbols are not the encoder's,
        and ValueError for an output the file or model cannot give.
        """
        return to_uint8(self.decode(data, output).image)

    def info(self, data: bytes) -> dict:
        """`file_info(data)` (header fields, bytes and bits per pixel per stream) plus
        "written_with_this_model": whether the file's model identifier is this codec's."""
        info = file_info(data)
        info["written_with_this_model"] = info["model_id"] == self.model_id.hex()
        return info

    def encode(self, image, layers: str = "full") -> Encoding:
        """`compress`, also returning the coded symbols and quantized latents."""
        if layers not in ("full", "base"):
            raise ValueError(f"layers must be 'full' or 'base', got {layers!r}")
        image = as_rgb_image(image)
        height, width = image.shape[:2]
        padded = pad_to_multiple(image, PADDING_MULTIPLE)
        x = padded[None].astype(np.float32) / 255.0
        y = self._analysis(self.params, x)
        z = np.asarray(self._hyper_analysis(self.params, y))[0]
        y = np.asarray(y)[0]
        side_symbols = np.round(z - self._medians).astype(np.int32)
        symbols = {"side": side_symbols.reshape(-1)}
        payloads = {"side": _encode_side_symbols(side_symbols, self.side_tables)}
        crcs = {"side": _crc32(side_symbols)}
        z_hat = side_symbols.astype(np.float32) + self._medians
        latents = {"side": z_hat}
        psi = self._psi(z_hat)
        streams = self.streams if layers == "full" else ("side", "base")
        y_groups = self._split(y)
        for stream in streams[1:]:
            coder = context_decoding.LatentEncoder(
                y_groups[stream], self.latent_tables,
                round_around_mean=self._groups[stream].round_around_mean)
            latents[stream] = self._code_group(stream, coder, psi, latents.get("base"))
            payloads[stream], symbols[stream] = coder.finish(), coder.symbols
            crcs[stream] = coder.symbols_crc
        header = file_format.Header(
            model_kind=self.model_kind, model_id=self.model_id, height=height, width=width,
            padded_height=padded.shape[0], padded_width=padded.shape[1],
            padding_mode="replicate",
            latent_shapes=self._latent_shapes(padded.shape[0], padded.shape[1]),
            context_model=self.context_model, side_written=True,
            enhancement_written="enhancement" in streams)
        data = file_format.write_file(header, payloads, crcs)
        return Encoding(data, symbols, latents)

    def decode(self, data: bytes, output: str = "denoised") -> Decoding:
        """`decompress`, returning the model's float output and the decoded symbols/latents."""
        if output not in self.outputs:
            if output == "noisy":
                raise ValueError(f"a {self.model_kind} model has one output, its reconstruction;"
                                 f" output 'noisy' needs a JICD model (choose 'denoised' or "
                                 f"'reconstruction')")
            raise ValueError(f"unknown output {output!r}; this {self.model_kind} model decodes "
                             f"{' or '.join(map(repr, self.outputs))}")
        parsed = file_format.parse_file(data)
        header = parsed.header
        file_format.check_model_id(header, self.model_id)
        self._check_header(header)
        needs_enhancement = output == "noisy"
        if needs_enhancement and not parsed.has_enhancement:
            why = ("its enhancement chunk was cut off"
                   if parsed.enhancement_status == file_format.ENHANCEMENT_TRUNCATED
                   else "it was written with layers='base'")
            raise ValueError(f"this file has no enhancement layer ({why}): it decodes only "
                             f"the denoised output")
        side_shape = dict(header.latent_shapes)["z"]
        symbols, latents = {}, {}
        symbols["side"], latents["side"] = self._decode_chunk(
            "side", parsed, lambda payload: self._decode_side(payload, side_shape))
        psi = self._psi(latents["side"])
        # The enhancement chunk is read only for the noisy output.
        streams = ("base", "enhancement") if needs_enhancement else ("base",)
        for stream in streams:
            symbols[stream], latents[stream] = self._decode_chunk(
                stream, parsed, lambda payload: self._decode_group(
                    stream, payload, psi, latents.get("base")))
        image = self._synthesis[output](self.params, *(latents[s][None] for s in streams))
        image = np.asarray(image)[0, :header.height, :header.width]
        return Decoding(image, output, symbols, latents)

    # ----------------------------------------------------------------------- internals

    def _psi(self, z_hat: np.ndarray) -> np.ndarray:
        return np.asarray(self._hyper_synthesis(self.params, z_hat[None]))[0]

    def _split(self, y: np.ndarray) -> dict[str, np.ndarray]:
        if self.scalable:
            base, enhancement = self.model.split(y)
            return {"base": base, "enhancement": enhancement}
        return {"base": y}

    def _code_group(self, stream, coder, psi, base_latent):
        group = self._groups[stream]
        return context_decoding.code_group(
            coder, context_model=self.context_model, channels=group.channels, psi=psi,
            extra=base_latent if stream == "enhancement" else None,
            group_parameters=group.parameters, position_parameters=group.position_parameters,
            causal_taps=group.causal_taps)

    def _decode_side(self, payload: bytes, shape) -> tuple[np.ndarray, np.ndarray]:
        symbols = _decode_side_symbols(payload, shape, self.side_tables)
        return symbols.reshape(-1), symbols.astype(np.float32) + self._medians

    def _decode_group(self, stream, payload, psi, base_latent) -> tuple[np.ndarray, np.ndarray]:
        coder = context_decoding.LatentDecoder(
            payload, self.latent_tables, round_around_mean=self._groups[stream].round_around_mean)
        latent = self._code_group(stream, coder, psi, base_latent)
        return coder.symbols, latent

    def _decode_chunk(self, stream: str, parsed, decode) -> tuple[np.ndarray, np.ndarray]:
        """Runs `decode(payload) -> (symbols, latent)` on a stream's chunk and checks the
        symbols' CRC against the stored one."""
        try:
            with np.errstate(all="ignore"):  # damaged streams may produce non-finite means
                symbols, latent = decode(parsed.chunks[stream])
        except ValueError as error:
            raise SymbolsMismatch(f"{stream} chunk does not decode with this model ({error}); "
                                  f"the decoder's entropy parameters differ from the "
                                  f"encoder's") from None
        stored, computed = parsed.symbols_crcs[stream], _crc32(symbols)
        if stored != computed:
            raise SymbolsMismatch(
                f"{stream} chunk decoded to symbols with CRC-32 0x{computed:08x}, the encoder's "
                f"were 0x{stored:08x}: the decoder's entropy parameters differ from the "
                f"encoder's (another platform or model build)")
        return symbols, latent

    def _latent_shapes(self, padded_height: int, padded_width: int) -> tuple:
        """The header's latent list for a padded image size."""
        key = (padded_height, padded_width)
        if key not in self._latent_shape_cache:
            x = jax.ShapeDtypeStruct((1, padded_height, padded_width, 3), jnp.float32)
            y = jax.eval_shape(self._analysis, self.params, x)
            z = jax.eval_shape(self._hyper_analysis, self.params, y)
            height, width = y.shape[1:3]
            shapes = [("z", tuple(z.shape[1:]))]
            if self.scalable:
                shapes += [(stream, (height, width, group.channels))
                           for stream, group in self._groups.items()]
            else:
                shapes.append(("y", tuple(y.shape[1:])))
            self._latent_shape_cache[key] = tuple(shapes)
        return self._latent_shape_cache[key]

    def _check_header(self, header: file_format.Header) -> None:
        """Refuses a header this model did not write (reachable only by a forged file, as the
        model identifier already matched)."""
        expected_padding = tuple(-(-size // PADDING_MULTIPLE) * PADDING_MULTIPLE
                                 for size in (header.height, header.width))
        problems = []
        if header.model_kind != self.model_kind:
            problems.append(f"model kind {header.model_kind!r}, this model is "
                            f"{self.model_kind!r}")
        if header.context_model != self.context_model:
            problems.append(f"context model {header.context_model!r}, this model's is "
                            f"{self.context_model!r}")
        if header.padding_mode != "replicate" or not header.side_written:
            problems.append("padding or side layer this codec never writes")
        if (header.padded_height, header.padded_width) != expected_padding:
            problems.append(f"padded size {header.padded_height}x{header.padded_width}, not "
                            f"{expected_padding[0]}x{expected_padding[1]}")
        elif header.latent_shapes != self._latent_shapes(*expected_padding):
            problems.append(f"latents {header.latent_shapes}, this model's are "
                            f"{self._latent_shapes(*expected_padding)}")
        if problems:
            raise file_format.InvalidHeader(f"header does not fit this model: "
                                            f"{'; '.join(problems)}")


class _GroupFunctions:
    """The compiled (mean, scale) functions of one latent group, on host numpy arrays."""

    def __init__(self, model, params, attribute: str):
        group = getattr(model.bind({"params": params}), attribute)
        self.channels = group.channels
        self.round_around_mean = group.round_around_mean
        self._params = params
        self._parallel = _compiled(model, "group_parameters", attribute)
        self.causal_taps = None
        self.position_parameters = None
        if group.context_model == "serial":
            self.causal_taps = group.serial_context_taps()
            # Only the group's own parameters, and its context kernel restricted to the causal
            # taps once here, go to the per-position step.
            group_params = {attribute: params[attribute]}
            context = jax.jit(group.serial_context_matrix)()
            step = _compiled(model, "position_parameters", attribute)
            self.position_parameters = lambda psi_at, taps, extra_at: np.asarray(
                step(group_params, psi_at, taps, *context, extra_at))

    def parameters(self, psi, y_hat, extra):
        """(mean, scale), each (h, w, C) float32, of all positions (the parallel form)."""
        batched = [None if a is None else a[None] for a in (psi, y_hat, extra)]
        mean, scale = self._parallel(self._params, *batched)
        return np.asarray(mean)[0], np.asarray(scale)[0]


# Entry points of a codec module run by the encoder and decoder: name -> f(module, *args).
_ENTRY_POINTS = {
    "analysis": lambda m, x: m.analysis(x),
    "hyper_analysis": lambda m, y: m.hyper_analysis(y),
    "hyper_synthesis": lambda m, z_hat: m.hyper_synthesis(z_hat),
    "synthesize": lambda m, y_hat: m.synthesize(y_hat),
    "synthesize_denoised": lambda m, base: m.synthesize(base, output="denoised"),
    "synthesize_noisy": lambda m, base, enhancement: m.synthesize(
        base, enhancement, output="noisy_reconstruction"),
}


@functools.lru_cache(maxsize=None)
def _compiled(model, entry: str, group: str | None = None):
    """f(params, *args): the jitted entry point of `model` (an architecture: Flax modules
    compare by their fields), shared by every Codec of that architecture, so codecs of several
    checkpoints compile each piece once per shape.

    entry: a name in `_ENTRY_POINTS`; or "group_parameters" (the parallel (mean, scale) of latent
    group `group`) or "position_parameters" (its serial per-position (mean, scale), stacked
    (2, C), taking only the group's parameters).
    """
    if entry == "group_parameters":
        def method(m, psi, y_hat, extra):
            return getattr(m, group)(psi, y_hat, extra)
    elif entry == "position_parameters":
        def run_at(group_params, psi_at, causal_taps, context_matrix, context_bias, extra_at):
            mean, scale = model.apply(
                {"params": group_params}, psi_at, causal_taps, context_matrix, context_bias,
                extra_at, method=lambda m, *a: getattr(m, group).entropy_parameters_at(*a))
            return jnp.stack([mean[0], scale[0]])
        return jax.jit(run_at)
    else:
        method = _ENTRY_POINTS[entry]

    def run(params, *args):
        return model.apply({"params": params}, *args, method=method)
    return jax.jit(run)


@functools.lru_cache(maxsize=1)
def _latent_tables() -> CodingTables:
    return latent_coding.build_latent_tables()


def _side_indexes(shape) -> np.ndarray:
    """Table indexes of the side symbols (h, w, N): channel c uses table c."""
    return np.broadcast_to(np.arange(shape[-1], dtype=np.int32), shape).reshape(-1)


def _encode_side_symbols(symbols: np.ndarray, tables: CodingTables) -> bytes:
    """Range-codes the side symbols (h, w, N) int32 as one chunk."""
    encoder = range_coder.Encoder(tables)
    encoder.encode(symbols.reshape(-1), _side_indexes(symbols.shape))
    return encoder.finish()


def _decode_side_symbols(payload: bytes, shape, tables: CodingTables) -> np.ndarray:
    """Inverse of `_encode_side_symbols`: the side symbols (h, w, N) int32."""
    return range_coder.Decoder(payload, tables).decode(_side_indexes(shape)).reshape(shape)


def _crc32(symbols: np.ndarray) -> int:
    """CRC-32 of symbols as int32 little-endian, in their (coding) order."""
    return zlib.crc32(np.asarray(symbols).astype("<i4").tobytes())


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A [0, 1] float image as uint8 [0, 255]: round, clip (non-finite values become 0)."""
    image = np.nan_to_num(np.asarray(image, np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def as_rgb_image(image) -> np.ndarray:
    """`image` as uint8 (H, W, 3). Grey (H, W) / (H, W, 1) is replicated and an alpha channel
    ((H, W, 2) grey-alpha, (H, W, 4) RGBA) dropped, each with a note on stderr; anything else
    (another dtype, shape or an empty or oversized image) raises ValueError."""
    if not isinstance(image, (np.ndarray, jax.Array)):
        raise ValueError(f"image must be a uint8 numpy array (H, W, 3), got "
                         f"{type(image).__name__}")
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 in [0, 255], got dtype {image.dtype}; for a "
                         f"[0, 1] float image use np.round(image * 255).astype(np.uint8)")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"image must be (H, W, 3) RGB (or grey / with alpha), got shape "
                         f"{image.shape}")
    height, width, channels = image.shape
    if not (1 <= height <= file_format.MAX_IMAGE_SIDE and 1 <= width <= file_format.MAX_IMAGE_SIDE
            and height * width <= file_format.MAX_IMAGE_PIXELS):
        raise ValueError(f"image size {height}x{width} is outside 1 to "
                         f"{file_format.MAX_IMAGE_SIDE} pixels per side (at most "
                         f"{file_format.MAX_IMAGE_PIXELS} pixels)")
    if channels in (2, 4):
        print("note: dropped the image's alpha channel", file=sys.stderr)
        image = image[:, :, : channels - 1]
    if image.shape[-1] == 1:
        print("note: converted the grey image to RGB", file=sys.stderr)
        image = np.repeat(image, 3, axis=-1)
    return np.ascontiguousarray(image)


# --------------------------------------------------------------------------- tables, identity

def build_side_tables(model, params) -> CodingTables:
    """The side latent's coding tables, from the model's factorized prior parameters."""
    return model.apply({"params": params}, method=lambda m: m.side_prior.build_tables())


def parameters_digest(params) -> str:
    """sha256 hex of the weights: sorted parameter paths, each with dtype, shape and bytes."""
    digest = hashlib.sha256()
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    for path, leaf in sorted((jax.tree_util.keystr(path), leaf) for path, leaf in leaves):
        array = np.asarray(leaf)
        array = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<")))
        digest.update(f"{path}|{array.dtype.str}|{array.shape}\n".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def model_identifier(model, model_kind: str, params, side_tables: CodingTables,
                     latent_tables: CodingTables) -> bytes:
    """The 32-byte model identifier of file headers: sha256 of the kind and architecture
    fields, the weights digest and both table digests."""
    fields = {field.name: getattr(model, field.name) for field in dataclasses.fields(model)
              if field.name not in ("parent", "name")}
    architecture = json.dumps({"kind": model_kind, **{
        name: value if isinstance(value, (bool, int, float, str)) else str(jnp.dtype(value))
        for name, value in fields.items()}}, sort_keys=True)
    digest = hashlib.sha256(_MODEL_ID_VERSION)
    for part in (architecture, parameters_digest(params), side_tables.digest(),
                 latent_tables.digest()):
        digest.update(part.encode() + b"\0")
    return digest.digest()


def load_or_build_tables(directory: str | os.PathLike, model, params
                         ) -> tuple[CodingTables, CodingTables]:
    """(side, latent) tables stored in `directory`, or built and stored there.

    Stored tables are used only when the manifest's parameters digest is that of `params` and
    each file's digest is the manifest's; otherwise (or when unreadable) they are rebuilt,
    with a note on stderr, and rewritten atomically. A read-only directory keeps the tables
    in memory only (also noted)."""
    directory = Path(directory)
    weights = parameters_digest(params)
    manifest_path = directory / "manifest.json"
    note = None
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("params_sha256") != weights:
            note = "were built from other parameters"
        else:
            side = CodingTables.load(directory / "side.bin")
            latent = CodingTables.load(directory / "latent.bin")
            if (side.digest(), latent.digest()) == (manifest.get("side_sha256"),
                                                    manifest.get("latent_sha256")):
                return side, latent
            note = "do not match their manifest"
    except FileNotFoundError:
        pass
    except (OSError, ValueError, TypeError, AttributeError) as error:
        note = f"are unreadable ({error})"
    if note:
        print(f"note: coding tables in {directory} {note}; rebuilding them", file=sys.stderr)
    side = build_side_tables(model, params)
    latent = _latent_tables()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        side.save(directory / "side.bin")
        latent.save(directory / "latent.bin")
        checkpoints.write_json_atomic(manifest_path, {
            "params_sha256": weights, "side_sha256": side.digest(),
            "latent_sha256": latent.digest()})
    except OSError as error:
        print(f"note: could not store the coding tables in {directory} ({error}); using them "
              f"from memory", file=sys.stderr)
    return side, latent
