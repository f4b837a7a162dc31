"""Image files: RGB conversion, 16-bit and non-image errors, header sizes, atomic PNG writes."""

import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from jdc_jax import images


def write_png16(path, samples: np.ndarray) -> None:
    """A 16-bit PNG (which Pillow cannot write for RGB): grey, grey+alpha, RGB or RGBA."""
    height, width = samples.shape[:2]
    channels = 1 if samples.ndim == 2 else samples.shape[2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = b"".join(b"\x00" + samples[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    with open(path, "wb") as file:
        file.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                   + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def random_rgb(height=6, width=5, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_grey_image_is_replicated_to_three_channels_with_a_note(tmp_path, capsys):
    grey = random_rgb()[..., 0]
    path = tmp_path / "grey.png"
    Image.fromarray(grey).save(path)
    rgb = images.read_image(path)
    assert rgb.dtype == np.uint8 and rgb.shape == (6, 5, 3)
    np.testing.assert_array_equal(rgb, np.repeat(grey[..., None], 3, axis=-1))
    assert f"note: {path}: converted grey to RGB" in capsys.readouterr().err


def test_rgba_image_drops_alpha_without_compositing(tmp_path, capsys):
    rgb = random_rgb()
    alpha = np.zeros(rgb.shape[:2] + (1,), np.uint8)  # fully transparent
    path = tmp_path / "rgba.png"
    Image.fromarray(np.concatenate([rgb, alpha], axis=-1)).save(path)
    np.testing.assert_array_equal(images.read_image(path), rgb)
    assert "dropped the alpha channel" in capsys.readouterr().err


def test_grey_with_alpha_becomes_grey_rgb(tmp_path, capsys):
    grey_alpha = random_rgb()[..., :2]
    path = tmp_path / "la.png"
    Image.merge("LA", [Image.fromarray(grey_alpha[..., i]) for i in range(2)]).save(path)
    np.testing.assert_array_equal(images.read_image(path),
                                  np.repeat(grey_alpha[..., :1], 3, axis=-1))
    assert "converted grey to RGB and dropped the alpha channel" in capsys.readouterr().err


def test_palette_image_is_converted_to_its_rgb_colours(tmp_path, capsys):
    rgb = np.array([[[255, 0, 0], [0, 0, 255]]], np.uint8)
    path = tmp_path / "palette.png"
    Image.fromarray(rgb).convert("P").save(path)
    np.testing.assert_array_equal(images.read_image(path), rgb)
    assert "converted P to RGB" in capsys.readouterr().err


def test_rgb_image_reads_back_exactly_without_a_note(tmp_path, capsys):
    rgb = random_rgb()
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(path)
    np.testing.assert_array_equal(images.read_image(path), rgb)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("samples", [
    np.full((4, 3), 1000, np.uint16),
    np.full((4, 3, 3), 1000, np.uint16),
    np.full((4, 3, 4), 1000, np.uint16),
], ids=["grey16", "rgb16", "rgba16"])
def test_16_bit_png_is_refused_by_reading_and_by_size(tmp_path, samples):
    path = tmp_path / "deep.png"
    write_png16(path, samples)
    with pytest.raises(ValueError, match="16-bit images are not supported: .*deep.png"):
        images.read_image(path)
    with pytest.raises(ValueError, match="16-bit images are not supported"):
        images.image_size(path)


def test_float_tiff_is_refused(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.ones((4, 4), np.float32)).save(path)
    with pytest.raises(ValueError, match="16-bit images are not supported: .*float.tif"):
        images.read_image(path)


def test_non_image_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    with pytest.raises(ValueError, match="not an image file: .*notes.png"):
        images.read_image(path)
    with pytest.raises(ValueError, match="not an image file"):
        images.image_size(path.read_bytes())


def test_image_size_reads_height_and_width_from_path_and_bytes(tmp_path):
    path = tmp_path / "wide.jpg"
    Image.fromarray(random_rgb(7, 11)).save(path)
    assert images.image_size(path) == (7, 11)
    assert images.image_size(path.read_bytes()) == (7, 11)


def test_read_image_decodes_encoded_bytes(tmp_path):
    rgb = random_rgb()
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(path)
    np.testing.assert_array_equal(images.read_image(path.read_bytes()), rgb)


def test_write_png_round_trips_and_leaves_no_temporary_file(tmp_path):
    rgb = random_rgb()
    path = tmp_path / "out.png"
    images.write_png(path, rgb)
    np.testing.assert_array_equal(images.read_image(path), rgb)
    assert os.listdir(tmp_path) == ["out.png"]


def test_failed_write_keeps_the_previous_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "out.png"
    images.write_png(path, random_rgb(seed=1))
    before = path.read_bytes()

    def partial_save(self, file, *args, **kwargs):
        file.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", partial_save)
    with pytest.raises(OSError, match="disk full"):
        images.write_png(path, random_rgb(seed=2))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.png"]


def test_write_png_rejects_non_uint8_rgb(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        images.write_png(tmp_path / "x.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        images.write_png(tmp_path / "x.png", np.zeros((4, 4), np.uint8))
    assert os.listdir(tmp_path) == []


def test_list_images_is_recursive_sorted_and_filters_extensions(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ["b/z.PNG", "b/a.jpg", "c.jpeg", "a.png", "notes.txt", "d.tif"]:
        (tmp_path / name).write_bytes(b"")
    listed = [os.path.relpath(p, tmp_path) for p in images.list_images(tmp_path)]
    assert listed == ["a.png", os.path.join("b", "a.jpg"), os.path.join("b", "z.PNG"), "c.jpeg"]


def test_list_images_names_a_missing_or_empty_folder(tmp_path):
    with pytest.raises(ValueError, match=f"does not exist: {tmp_path / 'missing'}"):
        images.list_images(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(ValueError, match=f"no images .* found in {tmp_path}"):
        images.list_images(tmp_path)
