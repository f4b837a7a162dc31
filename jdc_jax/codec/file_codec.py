"""`FileCodec`: 8-bit RGB images to scalable ``.jdc`` files and back, given a codec's compiled
pieces as plain callables (`CodecFunctions`).

Encoding (the decoder mirrors it from the decoded symbols):

    image uint8 (H, W, 3) -> edge-replicate bottom/right to multiples of 64 (16 without a
             side stream) -> x = image / 255
    y = g_a(x);  z = h_a(y)                 (g_a on tiles of x for large images, `tiling`)
    side:        symbol = round(z - median_c), z_hat = symbol + median_c   (one table per channel)
    psi = h_s(z_hat)
    base:        the base latent (all of y for single-layer models), in the order of its context
                 model (`group_coding`): none, checkerboard or serial (serial: in wavefront
                 order by default, or raster; the header records which, `scan_order`)
    enhancement: JICD only; its entropy parameters also see the decoded base latent
    output = synthesis(decoded latents) cropped to (H, W), rounded and clipped to uint8
             (the synthesis on tiles of the latents for large images)

The factorized-prior model (Balle et al. 2018) has no side stream: its base chunk codes y itself
with one table per channel, as the side stream codes z (symbol = round(y - median_c)).

The side and base chunks alone decode the denoised image (JICD, Ranjbar Alvar et al. 2022), so a
file cut after its base chunk (`file_format.truncate_to_base`) decodes it identically.
Bits per pixel always divide by the real H * W pixels, never the padded size.

Large images. The analysis and the synthesis run on overlapping tiles of the padded image when
it has more pixels than the `tiling.Tiling` bounds (default 2048 x 2048), which bounds their
memory; the file format is the same and any decoder tiling decodes any file (`tiling`).

Exactness. Only integers cross the channel. The medians z_hat is centred on are the float32
values stored in the side tables, never recomputed. Encoder and decoder run the same compiled
functions on the same inputs, so on one platform they see bit-identical means and scales. Each
chunk stores the CRC-32 of its symbols (int32 little-endian, coding order); a decoder whose
floats differ from the encoder's (another platform) finds a different CRC and raises
`SymbolsMismatch` instead of returning a wrong image.

The pieces. This module knows no model class: it runs the callables of a `CodecFunctions`
record, each taking and returning batched float32 arrays (batch 1), the weights already bound.
The native codec (`api.Codec`) binds jitted model functions (`model_functions`), the exported
package (`jdc_jax.exported`) the same functions deserialized with `jax.export`; both build the
record from the functions' names (`CodecFunctions.from_named`, names below) and run this one
coding loop, so their files are byte-identical wherever their floats are.

    analysis(x (1, H, W, 3))               -> y (1, H/16, W/16, M)
    hyper_analysis(y)                      -> z (1, H/64, W/64, N)     (models with a side stream)
    hyper_synthesis(z_hat)                 -> psi (1, H/16, W/16, P)
    synthesize_denoised(base)              -> (1, H, W, 3)   JICD; and
    synthesize_noisy(base, enhancement)    -> (1, H, W, 3)   JICD; or
    synthesize(y_hat)                      -> (1, H, W, 3)   single-layer models
    per latent group G ("base", "enhancement"), by its context model:
      none:          G_parameters(psi[, extra])             -> (mean, scale) (1, h, w, C)
      checkerboard:  G_parameters(psi, y_hat[, extra])      -> (mean, scale)
      serial:        G_context_matrix()                     -> (matrix (T C, 2C), bias (2C,))
                     G_parameters_at(psi_at (1, P), taps (1, T, C), matrix, bias[, extra_at (1, E)])
                                                            -> (2, C): mean, scale (raster order)
                     G_parameters_front(psi_at (b, P), taps (b, T, C), matrix, bias
                                        [, extra_at (b, E)])
                                                            -> (b, 2, C): mean, scale of the b
                                                               positions of a padded wavefront
    extra: the decoded base latent, for the enhancement group only.

Entropy paths. The indexes of the coding tables come from the float networks above ("float":
exact on the encoder's platform only, caught by the symbols CRC elsewhere) or from the integer
networks of `jdc_jax.integer` ("integer": exact on every platform), given as an
`IntegerFunctions` record; the header records which (`file_format.ENTROPY_PATHS`). A codec with
integer functions writes the integer path unless asked otherwise, and decodes both; the
analysis and the synthesis stay float either way. Integer-path files carry their own model
identifier (`IntegerFunctions.model_id`), float-path files the float model's.

    integer.hyper_synthesis(side symbols (1, h, w, N) int32)     -> psi (1, 4h, 4w, P) int32
    integer.groups[G](psi, y_fixed | None, extra | None)         -> (mean_fixed, scale_index)
                                                                    (1, h, w, C) int32 each
    integer.fronts[G](psi_at (b, P), taps (b, T, C)[, extra_at]) -> (mean_fixed, scale_index)
                                                                    (b, C): serial groups
    y_fixed, taps, extra: y_hat * 2^fraction_bits, int32.

Outputs. JICD decodes "denoised" (side + base) or "noisy" (all three chunks: the noisy
reconstruction). Single-output models decode their one output, its reconstruction, for
output="denoised" or "reconstruction"; "noisy" is refused (they have no noisy product).
"""

from __future__ import annotations

import dataclasses
import sys
import zlib
from typing import Callable, Mapping

import numpy as np

from jdc_jax.codec import file_format, group_coding, pixel_cap, scan_order as scan_orders
from jdc_jax.codec.file_info import file_info
from jdc_jax.codec.tiling import LATENT_STRIDE, Tiling, tiled_analysis, tiled_synthesis
from jdc_jax.entropy import latent_coding, range_coder
from jdc_jax.entropy.tables import CodingTables
from jdc_jax.images import as_rgb, pad_to_multiple, to_uint8

# g_a downsamples by LATENT_STRIDE = 16 and h_a by 4 more: z is the image / 64.
PADDING_MULTIPLE = 64
SIDE_STRIDE = 64
SCALABLE_STREAMS = ("side", "base", "enhancement")
SINGLE_LAYER_STREAMS = ("side", "base")
FACTORIZED_STREAMS = ("base",)
STREAM_LAYOUTS = (SCALABLE_STREAMS, SINGLE_LAYER_STREAMS, FACTORIZED_STREAMS)


def group_streams(streams: tuple[str, ...]) -> tuple[str, ...]:
    """The Gaussian-modelled latent groups among `streams` (none without a side stream)."""
    return tuple(stream for stream in streams if stream != "side") if "side" in streams else ()


def group_function_names(stream: str, context_model: str) -> tuple[str, ...]:
    """Names of the entropy-parameter functions latent group `stream` needs (module docstring)."""
    if context_model == "serial":
        return (f"{stream}_context_matrix", f"{stream}_parameters_at",
                f"{stream}_parameters_front")
    return (f"{stream}_parameters",)


def function_names(streams: tuple[str, ...], context_model: str) -> tuple[str, ...]:
    """Every function a codec with these streams and context model runs."""
    synthesis = (("synthesize_denoised", "synthesize_noisy") if "enhancement" in streams
                 else ("synthesize",))
    hyper = ("hyper_analysis", "hyper_synthesis") if "side" in streams else ()
    groups = tuple(name for stream in group_streams(streams)
                   for name in group_function_names(stream, context_model))
    return ("analysis", *hyper, *synthesis, *groups)


@dataclasses.dataclass(frozen=True)
class GroupFunctions:
    """The entropy-parameter functions of one Gaussian-modelled latent group: `parameters` for
    the "none" and "checkerboard" context models, `context_matrix`, `parameters_at` (one
    position: raster order) and `parameters_front` (a padded wavefront) for "serial"
    (signatures in the module docstring)."""

    parameters: Callable | None = None
    context_matrix: Callable | None = None
    parameters_at: Callable | None = None
    parameters_front: Callable | None = None


@dataclasses.dataclass(frozen=True)
class CodecFunctions:
    """Every function one codec runs (module docstring), weights bound.

    Attributes:
      analysis: g_a.
      synthesis: output name -> synthesis: "denoised" and "noisy" for JICD, "reconstruction"
        for single-layer models.
      hyper_analysis, hyper_synthesis: h_a and h_s; None for a model without a side stream.
      groups: stream -> `GroupFunctions` of each Gaussian-modelled latent group.
    """

    analysis: Callable
    synthesis: Mapping[str, Callable]
    hyper_analysis: Callable | None = None
    hyper_synthesis: Callable | None = None
    groups: Mapping[str, GroupFunctions] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_named(cls, named: Mapping[str, Callable], streams: tuple[str, ...],
                   context_model: str) -> "CodecFunctions":
        """The record of functions given by name (`function_names`); raises ValueError naming
        every function a codec of these streams and context model needs and `named` lacks."""
        missing = [name for name in function_names(tuple(streams), context_model)
                   if name not in named]
        if missing:
            raise ValueError(f"missing codec functions: {', '.join(missing)}")
        if "enhancement" in streams:
            synthesis = {"denoised": named["synthesize_denoised"],
                         "noisy": named["synthesize_noisy"]}
        else:
            synthesis = {"reconstruction": named["synthesize"]}
        groups = {}
        for stream in group_streams(tuple(streams)):
            if context_model == "serial":
                groups[stream] = GroupFunctions(
                    context_matrix=named[f"{stream}_context_matrix"],
                    parameters_at=named[f"{stream}_parameters_at"],
                    parameters_front=named[f"{stream}_parameters_front"])
            else:
                groups[stream] = GroupFunctions(parameters=named[f"{stream}_parameters"])
        return cls(analysis=named["analysis"], synthesis=synthesis,
                   hyper_analysis=named.get("hyper_analysis") if "side" in streams else None,
                   hyper_synthesis=named.get("hyper_synthesis") if "side" in streams else None,
                   groups=groups)


@dataclasses.dataclass(frozen=True)
class IntegerFunctions:
    """The integer entropy-parameter path of a codec (module docstring), weights bound.

    Attributes:
      model_id: the 32-byte model identifier integer-path files carry.
      fraction_bits: k, the fixed point of means and y_hat (value * 2^k).
      hyper_synthesis: side symbols -> integer psi.
      groups: stream -> parallel parameter function ("none" and "checkerboard" groups).
      fronts: stream -> front parameter function ("serial" groups; raster and wavefront).
    """

    model_id: bytes
    fraction_bits: int
    hyper_synthesis: Callable
    groups: Mapping[str, Callable] = dataclasses.field(default_factory=dict)
    fronts: Mapping[str, Callable] = dataclasses.field(default_factory=dict)


class SymbolsMismatch(file_format.CorruptChunk):
    """A chunk's decoded symbols are not the encoder's: their CRC-32 differs from the stored one,
    or the range decoder finds the payload undecodable although its byte CRC is right. The
    decoder's entropy parameters differ from the encoder's (e.g. another platform's floating
    point, or a different build of the model)."""


@dataclasses.dataclass(frozen=True)
class Encoding:
    """What `FileCodec.encode` produced.

    Attributes:
      data: the ``.jdc`` file.
      symbols: int32 symbols per stream ("side", "base", "enhancement"), flattened in coding
        order (what the decoder must reproduce).
      latents: quantized latents per stream, float32: side (h/4, w/4, N) z_hat, base and
        enhancement (h, w, C) y_hat (h, w the latent size).
      indexes: the coding-table indexes of each Gaussian-modelled stream, int32, in coding
        order (what the decoder must derive).
      entropy_path: "float" or "integer", how the indexes were derived.
    """

    data: bytes
    symbols: dict[str, np.ndarray]
    latents: dict[str, np.ndarray]
    indexes: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    entropy_path: str = "float"


@dataclasses.dataclass(frozen=True)
class Decoding:
    """What `FileCodec.decode` produced.

    Attributes:
      image: the model's output, float32 (H, W, 3) in [0, 1] (unclipped), cropped to the real size.
      output: which output it is ("denoised", "noisy" or "reconstruction").
      symbols, latents, indexes, entropy_path: as in `Encoding`, for the streams decoded.
    """

    image: np.ndarray
    output: str
    symbols: dict[str, np.ndarray]
    latents: dict[str, np.ndarray]
    indexes: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    entropy_path: str = "float"


@dataclasses.dataclass(frozen=True)
class LatentGroup:
    """What the coder must know of one Gaussian-modelled latent group besides its functions.

    Attributes:
      channels: C, the group's latent channels (base: the first C of y, enhancement: the rest).
      causal_taps: (k, k) bool mask of the serial context's causal taps; None otherwise.
    """

    channels: int
    causal_taps: np.ndarray | None = None


class FileCodec:
    """Compresses uint8 RGB images with one codec's compiled pieces and decodes its files.

    Args:
      functions: the `CodecFunctions` of the model (weights bound).
      model_kind: the name written in file headers (`file_format.MODEL_KINDS`).
      model_id: the 32-byte model identifier written in file headers and checked on decoding.
      context_model: "none", "serial" or "checkerboard".
      streams: ("side", "base"), ("side", "base", "enhancement") or ("base",) (factorized prior).
      groups: stream -> `LatentGroup`, for each Gaussian-modelled group ("base", and
        "enhancement"); empty without a side stream.
      side_channels: N, the channels of z (of y for the factorized prior, which the side tables
        then code).
      side_tables: the factorized prior's tables (z, or y without a side stream);
      latent_tables: the Gaussian conditional's tables.
      tiling: when the analysis and synthesis run on tiles (`tiling.Tiling`); kept as the
        attribute `tiling`, which may be replaced between calls (no file depends on it).
      integer: the `IntegerFunctions` of the integer entropy path, or None (float path only).
        With them the codec writes the integer path by default.
    """

    def __init__(self, *, functions: CodecFunctions, model_kind: str, model_id: bytes,
                 context_model: str, streams: tuple[str, ...],
                 groups: Mapping[str, LatentGroup], side_channels: int,
                 side_tables: CodingTables, latent_tables: CodingTables,
                 tiling: Tiling = Tiling(), integer: IntegerFunctions | None = None):
        if tuple(streams) not in STREAM_LAYOUTS:
            raise ValueError(f"streams must be one of {STREAM_LAYOUTS}, got {streams}")
        if model_kind not in file_format.MODEL_KINDS:
            raise ValueError(f"model kind {model_kind!r} cannot be written to a .jdc file; "
                             f"expected one of {file_format.MODEL_KINDS}")
        if context_model not in file_format.CONTEXT_MODELS:
            raise ValueError(f"unknown context model {context_model!r}; expected one of "
                             f"{file_format.CONTEXT_MODELS}")
        if len(model_id) != 32:
            raise ValueError(f"model identifier must be 32 bytes, got {len(model_id)}")
        if not isinstance(tiling, Tiling):
            raise ValueError(f"tiling must be a jdc_jax.codec.tiling.Tiling, got "
                             f"{type(tiling).__name__}")
        if not isinstance(functions, CodecFunctions):
            raise ValueError(f"functions must be a CodecFunctions record, got "
                             f"{type(functions).__name__}")
        self.streams = tuple(streams)
        if set(groups) != set(group_streams(self.streams)) \
                or set(functions.groups) != set(groups):
            raise ValueError(f"latent groups {sorted(groups)} (functions for "
                             f"{sorted(functions.groups)}) do not match the streams "
                             f"{self.streams}")
        self.model_kind = model_kind
        self.model_id = bytes(model_id)
        self.context_model = context_model
        self.tiling = tiling
        self.side_tables = side_tables
        self.latent_tables = latent_tables
        self.side_channels = int(side_channels)
        self.groups = dict(groups)
        self.outputs = (("denoised", "noisy") if self.scalable
                        else ("denoised", "reconstruction"))
        self.padding_multiple = PADDING_MULTIPLE if self.has_side else LATENT_STRIDE
        self._medians = np.asarray(side_tables.medians, np.float32)
        self._functions = functions
        if self.scalable:
            self._synthesis = dict(functions.synthesis)
        else:
            reconstruction = functions.synthesis["reconstruction"]
            self._synthesis = {"denoised": reconstruction, "reconstruction": reconstruction}
        self._front_parameters = {stream: self._serial_steps(stream)
                                  for stream in self.groups if context_model == "serial"}
        if integer is not None:
            if not isinstance(integer, IntegerFunctions):
                raise ValueError(f"integer must be an IntegerFunctions record, got "
                                 f"{type(integer).__name__}")
            if len(integer.model_id) != 32 or bytes(integer.model_id) == self.model_id:
                raise ValueError("the integer path needs its own 32-byte model identifier")
            wanted = set(self.groups)
            have = set(integer.fronts if context_model == "serial" else integer.groups)
            if not self.has_side or have != wanted:
                raise ValueError(f"integer entropy functions for groups {sorted(have)} do not "
                                 f"match this codec's Gaussian-modelled groups {sorted(wanted)}")
        self._integer = integer

    @property
    def scalable(self) -> bool:
        """Whether the model has an enhancement layer (JICD)."""
        return "enhancement" in self.streams

    @property
    def has_side(self) -> bool:
        """Whether the model codes a side latent z (all but the factorized-prior model)."""
        return "side" in self.streams

    @property
    def entropy_paths(self) -> tuple[str, ...]:
        """The entropy paths this codec writes and decodes: ("float",) or ("float",
        "integer")."""
        return ("float",) if self._integer is None else ("float", "integer")

    @property
    def default_entropy_path(self) -> str:
        """What `compress` writes unless told: "integer" when the codec has the integer path."""
        return self.entropy_paths[-1]

    @property
    def integer_model_id(self) -> bytes | None:
        """The model identifier of integer-path files (None without the integer path)."""
        return None if self._integer is None else bytes(self._integer.model_id)

    @property
    def functions(self) -> CodecFunctions:
        """The record of functions this codec runs (e.g. to time its synthesis alone)."""
        return self._functions

    @property
    def latent_channels(self) -> int:
        """M, the channels of y (all groups)."""
        if not self.has_side:
            return self.side_channels
        return sum(group.channels for group in self.groups.values())

    # ----------------------------------------------------------------------- public API

    def compress(self, image, layers: str = "full",
                 scan_order: str = scan_orders.DEFAULT_SCAN_ORDER,
                 entropy_path: str | None = None) -> bytes:
        """A ``.jdc`` file of `image`, uint8 (H, W, 3) in [0, 255] (grey (H, W) or (H, W, 1)
        and RGBA / grey-alpha are converted, with a note on stderr).

        layers: "full" (JICD: side, base and enhancement chunks) or "base" (no enhancement
        chunk: decodes the denoised output only). Single-layer models write the same file for
        both. Compressing the same image twice gives the same bytes.
        scan_order: "wavefront" (default) or "raster", the order of a serial context's
        positions (`scan_order`; the same y_hat and probabilities, the symbols in another
        order); other context models have one order and ignore it.
        entropy_path: "float" or "integer" (module docstring); None: `default_entropy_path`.
        """
        return self.encode(image, layers, scan_order, entropy_path).data

    def decompress(self, data: bytes, output: str = "denoised", *,
                   max_pixels: int | None = pixel_cap.DEFAULT_MAX_PIXELS) -> np.ndarray:
        """The decoded image, uint8 (H, W, 3), of a ``.jdc`` file written with this model.

        output: "denoised" (JICD base layer; needs only the side and base chunks) or "noisy"
        (JICD; needs the enhancement chunk); single-output models accept "denoised" or
        "reconstruction". max_pixels: the largest H * W decoded (`pixel_cap`; default 100
        megapixels, None for the format's own limit). Raises `file_format.JdcFormatError`
        subclasses for damaged, foreign or other-model files, `pixel_cap.ImageTooLarge` for a
        size above max_pixels, `SymbolsMismatch` when the decoded symbols are not the
        encoder's, and ValueError for an output the file or model cannot give.
        """
        return to_uint8(self.decode(data, output, max_pixels=max_pixels).image)

    def info(self, data: bytes) -> dict:
        """`file_info(data)` (header fields, bytes and bits per pixel per stream) plus
        "written_with_this_model": whether the file's model identifier is this codec's."""
        info = file_info(data)
        identifiers = {self.model_id.hex()}
        if self._integer is not None:
            identifiers.add(self.integer_model_id.hex())
        info["written_with_this_model"] = info["model_id"] in identifiers
        return info

    def encode(self, image, layers: str = "full",
               scan_order: str = scan_orders.DEFAULT_SCAN_ORDER,
               entropy_path: str | None = None) -> Encoding:
        """`compress`, also returning the coded symbols, table indexes and quantized latents."""
        path = self.default_entropy_path if entropy_path is None else entropy_path
        if path not in self.entropy_paths:
            if path not in file_format.ENTROPY_PATHS:
                raise ValueError(f"entropy path must be one of {file_format.ENTROPY_PATHS}, got "
                                 f"{entropy_path!r}")
            raise ValueError("this model has no integer entropy parameters (calibrate it: "
                             "python -m jdc_jax.integer calibrate)")
        if not self.has_side:
            path = "float"  # no entropy parameters: nothing to derive
        if layers not in ("full", "base"):
            raise ValueError(f"layers must be 'full' or 'base', got {layers!r}")
        if scan_order not in file_format.SCAN_ORDERS:
            raise ValueError(f"scan order must be one of {file_format.SCAN_ORDERS}, got "
                             f"{scan_order!r}")
        if self.context_model != "serial":
            scan_order = "raster"  # the header's value for orders the context model fixes
        image = as_rgb(image)
        height, width = image.shape[:2]
        padded = pad_to_multiple(image, self.padding_multiple)
        y = tiled_analysis(self._functions.analysis, padded,
                           self.tiling.analysis_tiles(*padded.shape[:2]))
        symbols, payloads, crcs, latents, indexes = {}, {}, {}, {}, {}
        if not self.has_side:  # the factorized prior codes y like a side latent
            stream_symbols = np.round(y - self._medians).astype(np.int32)
            symbols["base"] = stream_symbols.reshape(-1)
            payloads["base"] = _encode_factorized_symbols(stream_symbols, self.side_tables)
            crcs["base"] = _crc32(stream_symbols)
            latents["base"] = stream_symbols.astype(np.float32) + self._medians
        else:
            z = np.asarray(self._functions.hyper_analysis(y[None]))[0]
            side_symbols = np.round(z - self._medians).astype(np.int32)
            symbols["side"] = side_symbols.reshape(-1)
            payloads["side"] = _encode_factorized_symbols(side_symbols, self.side_tables)
            crcs["side"] = _crc32(side_symbols)
            latents["side"] = side_symbols.astype(np.float32) + self._medians
            psi = self._psi(latents["side"], side_symbols, path)
            streams = self.streams if layers == "full" else ("side", "base")
            y_groups = self._split(y)
            coded = {}
            for stream in streams[1:]:
                coder = group_coding.LatentEncoder(
                    y_groups[stream], self.latent_tables,
                    round_around_mean=self._round_around_mean,
                    fraction_bits=self._fraction_bits(path))
                coded[stream] = self._code_group(stream, coder, psi, coded.get("base"),
                                                 scan_order, path)
                latents[stream] = self._float_latent(coded[stream], path)
                payloads[stream], symbols[stream] = coder.finish(), coder.symbols
                crcs[stream], indexes[stream] = coder.symbols_crc, coder.indexes
        header = file_format.Header(
            model_kind=self.model_kind, model_id=self._model_id_of(path), height=height,
            width=width,
            padded_height=padded.shape[0], padded_width=padded.shape[1],
            padding_mode="replicate",
            latent_shapes=self.latent_shapes(padded.shape[0], padded.shape[1]),
            context_model=self.context_model, side_written=self.has_side,
            enhancement_written="enhancement" in payloads, scan_order=scan_order,
            entropy_path=path)
        data = file_format.write_file(header, payloads, crcs)
        return Encoding(data, symbols, latents, indexes, path)

    def decode(self, data: bytes, output: str = "denoised", *,
               max_pixels: int | None = pixel_cap.DEFAULT_MAX_PIXELS) -> Decoding:
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
        # Before any allocation of the declared size (a forged header's decompression bomb).
        pixel_cap.check_pixels(header.height, header.width, max_pixels)
        path = header.entropy_path
        if path not in self.entropy_paths:
            raise file_format.WrongModel(
                f"file was written with the {path} entropy path, and this model has no "
                f"{path} entropy parameters (python -m jdc_jax.integer calibrate adds them to a "
                f"checkpoint; the encoder's model must have the same ones)")
        file_format.check_model_id(header, self._model_id_of(path))
        self._check_header(header)
        needs_enhancement = output == "noisy"
        if needs_enhancement and not parsed.has_enhancement:
            why = ("its enhancement chunk was cut off"
                   if parsed.enhancement_status == file_format.ENHANCEMENT_TRUNCATED
                   else "it was written with layers='base'")
            raise ValueError(f"this file has no enhancement layer ({why}): it decodes only "
                             f"the denoised output")
        shapes = dict(header.latent_shapes)
        symbols, latents, indexes = {}, {}, {}
        if not self.has_side:
            symbols["base"], latents["base"] = self._decode_chunk(
                "base", parsed, lambda payload: self._decode_factorized(payload, shapes["y"]))
            streams = ("base",)
        else:
            symbols["side"], latents["side"] = self._decode_chunk(
                "side", parsed, lambda payload: self._decode_factorized(payload, shapes["z"]))
            psi = self._psi(latents["side"], symbols["side"].reshape(shapes["z"]), path)
            # The enhancement chunk is read only for the noisy output.
            streams = ("base", "enhancement") if needs_enhancement else ("base",)
            coded = {}
            for stream in streams:
                symbols[stream], coded[stream] = self._decode_chunk(
                    stream, parsed, lambda payload: self._decode_group(
                        stream, payload, psi, coded.get("base"), header.scan_order, path,
                        indexes))
                latents[stream] = self._float_latent(coded[stream], path)
        image = tiled_synthesis(self._synthesis[output], [latents[s] for s in streams],
                                self.tiling.synthesis_tiles(header.padded_height,
                                                            header.padded_width))
        image = image[:header.height, :header.width]
        return Decoding(image, output, symbols, latents, indexes, path)

    def latent_shapes(self, padded_height: int, padded_width: int) -> tuple:
        """The header's latent list for a padded image size (multiples of `padding_multiple`)."""
        height, width = padded_height // LATENT_STRIDE, padded_width // LATENT_STRIDE
        if not self.has_side:
            return (("y", (height, width, self.latent_channels)),)
        shapes = [("z", (padded_height // SIDE_STRIDE, padded_width // SIDE_STRIDE,
                         self.side_channels))]
        if self.scalable:
            shapes += [(stream, (height, width, group.channels))
                       for stream, group in self.groups.items()]
        else:
            shapes.append(("y", (height, width, self.latent_channels)))
        return tuple(shapes)

    # ----------------------------------------------------------------------- internals

    @property
    def _round_around_mean(self) -> bool:
        return latent_coding.rounds_around_mean(self.context_model)

    def _serial_steps(self, stream: str) -> dict:
        """scan order -> `group_coding.FrontParameters` of the group, with its context kernel
        restricted to the causal taps once here. Raster fronts (one position) run
        `parameters_at`, the function of format version 1, so those files decode with the very
        floats they were written with; a wavefront is padded with zeros to its bucket
        (`scan_order.front_bucket`) and runs `parameters_front`, one program per bucket."""
        functions = self._functions.groups[stream]
        matrix, bias = functions.context_matrix()

        def position_parameters(psi_at, taps, extra_at):
            extra = () if extra_at is None else (extra_at,)
            parameters = np.asarray(functions.parameters_at(psi_at, taps, matrix, bias, *extra))
            return parameters[0][None], parameters[1][None]

        def front_parameters(psi_at, taps, extra_at):
            length = psi_at.shape[0]
            padding = scan_orders.front_bucket(length) - length
            arrays = [psi_at, taps] + ([] if extra_at is None else [extra_at])
            psi_at, taps, *extra = [np.pad(a, [(0, padding)] + [(0, 0)] * (a.ndim - 1))
                                    for a in arrays]
            parameters = np.asarray(functions.parameters_front(psi_at, taps, matrix, bias,
                                                               *extra))[:length]
            return parameters[:, 0], parameters[:, 1]
        return {"raster": position_parameters, "wavefront": front_parameters}

    def _group_parameters(self, stream: str):
        """(psi, y_hat, extra) -> (mean, scale) (h, w, C) numpy: the parallel form."""
        parameters = self._functions.groups[stream].parameters

        def group_parameters(psi, y_hat, extra):
            arguments = [a[None] for a in (psi, y_hat, extra) if a is not None]
            mean, scale = parameters(*arguments)
            return np.asarray(mean)[0], np.asarray(scale)[0]
        return group_parameters

    def _psi(self, z_hat: np.ndarray, side_symbols: np.ndarray, path: str) -> np.ndarray:
        """psi (h, w, P): float32 from z_hat, or int32 from the side symbols (integer path)."""
        if path == "integer":
            return np.asarray(self._integer.hyper_synthesis(
                np.asarray(side_symbols, np.int32)[None]))[0]
        return np.asarray(self._functions.hyper_synthesis(z_hat[None]))[0]

    def _model_id_of(self, path: str) -> bytes:
        return self.model_id if path == "float" else self.integer_model_id

    def _fraction_bits(self, path: str) -> int | None:
        return None if path == "float" else self._integer.fraction_bits

    def _float_latent(self, coded: np.ndarray, path: str) -> np.ndarray:
        """The float32 y_hat the synthesis reads, from the coder's representation."""
        if path == "float":
            return coded
        return latent_coding.fixed_to_float(coded, self._integer.fraction_bits)

    def _integer_group_parameters(self, stream: str):
        """(psi, y_fixed, extra) -> (mean_fixed, scale_index) (h, w, C): the integer path's
        parallel form."""
        function = self._integer.groups[stream]

        def group_parameters(psi, y_fixed, extra):
            arguments = [None if a is None else _as_int32(a)[None] for a in (y_fixed, extra)]
            mean, index = function(psi[None], *arguments)
            return np.asarray(mean)[0], np.asarray(index)[0]
        return group_parameters

    def _integer_front_parameters(self, stream: str):
        """The integer path's `group_coding.FrontParameters`, for both scan orders: a front
        padded with zeros to its bucket (`scan_order.front_bucket`); integers do not depend on
        the padding, so raster files need no per-position program."""
        function = self._integer.fronts[stream]

        def front_parameters(psi_at, taps, extra_at):
            length = psi_at.shape[0]
            padding = scan_orders.front_bucket(length) - length
            arrays = [psi_at, taps] + ([] if extra_at is None else [extra_at])
            arrays = [np.pad(_as_int32(a), [(0, padding)] + [(0, 0)] * (a.ndim - 1))
                      for a in arrays]
            mean, index = function(*arrays)
            return np.asarray(mean)[:length], np.asarray(index)[:length]
        return front_parameters

    def _split(self, y: np.ndarray) -> dict[str, np.ndarray]:
        if self.scalable:
            base_channels = self.groups["base"].channels
            return {"base": y[..., :base_channels], "enhancement": y[..., base_channels:]}
        return {"base": y}

    def _code_group(self, stream, coder, psi, base_latent, scan_order, path):
        group = self.groups[stream]
        serial = self.context_model == "serial"
        if path == "integer":
            group_parameters = None if serial else self._integer_group_parameters(stream)
            front_parameters = self._integer_front_parameters(stream) if serial else None
        else:
            group_parameters = self._group_parameters(stream)
            front_parameters = self._front_parameters[stream][scan_order] if serial else None
        return group_coding.code_group(
            coder, context_model=self.context_model, channels=group.channels, psi=psi,
            extra=base_latent if stream == "enhancement" else None,
            group_parameters=group_parameters, front_parameters=front_parameters,
            causal_taps=group.causal_taps, scan_order=scan_order)

    def _decode_factorized(self, payload: bytes, shape) -> tuple[np.ndarray, np.ndarray]:
        symbols = _decode_factorized_symbols(payload, shape, self.side_tables)
        return symbols.reshape(-1), symbols.astype(np.float32) + self._medians

    def _decode_group(self, stream, payload, psi, base_latent, scan_order, path,
                      indexes) -> tuple[np.ndarray, np.ndarray]:
        """(symbols, y_hat in the coder's representation); the indexes go to `indexes`."""
        coder = group_coding.LatentDecoder(payload, self.latent_tables,
                                           round_around_mean=self._round_around_mean,
                                           fraction_bits=self._fraction_bits(path))
        latent = self._code_group(stream, coder, psi, base_latent, scan_order, path)
        indexes[stream] = coder.indexes
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

    def _check_header(self, header: file_format.Header) -> None:
        """Refuses a header this model did not write (reachable only by a forged file, as the
        model identifier already matched)."""
        multiple = self.padding_multiple
        expected_padding = tuple(-(-size // multiple) * multiple
                                 for size in (header.height, header.width))
        problems = []
        if header.model_kind != self.model_kind:
            problems.append(f"model kind {header.model_kind!r}, this model is "
                            f"{self.model_kind!r}")
        if header.context_model != self.context_model:
            problems.append(f"context model {header.context_model!r}, this model's is "
                            f"{self.context_model!r}")
        if header.padding_mode != "replicate" or header.side_written != self.has_side:
            problems.append("padding or side layer this codec never writes")
        if (header.padded_height, header.padded_width) != expected_padding:
            problems.append(f"padded size {header.padded_height}x{header.padded_width}, not "
                            f"{expected_padding[0]}x{expected_padding[1]}")
        elif header.latent_shapes != self.latent_shapes(*expected_padding):
            problems.append(f"latents {header.latent_shapes}, this model's are "
                            f"{self.latent_shapes(*expected_padding)}")
        if problems:
            raise file_format.InvalidHeader(f"header does not fit this model: "
                                            f"{'; '.join(problems)}")


def _factorized_indexes(shape) -> np.ndarray:
    """Table indexes of a factorized-prior latent (h, w, C): channel c uses table c."""
    return np.broadcast_to(np.arange(shape[-1], dtype=np.int32), shape).reshape(-1)


def _encode_factorized_symbols(symbols: np.ndarray, tables: CodingTables) -> bytes:
    """Range-codes a factorized-prior latent's symbols (h, w, C) int32 as one chunk."""
    encoder = range_coder.Encoder(tables)
    encoder.encode(symbols.reshape(-1), _factorized_indexes(symbols.shape))
    return encoder.finish()


def _decode_factorized_symbols(payload: bytes, shape, tables: CodingTables) -> np.ndarray:
    """Inverse of `_encode_factorized_symbols`: the symbols (h, w, C) int32."""
    return range_coder.Decoder(payload, tables).decode(
        _factorized_indexes(shape)).reshape(shape)


def _as_int32(array) -> np.ndarray:
    """An integer array as int32, saturated (fixed-point y_hat is int64 on the host; the
    integer networks clip it to their much narrower input range anyway)."""
    array = np.asarray(array)
    if array.dtype == np.int32:
        return array
    return np.clip(array, -(2**31 - 1), 2**31 - 1).astype(np.int32)


def _crc32(symbols: np.ndarray) -> int:
    """CRC-32 of symbols as int32 little-endian, in their (coding) order."""
    return zlib.crc32(np.asarray(symbols).astype("<i4").tobytes())
