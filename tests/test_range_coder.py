"""Range coding with integer tables: exact round trips, escapes, streaming and clear errors."""

import numpy as np
import pytest

from jdc_jax.entropy.gaussian import SCALE_TABLE, build_gaussian_tables
from jdc_jax.entropy.range_coder import Decoder, Encoder, decode, encode
from jdc_jax.entropy.tables import CodingTables, quantize_pmf

INT32 = np.iinfo(np.int32)


@pytest.fixture(scope="module")
def gaussian_tables():
    return build_gaussian_tables()


def _gaussian_chunk(rng, size):
    indexes = rng.integers(0, len(SCALE_TABLE), size).astype(np.int32)
    symbols = np.round(SCALE_TABLE[indexes] * rng.standard_normal(size)).astype(np.int32)
    return symbols, indexes


def test_chunks_decode_exactly_in_encode_order(gaussian_tables):
    rng = np.random.default_rng(0)
    chunks = [_gaussian_chunk(rng, size) for size in rng.integers(0, 300, 60)]
    encoder = Encoder(gaussian_tables)
    for symbols, indexes in chunks:
        encoder.encode(symbols, indexes)
    decoder = Decoder(encoder.finish(), gaussian_tables)
    for symbols, indexes in chunks:
        decoded = decoder.decode(indexes)
        assert decoded.dtype == np.int32
        np.testing.assert_array_equal(decoded, symbols)


def test_out_of_range_symbols_round_trip_through_the_escape_code(gaussian_tables):
    rng = np.random.default_rng(1)
    symbols, indexes = _gaussian_chunk(rng, 400)
    far = np.array([10 ** 6, -10 ** 6, INT32.max, INT32.min, INT32.max - 1, INT32.min + 1])
    # The first values outside each table's range, on both sides, and the last inside it.
    edges = [0, 10, 63]
    first = gaussian_tables.offsets[edges].astype(np.int64)
    last = first + gaussian_tables.lengths[edges] - 2
    special = np.concatenate([far, first - 1, last + 1, first, last])
    symbols[:special.size] = special
    indexes[far.size:special.size] = np.tile(edges, 4)
    np.testing.assert_array_equal(decode(encode(symbols, indexes, gaussian_tables), indexes,
                                         gaussian_tables), symbols)


def test_escapes_round_trip_for_tables_at_the_ends_of_int32():
    row = quantize_pmf([0.25, 0.5, 0.25], 1e-3)
    tables = CodingTables.from_rows([row, row], [INT32.min, INT32.max - 2])
    symbols = np.array([INT32.min, INT32.max, INT32.min + 2, INT32.min + 3, 0,
                        INT32.max, INT32.min, INT32.max - 2, INT32.max - 3, -1], dtype=np.int32)
    indexes = np.repeat([0, 1], 5)
    np.testing.assert_array_equal(decode(encode(symbols, indexes, tables), indexes, tables),
                                  symbols)


def test_one_shot_helpers_keep_the_array_shape(gaussian_tables):
    rng = np.random.default_rng(2)
    symbols, indexes = _gaussian_chunk(rng, 96)
    symbols, indexes = symbols.reshape(4, 4, 6), indexes.reshape(4, 4, 6)
    decoded = decode(encode(symbols, indexes, gaussian_tables), indexes, gaussian_tables)
    assert decoded.shape == (4, 4, 6)
    np.testing.assert_array_equal(decoded, symbols)


def test_empty_message_round_trips(gaussian_tables):
    empty = np.zeros(0, np.int32)
    data = encode(empty, empty, gaussian_tables)
    assert decode(data, empty, gaussian_tables).shape == (0,)


def test_probable_symbols_cost_their_information_content(gaussian_tables):
    # Table 0 (scale 0.11) gives symbol 0 probability 65533 / 65536: 10**5 zeros fit in a few words.
    zeros = np.zeros(10 ** 5, np.int32)
    assert len(encode(zeros, zeros, gaussian_tables)) <= 16


def test_missing_tables_raise_a_clear_error():
    with pytest.raises(ValueError, match="not built"):
        Encoder(None)
    with pytest.raises(ValueError, match="not built"):
        decode(b"", np.zeros(0, np.int32), None)


@pytest.mark.parametrize("symbols, indexes, message", [
    (np.zeros(3, np.int32), np.zeros(2, np.int32), "2 indexes for 3 symbols"),
    (np.zeros(2, np.int32), np.array([0, 64]), r"\[0, 64\)"),
    (np.zeros(2, np.int32), np.array([-1, 0]), r"\[0, 64\)"),
    (np.zeros(2, np.float32), np.zeros(2, np.int32), "symbols must be integers"),
    (np.zeros(2, np.int32), np.zeros(2, np.float64), "indexes must be integers"),
    (np.array([0, 2 ** 31]), np.zeros(2, np.int32), "fit in int32"),
    (np.zeros((2, 2), np.int32), np.zeros((2, 2), np.int32), "1-D"),
])
def test_invalid_chunks_raise_value_error(gaussian_tables, symbols, indexes, message):
    with pytest.raises(ValueError, match=message):
        Encoder(gaussian_tables).encode(symbols, indexes)


def test_int64_symbols_inside_int32_are_accepted(gaussian_tables):
    symbols = np.array([3, -2, 2 ** 31 - 1], dtype=np.int64)
    indexes = np.array([40, 40, 5])
    np.testing.assert_array_equal(decode(encode(symbols, indexes, gaussian_tables), indexes,
                                         gaussian_tables), symbols)


def test_finished_encoder_refuses_more_chunks(gaussian_tables):
    encoder = Encoder(gaussian_tables)
    encoder.finish()
    with pytest.raises(RuntimeError, match="finished"):
        encoder.encode(np.zeros(1, np.int32), np.zeros(1, np.int32))


def test_data_that_is_not_whole_words_is_rejected(gaussian_tables):
    with pytest.raises(ValueError, match="32-bit words"):
        Decoder(b"\x00\x01\x02", gaussian_tables)


def test_garbage_bytes_raise_value_error_or_decode_int32_symbols(gaussian_tables):
    rng = np.random.default_rng(3)
    outcomes = {"error": 0, "symbols": 0}
    for trial in range(40):
        data = rng.integers(0, 256, 4 * int(rng.integers(0, 64)), dtype=np.uint8).tobytes()
        decoder = Decoder(data, gaussian_tables)
        try:
            for _ in range(20):
                indexes = rng.integers(0, 64, 50)
                assert decoder.decode(indexes).dtype == np.int32
            outcomes["symbols"] += 1
        except ValueError as error:
            assert "corrupt" in str(error)
            outcomes["error"] += 1
    # Both outcomes occur: some garbage is detectably invalid, the rest decodes to symbols.
    assert outcomes["error"] >= 1 and outcomes["symbols"] >= 1
    assert outcomes["error"] + outcomes["symbols"] == 40
