"""Tests for the .jdc container: round trips, base-only truncation and hostile input."""

import hashlib
import random
import struct
import zlib
from pathlib import Path

import pytest

from jdc_jax.codec import file_format
from jdc_jax.codec.file_format import (
    CorruptChunk, Header, InvalidHeader, JdcFormatError, NotAJdcFile, TruncatedFile,
    UnsupportedVersion, WrongModel)

# Offsets from the documented layout.
HEADER_SIZE_OFFSET = 10
HEIGHT_OFFSET = 48
SCAN_ORDER_OFFSET = 65
ENTROPY_PATH_OFFSET = 66
FIRST_LATENT_OFFSET = 67
CHUNK_FRAMING_BYTES = 20  # tag, length, symbols CRC, framing CRC, then the payload CRC
# Written by the version-1 writer (tests/fixtures/make_format_v1_fixture.py): make_header(
# context_model="serial") and make_chunks().
VERSION_1_FILE = Path(__file__).resolve().parent / "fixtures" / "format_v1_serial.jdc"


def make_header(**changes) -> Header:
    fields = dict(
        model_kind="jicd",
        model_id=hashlib.sha256(b"tables and weights").digest(),
        height=50,
        width=70,
        padded_height=64,
        padded_width=128,
        padding_mode="replicate",
        latent_shapes=(("z", (1, 2, 4)), ("base", (4, 8, 6)), ("enhancement", (4, 8, 5))),
        context_model="checkerboard",
        side_written=True,
        enhancement_written=True,
    )
    fields.update(changes)
    return Header(**fields)


def make_chunks(sizes=(7, 23, 11), seed=0) -> tuple[dict, dict]:
    rng = random.Random(seed)
    chunks = {layer: rng.randbytes(size) for layer, size in zip(file_format.LAYERS, sizes)}
    symbols_crcs = {layer: rng.getrandbits(32) for layer in chunks}
    return chunks, symbols_crcs


def make_file() -> bytes:
    return file_format.write_file(make_header(), *make_chunks())


def with_header_field(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    """`data` with one header field rewritten and the header CRC made valid again."""
    patched = bytearray(data)
    struct.pack_into(fmt, patched, offset, value)
    (header_size,) = struct.unpack_from("<H", patched, HEADER_SIZE_OFFSET)
    struct.pack_into("<I", patched, header_size - 4, zlib.crc32(patched[: header_size - 4]))
    return bytes(patched)


def test_round_trip_preserves_header_chunks_and_symbol_crcs_exactly():
    header = make_header(model_kind="testolina", context_model="serial", scan_order="wavefront")
    chunks, symbols_crcs = make_chunks(sizes=(5, 40, 17), seed=3)
    data = file_format.write_file(header, chunks, symbols_crcs)
    parsed = file_format.parse_file(data)
    assert parsed.header == header
    assert parsed.chunks == chunks
    assert parsed.symbols_crcs == symbols_crcs
    assert parsed.has_enhancement is True
    assert parsed.enhancement_status == file_format.ENHANCEMENT_PRESENT
    assert sum(size for _, size in parsed.spans.values()) == len(data)


def test_header_normalizes_lists_to_the_tuples_a_parse_returns():
    header = make_header(latent_shapes=[["z", [1, 2, 4]], ("y", (4, 8, 11))],
                         enhancement_written=False)
    chunks, symbols_crcs = make_chunks()
    del chunks["enhancement"], symbols_crcs["enhancement"]
    parsed = file_format.parse_file(file_format.write_file(header, chunks, symbols_crcs))
    assert parsed.header.latent_shapes == (("z", (1, 2, 4)), ("y", (4, 8, 11)))
    assert parsed.header == header


def test_base_only_file_without_side_chunk_reports_enhancement_not_written():
    header = make_header(side_written=False, enhancement_written=False,
                         latent_shapes=(("y", (4, 5, 3)),), padded_height=64, padded_width=80)
    data = file_format.write_file(header, {"base": b"\x01\x02\x03"}, {"base": 77})
    parsed = file_format.parse_file(data)
    assert parsed.chunks == {"base": b"\x01\x02\x03"}
    assert parsed.symbols_crcs == {"base": 77}
    assert parsed.enhancement_status == file_format.ENHANCEMENT_NOT_WRITTEN
    assert file_format.truncate_to_base(data) == data


def test_cutting_after_base_chunk_leaves_valid_base_only_file():
    data = make_file()
    full = file_format.parse_file(data)
    base_offset, base_size = full.spans["base"]
    cut = data[: base_offset + base_size]
    base_only = file_format.parse_file(cut)
    assert base_only.has_enhancement is False
    assert base_only.enhancement_status == file_format.ENHANCEMENT_TRUNCATED
    assert base_only.header == full.header
    assert base_only.chunks == {"side": full.chunks["side"], "base": full.chunks["base"]}
    assert base_only.symbols_crcs == {"side": full.symbols_crcs["side"],
                                      "base": full.symbols_crcs["base"]}
    assert file_format.truncate_to_base(data) == cut
    assert file_format.truncate_to_base(cut) == cut
    assert len(data) - len(cut) == CHUNK_FRAMING_BYTES + len(full.chunks["enhancement"])


def test_truncation_at_every_byte_parses_only_at_the_base_and_end_boundaries():
    data = make_file()
    spans = file_format.parse_file(data).spans
    base_end = sum(spans["base"])
    parsed_at = []
    for cut in range(len(data) + 1):
        try:
            file_format.parse_file(data[:cut])
        except TruncatedFile:
            continue
        parsed_at.append(cut)
    assert parsed_at == [base_end, len(data)]


def test_truncation_inside_enhancement_chunk_counts_bytes_present_and_needed():
    data = make_file()
    enhancement_offset, enhancement_size = file_format.parse_file(data).spans["enhancement"]
    with pytest.raises(TruncatedFile, match=f"^enhancement chunk truncated: 25 of "
                                            f"{enhancement_size} bytes$"):
        file_format.parse_file(data[: enhancement_offset + 25])


def test_truncation_between_side_and_base_is_refused():
    data = make_file()
    side_offset, side_size = file_format.parse_file(data).spans["side"]
    with pytest.raises(TruncatedFile, match="before the base chunk"):
        file_format.parse_file(data[: side_offset + side_size])


def test_every_single_byte_flip_is_detected():
    data = make_file()
    for position in range(len(data)):
        flipped = bytearray(data)
        flipped[position] ^= 0xFF
        try:
            file_format.parse_file(bytes(flipped))
        except JdcFormatError:
            continue
        pytest.fail(f"flipping byte {position} of {len(data)} went undetected")


def test_flips_in_magic_and_version_name_their_problem():
    data = make_file()
    for position in range(8):
        flipped = bytearray(data)
        flipped[position] ^= 0xFF
        with pytest.raises(NotAJdcFile):
            file_format.parse_file(bytes(flipped))
    for position in (8, 9):
        flipped = bytearray(data)
        flipped[position] ^= 0xFF
        with pytest.raises(UnsupportedVersion):
            file_format.parse_file(bytes(flipped))


def test_flipped_header_size_is_refused_by_the_latent_list_not_the_crc():
    data = make_file()
    for position in (HEADER_SIZE_OFFSET, HEADER_SIZE_OFFSET + 1):
        flipped = bytearray(data)
        flipped[position] ^= 0xFF
        with pytest.raises((InvalidHeader, TruncatedFile)):
            file_format.parse_file(bytes(flipped))


def test_wrong_magic_is_not_a_jdc_file():
    png_start = b"\x89PNG\r\n\x1a\n" + bytes(100)
    with pytest.raises(NotAJdcFile, match=r"^not a \.jdc file: starts with"):
        file_format.parse_file(png_start)


def test_unknown_version_names_the_versions_read():
    data = with_header_field(make_file(), 8, "<H", 3)
    with pytest.raises(UnsupportedVersion, match="^file format version 3 is not supported; "
                                                 "this reader reads versions 1 and 2$"):
        file_format.parse_file(data)


def test_writer_stores_the_scan_order_in_the_byte_after_the_latent_count():
    for order, code in (("raster", 0), ("wavefront", 1)):
        header = make_header(context_model="serial", scan_order=order)
        data = file_format.write_file(header, *make_chunks())
        assert struct.unpack_from("<H", data, 8) == (2,)
        assert data[SCAN_ORDER_OFFSET] == code
        assert data[FIRST_LATENT_OFFSET: FIRST_LATENT_OFFSET + 2] == b"\x01z"
        parsed = file_format.parse_file(data)
        assert parsed.header == header and parsed.format_version == 2


def test_version_1_file_parses_as_raster_order_with_its_header_and_chunks():
    data = VERSION_1_FILE.read_bytes()
    parsed = file_format.parse_file(data)
    assert parsed.format_version == 1
    assert parsed.header == make_header(context_model="serial", scan_order="raster")
    assert (parsed.chunks, parsed.symbols_crcs) == make_chunks()
    # Version 1 has no scan order and entropy path bytes: its latent list starts two bytes
    # earlier, and it parses to the float entropy path.
    assert parsed.spans["header"] == (0, 124)
    assert parsed.header.entropy_path == "float"
    rewritten = file_format.write_file(parsed.header, parsed.chunks, parsed.symbols_crcs)
    assert len(rewritten) == len(data) + 2
    assert file_format.parse_file(rewritten).header == parsed.header


def test_every_single_byte_flip_of_a_version_1_file_is_detected():
    data = VERSION_1_FILE.read_bytes()
    for position in range(len(data)):
        flipped = bytearray(data)
        flipped[position] ^= 0xFF
        with pytest.raises(JdcFormatError):
            file_format.parse_file(bytes(flipped))


def test_wavefront_order_is_refused_for_context_models_with_their_own_order():
    with pytest.raises(InvalidHeader, match="^scan order 'wavefront' needs the serial context "
                                            "model; a 'checkerboard' context is coded in its "
                                            "own order$"):
        make_header(context_model="checkerboard", scan_order="wavefront")
    with pytest.raises(InvalidHeader, match="^scan order 'zigzag' is not one of raster, "
                                            "wavefront$"):
        make_header(context_model="serial", scan_order="zigzag")


def test_unknown_scan_order_code_is_refused():
    data = file_format.write_file(make_header(context_model="serial"), *make_chunks())
    with pytest.raises(InvalidHeader, match="^scan order code 2 is unknown \\(known: 0 to 1\\)$"):
        file_format.parse_file(with_header_field(data, SCAN_ORDER_OFFSET, "<B", 2))


def test_writer_stores_the_entropy_path_in_the_byte_after_the_scan_order():
    for path, code in (("float", 0), ("integer", 1)):
        header = make_header(entropy_path=path)
        data = file_format.write_file(header, *make_chunks())
        assert data[ENTROPY_PATH_OFFSET] == code
        assert data[FIRST_LATENT_OFFSET: FIRST_LATENT_OFFSET + 2] == b"\x01z"
        assert file_format.parse_file(data).header == header
    assert make_header().entropy_path == "float"


def test_unknown_entropy_path_is_refused():
    with pytest.raises(InvalidHeader, match="^entropy path 'fixed' is not one of float, "
                                            "integer$"):
        make_header(entropy_path="fixed")
    with pytest.raises(InvalidHeader, match="^entropy path 'integer' needs a side latent"):
        make_header(entropy_path="integer", side_written=False,
                    latent_shapes=(("y", (4, 8, 11)),), enhancement_written=False)
    data = file_format.write_file(make_header(), *make_chunks())
    with pytest.raises(InvalidHeader, match="^entropy path code 2 is unknown \\(known: 0 to "
                                            "1\\)$"):
        file_format.parse_file(with_header_field(data, ENTROPY_PATH_OFFSET, "<B", 2))


def test_check_model_id_names_both_models():
    header = make_header(model_id=bytes.fromhex("0011223344") + bytes(27))
    file_format.check_model_id(header, header.model_id)
    with pytest.raises(WrongModel, match="^file was written with model 00112233, "
                                         "this checkpoint is ffeeddcc$"):
        file_format.check_model_id(header, bytes.fromhex("ffeeddcc") + bytes(28))


def test_check_model_id_shows_digits_up_to_the_first_difference():
    header = make_header(model_id=bytes(32))
    expected = bytes(5) + b"\x70" + bytes(26)
    with pytest.raises(WrongModel, match="^file was written with model 00000000000, "
                                         "this checkpoint is 00000000007$"):
        file_format.check_model_id(header, expected)


def test_absurd_image_height_is_refused_before_reading_chunks():
    data = with_header_field(make_file(), HEIGHT_OFFSET, "<I", 2**31)
    with pytest.raises(InvalidHeader, match="^image height 2147483648 is outside \\[1, 65536\\]$"):
        file_format.parse_file(data)


def test_pixel_count_above_the_cap_is_refused():
    with pytest.raises(InvalidHeader,
                       match="has 1073741824 pixels, more than the maximum 268435456"):
        make_header(height=2**15, width=2**15, padded_height=2**15, padded_width=2**15,
                    latent_shapes=(("y", (2**11, 2**11, 3)),))


def test_latent_dims_inconsistent_with_the_image_are_refused():
    # The base latent's height is stored after "z" (1 + 1 + 12 bytes) and its name (1 + 4).
    base_height_offset = FIRST_LATENT_OFFSET + 14 + 5
    data = with_header_field(make_file(), base_height_offset, "<I", 5)
    with pytest.raises(InvalidHeader, match="^latent 'base' spatial size 5x8 is not the padded "
                                            "image 64x128 divided by one power-of-two stride"):
        file_format.parse_file(data)


def test_padding_beyond_the_coarsest_stride_is_refused():
    with pytest.raises(InvalidHeader, match="not the smallest multiple of the coarsest latent "
                                            "stride 64"):
        make_header(padded_height=128, latent_shapes=(("z", (2, 2, 4)), ("base", (8, 8, 6))))


def test_chunk_length_beyond_the_file_is_refused_before_slicing():
    data = bytearray(make_file())
    base_offset, base_size = file_format.parse_file(bytes(data)).spans["base"]
    struct.pack_into("<I", data, base_offset + 4, 2**32 - 1)
    struct.pack_into("<I", data, base_offset + 12, zlib.crc32(data[base_offset: base_offset + 12]))
    available = len(data) - base_offset
    with pytest.raises(TruncatedFile, match=f"^base chunk truncated: {available} of "
                                            f"{2**32 - 1 + CHUNK_FRAMING_BYTES} bytes$"):
        file_format.parse_file(bytes(data))


def test_trailing_bytes_after_the_last_declared_chunk_are_refused():
    data = make_file() + b"\x00" * 3
    with pytest.raises(CorruptChunk, match="^3 unexpected bytes at offset .* after the "
                                           "enhancement chunk"):
        file_format.parse_file(data)


def test_enhancement_chunk_the_header_does_not_declare_is_refused():
    chunks, symbols_crcs = make_chunks()
    with_enhancement = file_format.write_file(make_header(), chunks, symbols_crcs)
    enhancement_offset, _ = file_format.parse_file(with_enhancement).spans["enhancement"]
    del chunks["enhancement"], symbols_crcs["enhancement"]
    base_only = file_format.write_file(make_header(enhancement_written=False), chunks, symbols_crcs)
    with pytest.raises(CorruptChunk, match="after the base chunk, where the header declares no "
                                           "further chunk"):
        file_format.parse_file(base_only + with_enhancement[enhancement_offset:])


def test_invalid_enum_value_names_the_known_values():
    with pytest.raises(InvalidHeader, match="^padding mode 'wrap' is not one of replicate$"):
        make_header(padding_mode="wrap")
    with pytest.raises(InvalidHeader, match="^context model 'raster' is not one of none, "
                                            "serial, checkerboard$"):
        make_header(context_model="raster")


def test_padding_mode_codes_no_writer_uses_are_refused():
    data = with_header_field(make_file(), 14, "<B", 1)  # once "reflect", never written
    with pytest.raises(InvalidHeader, match="padding mode"):
        file_format.parse_file(data)


def test_write_file_refuses_chunks_the_header_does_not_declare():
    chunks, symbols_crcs = make_chunks()
    with pytest.raises(ValueError, match="chunks has layers \\['base', 'enhancement', 'side'\\] "
                                         "but the header declares \\['side', 'base'\\] written"):
        file_format.write_file(make_header(enhancement_written=False), chunks, symbols_crcs)


def test_describe_reports_bytes_and_bits_per_pixel_per_stream():
    # 32 x 64 = 2048 real pixels (padded to 64 x 64); powers of two keep the bpp exact.
    header = make_header(height=32, width=64, padded_height=64, padded_width=64,
                         latent_shapes=(("z", (1, 1, 4)), ("base", (4, 4, 6)),
                                        ("enhancement", (4, 4, 5))))
    chunks, symbols_crcs = make_chunks(sizes=(12, 108, 236))
    data = file_format.write_file(header, chunks, symbols_crcs)
    report = file_format.describe(file_format.parse_file(data))
    # Header: 67 fixed + (1 + 1 + 12) z + (1 + 4 + 12) base + (1 + 11 + 12) enhancement + 4 CRC.
    assert report["bytes"] == {"header": 126, "side": 32, "base": 128, "enhancement": 256,
                               "base_only": 286, "total": 542}
    assert report["bits_per_pixel"] == {"header": 0.4921875, "side": 0.125, "base": 0.5,
                                        "enhancement": 1.0, "base_only": 1.1171875,
                                        "total": 2.1171875}
    assert report["num_pixels"] == 2048
    assert report["enhancement_layer"] == file_format.ENHANCEMENT_PRESENT
    assert report["bytes"]["total"] == len(data)

    truncated = file_format.describe(file_format.parse_file(file_format.truncate_to_base(data)),
                                     num_pixels=4096)
    assert truncated["bytes"]["enhancement"] == 0
    assert truncated["bits_per_pixel"]["total"] == 286 * 8 / 4096 == 0.55859375
    assert truncated["enhancement_layer"] == "truncated off"


def test_random_multi_byte_damage_raises_only_format_errors():
    data = make_file()
    rng = random.Random(7)
    accepted = []
    for _ in range(3000):
        damaged = bytearray(data)
        start = rng.randrange(len(data))
        action = rng.randrange(3)
        if action == 0:
            for position in rng.sample(range(len(data)), rng.randrange(2, 6)):
                damaged[position] ^= rng.randrange(1, 256)
        elif action == 1:
            del damaged[start: start + rng.randrange(1, 30)]
        else:
            damaged[start:start] = rng.randbytes(rng.randrange(1, 30))
        try:
            file_format.parse_file(bytes(damaged))
        except JdcFormatError:
            continue
        accepted.append(start)
    # Cutting off the whole 31-byte enhancement chunk is the only damage that leaves a valid
    # file, and no deletion here is that long.
    assert accepted == []
