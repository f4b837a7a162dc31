"""The decoder's pixel cap: a forged file declaring a huge image is refused before any large
allocation, with the size and the override named; the override decodes what it admits."""

import dataclasses
import time
import tracemalloc

import numpy as np
import pytest

from conftest import generated_image, save_checkpoint, tiny_model
from jdc_jax.__main__ import main
from jdc_jax.codec import Codec, file_format, pixel_cap

BOMB_SIDE = 16384  # 2^28 pixels: the largest image the format can declare


@pytest.fixture(scope="module")
def codec_and_file():
    model, params = tiny_model("jicd")
    codec = Codec(model, params)
    return codec, codec.compress(generated_image(96, 80, seed=2))


def forged_bomb(codec, data: bytes, side: int = BOMB_SIDE) -> bytes:
    """`data` with a header declaring a side x side image: valid CRCs, this model's identifier
    and latent shapes, the original few hundred payload bytes."""
    parsed = file_format.parse_file(data)
    header = dataclasses.replace(parsed.header, height=side, width=side, padded_height=side,
                                 padded_width=side, latent_shapes=codec.latent_shapes(side, side))
    return file_format.write_file(header, parsed.chunks, parsed.symbols_crcs)


def test_a_forged_2_to_the_28_pixel_file_is_refused_before_any_large_allocation(
        codec_and_file):
    codec, data = codec_and_file
    bomb = forged_bomb(codec, data)
    assert len(bomb) < 2 * len(data)
    assert file_format.parse_file(bomb).header.height == BOMB_SIDE  # a well-formed file
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(pixel_cap.ImageTooLarge) as refused:
        codec.decompress(bomb, "noisy")
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert str(refused.value) == (
        "the file declares a 16384x16384 image (268435456 pixels), more than the decoder's "
        "limit of 100000000 pixels (a guard against decompression bombs); if you trust the "
        "file, raise the limit: max_pixels=268435456 (command line: --max-pixels 268435456)")
    assert isinstance(refused.value, file_format.JdcFormatError)
    assert peak < 1 * 2**20  # the decoded image alone would be 3 GiB of float32
    assert seconds < 1.0


def test_max_pixels_admits_exactly_the_sizes_up_to_it(codec_and_file):
    codec, data = codec_and_file
    with pytest.raises(pixel_cap.ImageTooLarge, match=r"96x80 image \(7680 pixels\), more than "
                                                      r"the decoder's limit of 7679 pixels"):
        codec.decompress(data, max_pixels=96 * 80 - 1)
    admitted = codec.decompress(data, max_pixels=96 * 80)
    np.testing.assert_array_equal(admitted, codec.decompress(data))
    assert codec.decode(data, "noisy", max_pixels=None).image.shape == (96, 80, 3)
    assert pixel_cap.DEFAULT_MAX_PIXELS == 100_000_000


@pytest.mark.parametrize("max_pixels", [0, -5, 2.5, True, "100"])
def test_max_pixels_that_is_not_a_positive_integer_is_a_usage_error(codec_and_file, max_pixels):
    codec, data = codec_and_file
    with pytest.raises(ValueError, match="max_pixels must be a positive integer or None, got"):
        codec.decompress(data, max_pixels=max_pixels)


def test_cli_refuses_the_bomb_before_loading_a_model_and_takes_max_pixels(codec_and_file,
                                                                          tmp_path, capsys):
    codec, data = codec_and_file
    (tmp_path / "bomb.jdc").write_bytes(forged_bomb(codec, data))
    # A checkpoint that does not exist: the refusal comes first, from the header alone.
    assert main(["decompress", "--checkpoint", str(tmp_path / "no_model"),
                 str(tmp_path / "bomb.jdc"), str(tmp_path / "bomb.png")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("jdc_jax: error: the file declares a 16384x16384 image")
    assert "--max-pixels 268435456" in error and error.count("\n") == 1
    assert not (tmp_path / "bomb.png").exists()

    _, params = tiny_model("jicd")
    checkpoint = save_checkpoint(tmp_path / "run", "jicd", params)
    saved = Codec.from_checkpoint(checkpoint)
    (tmp_path / "real.jdc").write_bytes(saved.compress(generated_image(40, 50)))
    assert main(["decompress", "--checkpoint", checkpoint, "--max-pixels", "1999",
                 str(tmp_path / "real.jdc"), str(tmp_path / "real.png")]) == 1
    assert "limit of 1999 pixels" in capsys.readouterr().err
    assert main(["decompress", "--checkpoint", checkpoint, "--max-pixels", "2000",
                 str(tmp_path / "real.jdc"), str(tmp_path / "real.png")]) == 0
    assert (tmp_path / "real.png").is_file()
    with pytest.raises(SystemExit) as usage:
        main(["decompress", "--max-pixels", "0", str(tmp_path / "real.jdc"),
              str(tmp_path / "x.png")])
    assert usage.value.code == 2
