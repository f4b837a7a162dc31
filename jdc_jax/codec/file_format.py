"""The ``.jdc`` container: one scalable file for the denoised and the noisy product.

A ``.jdc`` file holds a header and up to three entropy-coded chunks, in this order:

    header | side (z) | base | enhancement

The side and base chunks alone decode the denoised image (JICD, Ranjbar Alvar et al. 2022: the
hyperprior "is considered to be a part of the base layer"); adding the enhancement chunk decodes
the faithful noisy original. The enhancement chunk is last, so cutting a file right after the
base chunk leaves a valid, smaller base-only file (`truncate_to_base`). Single-layer models
(hyperprior, Testolina et al. 2021, Cheng2020, JDC) write their main latent as the base chunk.

This module only frames bytes: the caller supplies the payloads, the model identifier (sha256
of the exact coding tables and weights) and a CRC-32 of the symbols each chunk decodes to; the
format stores, checks and returns them. It imports no numerical library.

The byte layout, the chunk walk, the header limits and the error-detection argument are specified
in docs/file_format.md (the one description of the format); this module implements it. In
short: a header (magic, version, model kind, context model, padding mode, layers written, model
identifier, image and padded sizes, the serial scan order, the entropy-parameter path, the latent
list, a CRC-32), then per
chunk a tag, length,
symbols CRC and framing CRC around the payload and its CRC. The limits (MAX_*) bound every
allocation a hostile header could ask for, and every single-byte error fails a check.

Versions. This module writes version 2 and reads versions 1 and 2. Version 2 adds two bytes to
the fixed header: the scan order of a serial context ("raster" or "wavefront",
`jdc_jax.codec.scan_order`) and the entropy-parameter path ("float" or "integer",
`jdc_jax.integer`); version 1 has neither, its serial files are in raster order and its
entropy parameters came from the float networks, so a version-1 file parses to a `Header` with
scan_order "raster" and entropy_path "float".

Errors are `JdcFormatError` (a ValueError) subclasses, each with a one-line message.
"""

from __future__ import annotations

import dataclasses
import operator
import re
import struct
import zlib

MAGIC = b"\x89JDC\r\n\x1a\n"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)

# Stored as the index into these tuples: append new names, never reorder.
MODEL_KINDS = ("jicd", "hyperprior", "testolina", "jdc", "codec", "cheng2020", "factorized",
               "scale_hyperprior")
CONTEXT_MODELS = ("none", "serial", "checkerboard")
PADDING_MODES = ("replicate",)  # edge replication; no writer uses another mode
# The order of a serial context's positions (`jdc_jax.codec.scan_order`); "raster" for the other
# context models, whose order their context model fixes.
SCAN_ORDERS = ("raster", "wavefront")
# How the decoder derives the coding-table indexes from z_hat and y_hat: the float networks
# (exact on the encoder's platform only) or the integer networks of `jdc_jax.integer` (exact
# everywhere). Files without a side latent (the factorized prior) have no entropy parameters:
# "float".
ENTROPY_PATHS = ("float", "integer")

LAYERS = ("side", "base", "enhancement")
CHUNK_TAGS = {"side": b"SIDE", "base": b"BASE", "enhancement": b"ENHA"}

MAX_IMAGE_SIDE = 2**16
MAX_IMAGE_PIXELS = 2**28
MAX_LATENTS = 8
MAX_LATENT_NAME_BYTES = 16
MAX_LATENT_STRIDE = 2**10
MAX_LATENT_CHANNELS = 2**12
MAX_LATENT_ELEMENTS = 2**30

ENHANCEMENT_PRESENT = "present"
ENHANCEMENT_TRUNCATED = "truncated off"
ENHANCEMENT_NOT_WRITTEN = "not written (base-only file)"

# Version 2: ..., number of latents, scan order, entropy path. Version 1 ends at the number of
# latents.
_FIXED_HEADER = struct.Struct("<8sHHBBBB32sIIIIBBB")
_FIXED_HEADER_V1 = struct.Struct("<8sHHBBBB32sIIIIB")
_VERSION_END = 10  # magic and version: all a reader may assume of any future version
_LATENT_DIMS = struct.Struct("<III")
_UINT32 = struct.Struct("<I")
_CHUNK_FRAMING = struct.Struct("<4sII")
_CHUNK_PAYLOAD_START = _CHUNK_FRAMING.size + _UINT32.size
_CHUNK_OVERHEAD = _CHUNK_PAYLOAD_START + _UINT32.size
_LAYER_BITS = {"side": 1, "base": 2, "enhancement": 4}
_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TAG_LAYERS = {tag: layer for layer, tag in CHUNK_TAGS.items()}


class JdcFormatError(ValueError):
    """A byte string is not a readable ``.jdc`` file (or a header cannot be written)."""


class NotAJdcFile(JdcFormatError):
    """The magic bytes are wrong: the data is not a ``.jdc`` file."""


class UnsupportedVersion(JdcFormatError):
    """The file's format version is not the one this reader reads."""


class InvalidHeader(JdcFormatError):
    """A header field is impossible: unknown code, absurd size, inconsistent latent shape."""


class CorruptChunk(JdcFormatError):
    """A stored CRC-32 (header, chunk framing, payload) does not match, or a chunk is misplaced."""


class TruncatedFile(JdcFormatError):
    """The data ends inside the header or a chunk, or before the side or base chunk."""


class WrongModel(JdcFormatError):
    """The file was written with another model than the one given to decode it."""


@dataclasses.dataclass(frozen=True)
class Header:
    """Everything a decoder needs besides the chunk payloads.

    Attributes:
      model_kind: one of MODEL_KINDS.
      model_id: 32-byte sha256 of the exact coding tables and weights (see `check_model_id`).
      height, width: the real image size in pixels; bits per pixel divide by height * width.
      padded_height, padded_width: the size the model codes, in pixels.
      padding_mode: one of PADDING_MODES, how the encoder filled the padding.
      latent_shapes: ((name, (height, width, channels)), ...), in the model's order; lists are
        accepted and stored as tuples.
      context_model: one of CONTEXT_MODELS.
      side_written: whether the encoder wrote a side (z) chunk.
      enhancement_written: whether the encoder wrote an enhancement chunk (it may since have been
        cut off; `ParsedFile.has_enhancement` says whether it is there).
      scan_order: one of SCAN_ORDERS, the order of a serial context's positions; "raster" for
        the other context models and in every version-1 file.
      entropy_path: one of ENTROPY_PATHS, how the coding-table indexes were derived: "float"
        (and in every version-1 file) or "integer" (`jdc_jax.integer`; needs a side latent).

    Raises InvalidHeader when a field breaks the checks in the module docstring.
    """

    model_kind: str
    model_id: bytes
    height: int
    width: int
    padded_height: int
    padded_width: int
    padding_mode: str
    latent_shapes: tuple[tuple[str, tuple[int, int, int]], ...]
    context_model: str
    side_written: bool
    enhancement_written: bool
    scan_order: str = "raster"
    entropy_path: str = "float"

    def __post_init__(self):
        _require_choice("model kind", self.model_kind, MODEL_KINDS)
        _require_choice("context model", self.context_model, CONTEXT_MODELS)
        _require_choice("padding mode", self.padding_mode, PADDING_MODES)
        _require_choice("scan order", self.scan_order, SCAN_ORDERS)
        if self.scan_order != "raster" and self.context_model != "serial":
            raise InvalidHeader(f"scan order {self.scan_order!r} needs the serial context model; "
                                f"a {self.context_model!r} context is coded in its own order")
        _require_choice("entropy path", self.entropy_path, ENTROPY_PATHS)
        if not isinstance(self.model_id, bytes) or len(self.model_id) != 32:
            raise InvalidHeader(
                f"model_id must be 32 bytes (a sha256 digest), got {self.model_id!r}")
        for field in ("side_written", "enhancement_written"):
            if not isinstance(getattr(self, field), bool):
                raise InvalidHeader(f"{field} must be a bool, got {getattr(self, field)!r}")
        for field in ("height", "width", "padded_height", "padded_width"):
            object.__setattr__(self, field, _as_int(field, getattr(self, field)))
        for side in ("height", "width"):
            size = getattr(self, side)
            if not 1 <= size <= MAX_IMAGE_SIDE:
                raise InvalidHeader(f"image {side} {size} is outside [1, {MAX_IMAGE_SIDE}]")
        if self.entropy_path != "float" and not self.side_written:
            raise InvalidHeader(f"entropy path {self.entropy_path!r} needs a side latent; a file "
                                f"without one has no entropy parameters")
        if self.height * self.width > MAX_IMAGE_PIXELS:
            raise InvalidHeader(f"image {self.height}x{self.width} has {self.height * self.width} "
                                f"pixels, more than the maximum {MAX_IMAGE_PIXELS}")
        if self.padded_height < self.height or self.padded_width < self.width:
            raise InvalidHeader(f"padded size {self.padded_height}x{self.padded_width} is smaller "
                                f"than the image {self.height}x{self.width}")
        object.__setattr__(self, "latent_shapes", self._checked_latent_shapes())
        coarsest_stride = max(self._stride(name, shape) for name, shape in self.latent_shapes)
        if (self.padded_height - self.height >= coarsest_stride
                or self.padded_width - self.width >= coarsest_stride):
            raise InvalidHeader(
                f"padded size {self.padded_height}x{self.padded_width} is not the smallest "
                f"multiple of the coarsest latent stride {coarsest_stride} covering the image "
                f"{self.height}x{self.width}")

    def _checked_latent_shapes(self) -> tuple[tuple[str, tuple[int, int, int]], ...]:
        latents = tuple(self.latent_shapes)
        if not 1 <= len(latents) <= MAX_LATENTS:
            raise InvalidHeader(f"{len(latents)} latents; a header holds 1 to {MAX_LATENTS}")
        checked = []
        for entry in latents:
            if not isinstance(entry, (tuple, list)) or len(entry) != 2:
                raise InvalidHeader(f"latent entry {entry!r} is not (name, shape)")
            name, shape = entry
            if (not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name)
                    or len(name) > MAX_LATENT_NAME_BYTES):
                raise InvalidHeader(f"latent name {name!r} is not an ASCII identifier of 1 to "
                                    f"{MAX_LATENT_NAME_BYTES} characters")
            if not isinstance(shape, (tuple, list)) or len(shape) != 3:
                raise InvalidHeader(
                    f"latent {name!r} shape {shape!r} is not (height, width, channels)")
            shape = tuple(_as_int(f"latent {name!r} dimension", size) for size in shape)
            if min(shape) < 1:
                raise InvalidHeader(f"latent {name!r} shape {shape} has a dimension below 1")
            if shape[2] > MAX_LATENT_CHANNELS:
                raise InvalidHeader(f"latent {name!r} has {shape[2]} channels, more than the "
                                    f"maximum {MAX_LATENT_CHANNELS}")
            if shape[0] * shape[1] * shape[2] > MAX_LATENT_ELEMENTS:
                raise InvalidHeader(f"latent {name!r} shape {shape} has more than "
                                    f"{MAX_LATENT_ELEMENTS} elements")
            checked.append((name, shape))
        names = [name for name, _ in checked]
        if len(set(names)) != len(names):
            raise InvalidHeader(f"latent names {names} are not unique")
        return tuple(checked)

    def _stride(self, name: str, shape: tuple[int, int, int]) -> int:
        """The power-of-two factor by which latent `name` downsamples the padded image."""
        latent_height, latent_width, _ = shape
        stride = self.padded_height // latent_height
        if (latent_height * stride != self.padded_height
                or latent_width * stride != self.padded_width
                or stride & (stride - 1) or stride > MAX_LATENT_STRIDE):
            raise InvalidHeader(
                f"latent {name!r} spatial size {latent_height}x{latent_width} is not the padded "
                f"image {self.padded_height}x{self.padded_width} divided by one power-of-two "
                f"stride <= {MAX_LATENT_STRIDE}")
        return stride

    @property
    def layers_written(self) -> tuple[str, ...]:
        """The chunks the encoder wrote, in file order."""
        return tuple(layer for layer in LAYERS
                     if (layer != "side" or self.side_written)
                     and (layer != "enhancement" or self.enhancement_written))


@dataclasses.dataclass(frozen=True)
class ParsedFile:
    """A parsed ``.jdc`` file.

    Attributes:
      header: the decoded `Header`.
      chunks: payload bytes of the chunks present, by layer name ("side", "base", "enhancement").
      symbols_crcs: the stored symbols CRC of each chunk present, by layer name.
      spans: (offset, size) in bytes of each part present: "header" and the whole chunks,
        framing included; the sizes add up to the file size.
      format_version: the version the file was written in (one of READABLE_VERSIONS).
    """

    header: Header
    chunks: dict[str, bytes]
    symbols_crcs: dict[str, int]
    spans: dict[str, tuple[int, int]]
    format_version: int = FORMAT_VERSION

    @property
    def has_enhancement(self) -> bool:
        """Whether the enhancement chunk is in the data (the noisy product is decodable)."""
        return "enhancement" in self.chunks

    @property
    def enhancement_status(self) -> str:
        """ENHANCEMENT_PRESENT, ENHANCEMENT_TRUNCATED or ENHANCEMENT_NOT_WRITTEN."""
        if self.has_enhancement:
            return ENHANCEMENT_PRESENT
        if self.header.enhancement_written:
            return ENHANCEMENT_TRUNCATED
        return ENHANCEMENT_NOT_WRITTEN


def write_file(header: Header, chunks: dict[str, bytes], symbols_crcs: dict[str, int]) -> bytes:
    """Serializes a header and the payloads of the layers it declares written.

    Args:
      header: the file's header.
      chunks: payload bytes by layer name; exactly `header.layers_written`.
      symbols_crcs: uint32 CRC of each chunk's decoded symbols, same keys as `chunks`.

    Returns the whole file as bytes. Raises ValueError when the chunks do not match the header.
    """
    if not isinstance(header, Header):
        raise TypeError(f"header must be a Header, got {type(header).__name__}")
    layers = header.layers_written
    for what, given in (("chunks", chunks), ("symbols_crcs", symbols_crcs)):
        if set(given) != set(layers):
            raise ValueError(f"{what} has layers {sorted(given)} but the header declares "
                             f"{list(layers)} written")
    parts = [_encode_header(header)]
    for layer in layers:
        payload, symbols_crc = chunks[layer], symbols_crcs[layer]
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"{layer} payload must be bytes, got {type(payload).__name__}")
        payload = bytes(payload)
        if len(payload) >= 2**32:
            raise ValueError(
                f"{layer} payload of {len(payload)} bytes does not fit a uint32 length")
        if (isinstance(symbols_crc, bool) or not isinstance(symbols_crc, int)
                or not 0 <= symbols_crc < 2**32):
            raise ValueError(
                f"{layer} symbols CRC must be an int in [0, 2**32), got {symbols_crc!r}")
        framing = _CHUNK_FRAMING.pack(CHUNK_TAGS[layer], len(payload), symbols_crc)
        parts += [framing, _UINT32.pack(zlib.crc32(framing)),
                  payload, _UINT32.pack(zlib.crc32(payload))]
    return b"".join(parts)


def parse_file(data: bytes) -> ParsedFile:
    """Parses and checks a whole ``.jdc`` file (bytes, bytearray or memoryview).

    Accepts a file that ends right after its base chunk (`has_enhancement` False) and refuses
    any other truncation, including one inside the enhancement chunk ("enhancement chunk
    truncated: N of M bytes"). Raises a `JdcFormatError` subclass naming the problem.
    """
    data = _as_bytes(data)
    header, header_size, version = _parse_header(data)
    chunks, symbols_crcs, spans = {}, {}, {"header": (0, header_size)}
    offset = header_size
    for layer in header.layers_written:
        if offset == len(data):
            break
        chunks[layer], symbols_crcs[layer], size = _parse_chunk(data, offset, layer)
        spans[layer] = (offset, size)
        offset += size
    if offset != len(data):
        last = list(spans)[-1]
        raise CorruptChunk(f"{len(data) - offset} unexpected bytes at offset {offset}, after "
                           f"the {last}{'' if last == 'header' else ' chunk'}, where the header "
                           f"declares no further chunk")
    for layer in ("side", "base"):
        if layer in header.layers_written and layer not in chunks:
            raise TruncatedFile(f"file ends at byte {len(data)}, before the {layer} chunk")
    return ParsedFile(header, chunks, symbols_crcs, spans, version)


def truncate_to_base(data: bytes) -> bytes:
    """A valid base-only file: `data` cut right after its base chunk.

    `data` must parse as a whole (a damaged enhancement chunk is refused, not silently dropped);
    a file that is already base-only comes back unchanged.
    """
    offset, size = parse_file(data).spans["base"]
    return bytes(data[: offset + size])


def check_model_id(header: Header, expected: bytes) -> None:
    """Raises WrongModel unless the file was written with the model whose id is `expected`.

    The message shows the first 8 hex digits of both ids (more if those agree).
    """
    if not isinstance(expected, bytes) or len(expected) != 32:
        raise ValueError(f"expected model id must be 32 bytes (a sha256 digest), got {expected!r}")
    if header.model_id == expected:
        return
    file_hex, expected_hex = header.model_id.hex(), expected.hex()
    first_difference = next(i for i, (a, b) in enumerate(zip(file_hex, expected_hex)) if a != b)
    digits = max(8, first_difference + 1)
    raise WrongModel(f"file was written with model {file_hex[:digits]}, "
                     f"this checkpoint is {expected_hex[:digits]}")


def positive_integer(value, requirement: str) -> int:
    """`value` as an int when it is an integer >= 1 (not a bool); else ValueError
    "{requirement}, got {value!r}"."""
    try:
        number = operator.index(value)
    except TypeError:
        number = 0
    if isinstance(value, bool) or number < 1:
        raise ValueError(f"{requirement}, got {value!r}")
    return number


def describe(parsed: ParsedFile, num_pixels: int | None = None) -> dict:
    """Sizes of each stream of a parsed file, in bytes and bits per pixel.

    Args:
      parsed: a `ParsedFile`.
      num_pixels: the pixel count to divide by; default the real image size height * width
        (never the padded size).

    Returns a JSON-serializable dict:
      "num_pixels": the divisor;
      "enhancement_layer": `parsed.enhancement_status`;
      "bytes" and "bits_per_pixel": each with keys "header", "side", "base", "enhancement"
        (the whole chunk, framing included; 0 when absent), "base_only" (header + side + base:
        what the denoised product costs) and "total" (the file size). bits = 8 * bytes.
    """
    if num_pixels is None:
        pixels = parsed.header.height * parsed.header.width
    else:
        pixels = positive_integer(num_pixels, "num_pixels must be a positive integer")
    sizes = {part: parsed.spans.get(part, (0, 0))[1] for part in ("header", *LAYERS)}
    sizes["base_only"] = sizes["header"] + sizes["side"] + sizes["base"]
    sizes["total"] = sizes["base_only"] + sizes["enhancement"]
    return {
        "num_pixels": pixels,
        "enhancement_layer": parsed.enhancement_status,
        "bytes": sizes,
        "bits_per_pixel": {part: 8 * size / pixels for part, size in sizes.items()},
    }


def _encode_header(header: Header) -> bytes:
    latents = b"".join(
        bytes([len(name)]) + name.encode("ascii") + _LATENT_DIMS.pack(*shape)
        for name, shape in header.latent_shapes)
    header_size = _FIXED_HEADER.size + len(latents) + _UINT32.size
    layer_bits = sum(_LAYER_BITS[layer] for layer in header.layers_written)
    body = _FIXED_HEADER.pack(
        MAGIC, FORMAT_VERSION, header_size, MODEL_KINDS.index(header.model_kind),
        CONTEXT_MODELS.index(header.context_model), PADDING_MODES.index(header.padding_mode),
        layer_bits, header.model_id, header.height, header.width, header.padded_height,
        header.padded_width, len(header.latent_shapes),
        SCAN_ORDERS.index(header.scan_order),
        ENTROPY_PATHS.index(header.entropy_path)) + latents
    return body + _UINT32.pack(zlib.crc32(body))


def _parse_header(data: bytes) -> tuple[Header, int, int]:
    """Decodes the header at the start of `data`; returns it, its size in bytes and the file's
    format version."""
    magic = data[: len(MAGIC)]
    if magic != MAGIC[: len(magic)]:
        raise NotAJdcFile(f"not a .jdc file: starts with {magic!r}, not {MAGIC!r}")
    if len(data) < _VERSION_END:
        raise TruncatedFile(f"header truncated: {len(data)} of at least {_VERSION_END} bytes")
    (version,) = struct.unpack_from("<H", data, len(MAGIC))
    if version not in READABLE_VERSIONS:
        readable = " and ".join(map(str, READABLE_VERSIONS))
        raise UnsupportedVersion(f"file format version {version} is not supported; this reader "
                                 f"reads versions {readable}")
    fixed = _FIXED_HEADER if version == 2 else _FIXED_HEADER_V1
    if len(data) < fixed.size:
        raise TruncatedFile(f"header truncated: {len(data)} of at least {fixed.size} bytes")
    (_, _, header_size, kind_code, context_code, padding_code, layer_bits, model_id,
     height, width, padded_height, padded_width, num_latents,
     *version_2_codes) = fixed.unpack_from(data)
    if header_size > len(data):
        raise TruncatedFile(f"header truncated: {len(data)} of {header_size} bytes")
    raw_latents, crc_offset = _frame_latent_list(data, header_size, num_latents, fixed.size)
    (stored_crc,) = _UINT32.unpack_from(data, crc_offset)
    computed_crc = zlib.crc32(data[:crc_offset])
    if stored_crc != computed_crc:
        raise CorruptChunk(f"header is corrupt: CRC-32 0x{stored_crc:08x} stored, "
                           f"0x{computed_crc:08x} computed")
    known_bits = sum(_LAYER_BITS.values())
    if layer_bits & ~known_bits or not layer_bits & _LAYER_BITS["base"]:
        raise InvalidHeader(f"layer flags 0x{layer_bits:02x} are invalid: the base bit must be "
                            f"set and only bits 0x{known_bits:02x} may be")
    latent_shapes = []
    for raw_name, shape in raw_latents:
        try:
            name = raw_name.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidHeader(f"latent name {raw_name!r} is not ASCII") from None
        latent_shapes.append((name, shape))
    header = Header(
        model_kind=_code_name("model kind", kind_code, MODEL_KINDS),
        model_id=model_id,
        height=height,
        width=width,
        padded_height=padded_height,
        padded_width=padded_width,
        padding_mode=_code_name("padding mode", padding_code, PADDING_MODES),
        latent_shapes=tuple(latent_shapes),
        context_model=_code_name("context model", context_code, CONTEXT_MODELS),
        side_written=bool(layer_bits & _LAYER_BITS["side"]),
        enhancement_written=bool(layer_bits & _LAYER_BITS["enhancement"]),
        scan_order=(_code_name("scan order", version_2_codes[0], SCAN_ORDERS)
                    if version_2_codes else "raster"),
        entropy_path=(_code_name("entropy path", version_2_codes[1], ENTROPY_PATHS)
                      if version_2_codes else "float"))
    return header, header_size, version


def _frame_latent_list(data: bytes, header_size: int, num_latents: int, fixed_size: int):
    """Reads the latent entries, from `fixed_size` (the end of the version's fixed header part)
    through their length bytes alone, before the header CRC.

    The list must end exactly where the header size field puts the CRC; this is what makes a
    damaged size field detectable without trusting the CRC it locates.
    Returns ([(raw_name, (height, width, channels)), ...], offset of the header CRC).
    """
    crc_offset = header_size - _UINT32.size
    if crc_offset < fixed_size:
        raise InvalidHeader(f"header size {header_size} is below the minimum "
                            f"{fixed_size + _UINT32.size} bytes")
    latents, offset = [], fixed_size
    for _ in range(num_latents):
        entry_end = offset + 1 + _LATENT_DIMS.size
        if entry_end <= crc_offset:
            entry_end += data[offset]  # the name length byte
        if entry_end > crc_offset:
            raise InvalidHeader(f"the {num_latents}-entry latent list runs past the "
                                f"{header_size}-byte header")
        dims_start = entry_end - _LATENT_DIMS.size
        latents.append((data[offset + 1: dims_start], _LATENT_DIMS.unpack_from(data, dims_start)))
        offset = entry_end
    if offset != crc_offset:
        raise InvalidHeader(f"header size field says {header_size} bytes but its latent list "
                            f"makes it {offset + _UINT32.size}")
    return latents, crc_offset


def _parse_chunk(data: bytes, offset: int, layer: str) -> tuple[bytes, int, int]:
    """Checks the chunk of `layer` at `offset`; returns (payload, symbols CRC, chunk size)."""
    available = len(data) - offset
    if available < _CHUNK_OVERHEAD:
        raise TruncatedFile(f"{layer} chunk truncated: {available} of at least "
                            f"{_CHUNK_OVERHEAD} bytes")
    tag, payload_length, symbols_crc = _CHUNK_FRAMING.unpack_from(data, offset)
    if tag != CHUNK_TAGS[layer]:
        found = _TAG_LAYERS.get(tag)
        what = f"the {found} chunk" if found else f"unknown chunk tag {tag!r}"
        raise CorruptChunk(f"{what} at offset {offset} where the {layer} chunk "
                           f"({CHUNK_TAGS[layer]!r}) belongs")
    (stored_crc,) = _UINT32.unpack_from(data, offset + _CHUNK_FRAMING.size)
    computed_crc = zlib.crc32(data[offset: offset + _CHUNK_FRAMING.size])
    if stored_crc != computed_crc:
        raise CorruptChunk(f"{layer} chunk framing is corrupt: CRC-32 0x{stored_crc:08x} "
                           f"stored, 0x{computed_crc:08x} computed")
    size = _CHUNK_OVERHEAD + payload_length
    if size > available:
        raise TruncatedFile(f"{layer} chunk truncated: {available} of {size} bytes")
    payload_start = offset + _CHUNK_PAYLOAD_START
    payload = data[payload_start: payload_start + payload_length]
    (stored_crc,) = _UINT32.unpack_from(data, payload_start + payload_length)
    computed_crc = zlib.crc32(payload)
    if stored_crc != computed_crc:
        raise CorruptChunk(f"{layer} chunk payload is corrupt: CRC-32 0x{stored_crc:08x} "
                           f"stored, 0x{computed_crc:08x} computed")
    return payload, symbols_crc, size


def _as_bytes(data) -> bytes:
    # bytes(n) of an int would allocate n zero bytes: only byte strings are accepted.
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    return bytes(data)


def _as_int(what: str, value) -> int:
    if isinstance(value, bool):
        raise InvalidHeader(f"{what} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise InvalidHeader(f"{what} must be an integer, got {value!r}") from None


def _require_choice(what: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InvalidHeader(f"{what} {value!r} is not one of {', '.join(choices)}")


def _code_name(what: str, code: int, names: tuple[str, ...]) -> str:
    if code >= len(names):
        raise InvalidHeader(f"{what} code {code} is unknown (known: 0 to {len(names) - 1})")
    return names[code]
