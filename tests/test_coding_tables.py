"""Integer pmf quantization and the CodingTables container (bytes, files, digest)."""

import os

import numpy as np
import pytest

from jdc_jax.entropy.tables import CodingTables, quantize_pmf


def _example_tables(with_medians=True):
    rows = [quantize_pmf([0.2, 0.5, 0.3], 1e-3), quantize_pmf([0.9, 0.1], 1e-6),
            quantize_pmf(np.full(7, 1 / 7), 0.0)]
    medians = np.array([0.25, -1.5, 3.0], np.float32) if with_medians else None
    return CodingTables.from_rows(rows, [-1, 0, -3], medians=medians)


def test_quantized_pmfs_sum_to_exactly_two_to_the_precision_with_every_bin_nonzero():
    rng = np.random.default_rng(0)
    for size in (1, 2, 17, 3000):
        pmf = rng.dirichlet(np.full(size, 0.3))
        pmf[rng.integers(0, size, size // 3)] = 0.0  # zeros must still get a count
        counts = quantize_pmf(pmf, 1e-9, 16)
        assert counts.dtype == np.int32 and counts.size == size + 1
        assert int(counts.sum()) == 2 ** 16
        assert counts.min() >= 1


def test_quantized_pmf_is_within_a_few_counts_of_the_probabilities():
    pmf = np.array([0.05, 0.2, 0.4, 0.3, 0.04])
    counts = quantize_pmf(pmf, 0.01, 16)
    # Each bin: one guaranteed count, the rounded-down share and at most one leftover count.
    np.testing.assert_array_less(np.abs(counts / 2 ** 16 - np.append(pmf, 0.01)), 3 / 2 ** 16)


def test_leftover_counts_go_to_the_largest_fraction_and_ties_to_the_lower_bin():
    # 2**16 - 3 = 65533 free counts split 32766.5 / 32766.5 / 0: one count is left over.
    np.testing.assert_array_equal(quantize_pmf([0.5, 0.5], 0.0, 16), [32768, 32767, 1])


def test_tail_mass_goes_to_the_last_escape_bin():
    counts = quantize_pmf([0.5, 0.25], 0.25, 16)
    assert abs(int(counts[-1]) - 2 ** 14) <= 2


@pytest.mark.parametrize("pmf, tail, message", [
    ([0.5, -0.1], 0.0, "non-negative"),
    ([0.5, np.nan], 0.0, "finite"),
    ([0.0, 0.0], 0.0, "zero total mass"),
    ([], 0.1, "non-empty"),
    (np.full(300, 1 / 300), 0.0, "do not fit"),
    ([1.0], -1e-3, "tail_mass"),
])
def test_quantize_pmf_rejects_bad_input(pmf, tail, message):
    with pytest.raises(ValueError, match=message):
        quantize_pmf(pmf, tail, 8)


def test_tables_round_trip_through_bytes_with_and_without_medians():
    for with_medians in (True, False):
        tables = _example_tables(with_medians)
        restored = CodingTables.from_bytes(tables.to_bytes())
        assert restored == tables
        assert restored.digest() == tables.digest()
        np.testing.assert_array_equal(restored.pmfs, tables.pmfs)
        assert (restored.medians is None) == (not with_medians)


def test_tables_round_trip_through_a_file_written_atomically(tmp_path):
    tables = _example_tables()
    path = tmp_path / "side.tables"
    path.write_bytes(b"old contents")
    tables.save(path)
    assert CodingTables.load(path) == tables
    assert sorted(os.listdir(tmp_path)) == ["side.tables"]  # no temporary file left behind


def test_digest_is_sha256_hex_and_changes_with_any_count_or_median():
    tables = _example_tables()
    assert len(tables.digest()) == 64
    pmfs = tables.pmfs.copy()
    pmfs[0, 0] += 1
    pmfs[0, 1] -= 1
    moved = CodingTables(pmfs, tables.offsets, tables.lengths, tables.medians, tables.precision)
    shifted = CodingTables(tables.pmfs, tables.offsets, tables.lengths, tables.medians + 1e-6,
                           tables.precision)
    assert len({tables.digest(), moved.digest(), shifted.digest()}) == 3
    assert moved != tables


def test_corrupt_bytes_raise_value_error_naming_the_problem():
    data = bytearray(_example_tables().to_bytes())
    with pytest.raises(ValueError, match="too short"):
        CodingTables.from_bytes(data[:6])
    with pytest.raises(ValueError, match="magic"):
        CodingTables.from_bytes(b"XXXX" + data[4:])
    with pytest.raises(ValueError, match="version"):
        CodingTables.from_bytes(data[:4] + b"\x09\x00" + data[6:])
    flipped = bytearray(data)
    flipped[30] ^= 0x01
    with pytest.raises(ValueError, match="checksum"):
        CodingTables.from_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="checksum"):
        CodingTables.from_bytes(bytes(data[:-5] + data[-4:]))


def test_invalid_tables_are_rejected():
    tables = _example_tables()
    bad_sum = tables.pmfs.copy()
    bad_sum[1, 0] += 1
    with pytest.raises(ValueError, match="sum to"):
        CodingTables(bad_sum, tables.offsets, tables.lengths)
    zero_bin = tables.pmfs.copy()
    zero_bin[1, 1] += zero_bin[1, 0]
    zero_bin[1, 0] = 0
    with pytest.raises(ValueError, match=">= 1"):
        CodingTables(zero_bin, tables.offsets, tables.lengths)
    with pytest.raises(ValueError, match="at least one symbol bin"):
        CodingTables.from_rows([[2 ** 16]], [0])
    with pytest.raises(ValueError, match="offsets"):
        CodingTables(tables.pmfs, tables.offsets[:2], tables.lengths)
    with pytest.raises(ValueError, match="precision"):
        CodingTables(tables.pmfs, tables.offsets, tables.lengths, precision=30)


def test_tables_are_read_only():
    tables = _example_tables()
    with pytest.raises(ValueError, match="read-only"):
        tables.pmfs[0, 0] = 5
