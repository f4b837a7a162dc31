"""The .jdc codec API: exact decoding, coded size, scalability, determinism, hostile files."""

import json
import struct
import zlib
from pathlib import Path

import jax
import numpy as np
import pytest

from conftest import generated_image, perturbed, save_checkpoint, tiny_model
from jdc_jax import images
from jdc_jax.codec import Codec, api, file_format

KODAK = Path(__file__).resolve().parents[1] / ".." / "shared" / "testsets" / "kodak24"
CODECS = {
    "jicd-serial": ("jicd", {}),
    "jicd-checkerboard": ("jicd", {"context_model": "checkerboard"}),
    "hyperprior": ("hyperprior", {}),
    "codec": ("codec", {}),
}
_cache = {}


def _codec(name):
    """(codec, jitted eval forward pass) per CODECS entry, built once."""
    if name not in _cache:
        kind, fields = CODECS[name]
        model, params = tiny_model(kind, **fields)
        forward = jax.jit(lambda p, x: model.apply({"params": p}, x, train=False))
        _cache[name] = (Codec(model, params), lambda x: forward(params, x))
    return _cache[name]


def _forward(forward, image):
    x = api.pad_to_multiple(image, 64)[None].astype(np.float32) / 255.0
    return jax.device_get(forward(x))


MODEL_OUTPUTS = {"denoised": "denoised", "noisy": "noisy_reconstruction"}


@pytest.mark.parametrize("name", list(CODECS))
def test_decoded_symbols_and_images_equal_encoder_and_forward_pass(name):
    codec, forward = _codec(name)
    image = generated_image(70, 100)
    encoding = codec.encode(image)
    reference = _forward(forward, image)
    for output in codec.outputs:
        decoding = codec.decode(encoding.data, output)
        assert set(decoding.symbols) <= set(encoding.symbols)
        for stream, symbols in decoding.symbols.items():
            np.testing.assert_array_equal(symbols, encoding.symbols[stream])
            np.testing.assert_array_equal(decoding.latents[stream], encoding.latents[stream])
        key = MODEL_OUTPUTS[output] if codec.scalable else "reconstruction"
        expected = reference[key][0, :70, :100]
        assert decoding.image.shape == (70, 100, 3)
        assert np.max(np.abs(decoding.image - expected)) <= 1e-4
        np.testing.assert_array_equal(codec.decompress(encoding.data, output),
                                      images.to_uint8(decoding.image))


def test_serial_latents_are_the_rounded_analysis_output():
    codec, _ = _codec("jicd-serial")
    image = generated_image(128, 128, seed=3)
    encoding = codec.encode(image)
    x = image[None].astype(np.float32) / 255.0
    y = np.asarray(codec.model.apply({"params": codec.params}, x, method="analysis"))[0]
    np.testing.assert_array_equal(encoding.latents["base"], np.round(y[..., :12]))
    np.testing.assert_array_equal(encoding.latents["enhancement"], np.round(y[..., 12:]))
    assert encoding.symbols["base"].size == 8 * 8 * 12


def _rate_check(codec, forward, image):
    """Each stream's payload is within 2% (plus the range coder's final 32-bit word) of the
    model's estimate, -log2 of its eval-mode likelihoods; the file adds exactly the header and
    20 bytes of framing per chunk."""
    data = codec.compress(image)
    likelihoods = _forward(forward, image)["likelihoods"]
    parsed = file_format.parse_file(data)
    assert set(parsed.chunks) == set(likelihoods)
    for stream, payload in parsed.chunks.items():
        estimated = float(-np.log2(np.asarray(likelihoods[stream], np.float64)).sum())
        assert abs(8 * len(payload) - estimated) <= 0.02 * estimated + 32, (stream, estimated)
    framing = parsed.spans["header"][1] + 20 * len(parsed.chunks)
    assert len(data) == framing + sum(map(len, parsed.chunks.values()))
    return 8 * sum(map(len, parsed.chunks.values()))


@pytest.mark.parametrize("name", ["jicd-serial", "jicd-checkerboard", "hyperprior"])
def test_file_size_matches_estimated_rate_on_generated_image(name):
    codec, forward = _codec(name)
    payload_bits = _rate_check(codec, forward, generated_image(128, 128, seed=1))
    assert payload_bits > 2000  # a real amount of data, not only framing


def test_file_size_matches_estimated_rate_on_kodak_crops():
    files = sorted(KODAK.glob("*.png"))[:2] if KODAK.is_dir() else []
    if not files:
        pytest.skip(f"Kodak test set not found at {KODAK}")
    codec, forward = _codec("jicd-serial")
    for path in files:
        _rate_check(codec, forward, images.read_image(path)[:128, :128])


def test_per_position_entropy_parameters_equal_the_parallel_masked_convolution():
    model, params = tiny_model("jicd")
    rng = np.random.default_rng(0)
    y_hat = np.round(3 * rng.standard_normal((1, 4, 5, 12))).astype(np.float32)
    psi = rng.standard_normal((1, 4, 5, 32)).astype(np.float32)
    group = model.bind({"params": params}).base_parameters
    taps = group.serial_context_taps()
    assert taps.sum() == 12 and not taps[2, 2:].any() and not taps[3:].any()
    matrix, bias = jax.jit(group.serial_context_matrix)()
    assert matrix.shape == (12 * 12, 24)
    mean, scale = jax.jit(group.__call__)(psi, y_hat)
    at_position = jax.jit(group.entropy_parameters_at)
    padded = np.pad(y_hat[0], ((2, 2), (2, 2), (0, 0)))
    for row, col in [(0, 0), (1, 4), (3, 2)]:
        window = padded[row:row + 5, col:col + 5]
        mean_at, scale_at = at_position(psi[:, row, col], window[taps][None], matrix, bias)
        np.testing.assert_allclose(mean_at[0], mean[0, row, col], rtol=0, atol=1e-5)
        np.testing.assert_allclose(scale_at[0], scale[0, row, col], rtol=0, atol=1e-5)


def test_base_layer_decodes_without_enhancement_bytes():
    codec, _ = _codec("jicd-serial")
    image = generated_image(70, 100, seed=2)
    full = codec.compress(image)
    denoised = codec.decode(full, "denoised").image
    truncated = file_format.truncate_to_base(full)
    assert len(truncated) < len(full)
    np.testing.assert_array_equal(codec.decode(truncated, "denoised").image, denoised)
    # An enhancement chunk of other bytes (with valid CRCs) leaves the denoised output alone.
    parsed = file_format.parse_file(full)
    chunks = dict(parsed.chunks, enhancement=bytes(len(parsed.chunks["enhancement"])))
    swapped = file_format.write_file(parsed.header, chunks, parsed.symbols_crcs)
    np.testing.assert_array_equal(codec.decode(swapped, "denoised").image, denoised)
    base_only = codec.compress(image, layers="base")
    assert file_format.parse_file(base_only).chunks == file_format.parse_file(truncated).chunks
    np.testing.assert_array_equal(codec.decode(base_only, "denoised").image, denoised)


def test_noisy_output_of_a_base_only_file_is_refused():
    codec, _ = _codec("jicd-serial")
    full = codec.compress(generated_image(64, 64))
    with pytest.raises(ValueError, match="enhancement chunk was cut off"):
        codec.decompress(file_format.truncate_to_base(full), "noisy")
    with pytest.raises(ValueError, match="written with layers='base'"):
        codec.decompress(codec.compress(generated_image(64, 64), layers="base"), "noisy")


def test_single_output_models_refuse_noisy_and_accept_reconstruction():
    codec, _ = _codec("hyperprior")
    data = codec.compress(generated_image(64, 64))
    with pytest.raises(ValueError, match="needs a JICD model"):
        codec.decompress(data, "noisy")
    np.testing.assert_array_equal(codec.decompress(data, "reconstruction"),
                                  codec.decompress(data, "denoised"))
    with pytest.raises(ValueError, match="unknown output 'sharp'"):
        codec.decompress(data, "sharp")


def test_compressing_twice_gives_identical_bytes():
    codec, _ = _codec("jicd-checkerboard")
    image = generated_image(90, 70, seed=4)
    assert codec.compress(image) == codec.compress(image.copy())


@pytest.mark.parametrize("size", [(1, 1), (65, 33), (500, 375)])
def test_any_image_size_round_trips_with_its_shape(size):
    codec, _ = _codec("jicd-serial" if size != (500, 375) else "hyperprior")
    data = codec.compress(generated_image(*size))
    info = codec.info(data)
    assert (info["height"], info["width"]) == size
    assert (info["padded_height"], info["padded_width"]) == tuple(-(-s // 64) * 64 for s in size)
    assert info["bits_per_pixel"]["total"] == 8 * len(data) / (size[0] * size[1])
    assert codec.decompress(data).shape == (*size, 3)


def test_grey_and_rgba_images_are_coded_as_rgb(capsys):
    codec, _ = _codec("hyperprior")
    rgb = generated_image(40, 50)
    grey = rgb[..., 0]
    assert codec.compress(grey) == codec.compress(np.repeat(grey[..., None], 3, axis=-1))
    rgba = np.concatenate([rgb, np.full((40, 50, 1), 7, np.uint8)], axis=-1)
    assert codec.compress(rgba) == codec.compress(rgb)
    notes = capsys.readouterr().err
    assert "note: the image: converted grey to RGB" in notes
    assert "note: the image: dropped the alpha channel" in notes


@pytest.mark.parametrize("image,message", [
    (np.zeros((8, 8, 3), np.float32), "must be uint8"),
    (np.zeros((8, 8, 5), np.uint8), r"must be \(H, W, 3\)"),
    (np.zeros((0, 8, 3), np.uint8), "outside 1 to"),
    ([[1, 2]], "numpy array"),
])
def test_bad_images_are_refused(image, message):
    codec, _ = _codec("hyperprior")
    with pytest.raises(ValueError, match=message):
        codec.compress(image)


def test_unknown_layers_are_refused():
    codec, _ = _codec("hyperprior")
    with pytest.raises(ValueError, match="layers must be 'full' or 'base'"):
        codec.compress(generated_image(8, 8), layers="enhancement")


def test_info_reports_stream_sizes_that_add_up():
    codec, _ = _codec("jicd-serial")
    data = codec.compress(generated_image(70, 100))
    info = codec.info(data)
    sizes = info["bytes"]
    assert sizes["header"] + sizes["side"] + sizes["base"] + sizes["enhancement"] == len(data)
    assert info["bits_per_pixel"]["base_only"] == 8 * sizes["base_only"] / 7000
    assert info["latents"] == {"z": [2, 2, 16], "base": [8, 8, 12], "enhancement": [8, 8, 4]}
    assert info["written_with_this_model"] and info["model_id"] == codec.model_id.hex()
    assert info["context_model"] == "serial" and info["enhancement_layer"] == "present"


# ------------------------------------------------------------------------------ scan orders

@pytest.mark.parametrize("name", ["jicd-serial", "codec"])
def test_wavefront_and_raster_files_decode_to_identical_latents_and_pixels(name):
    codec, _ = _codec(name)
    image = generated_image(150, 450, seed=6)  # a 12 x 32 latent: 65 fronts, buckets 8 and 16
    encodings = {order: codec.encode(image, scan_order=order) for order in ("raster", "wavefront")}
    for order, encoding in encodings.items():
        assert codec.info(encoding.data)["scan_order"] == order
    for stream, latent in encodings["raster"].latents.items():
        np.testing.assert_array_equal(encodings["wavefront"].latents[stream], latent)
    for output in codec.outputs:
        raster, wavefront = (codec.decode(encodings[order].data, output)
                             for order in ("raster", "wavefront"))
        assert set(raster.latents) == set(wavefront.latents)
        for stream, latent in raster.latents.items():
            np.testing.assert_array_equal(wavefront.latents[stream], latent)
            np.testing.assert_array_equal(latent, encodings["raster"].latents[stream])
        np.testing.assert_array_equal(wavefront.image, raster.image)
    # The same probabilities code the same symbols in another order.
    sizes = [len(encodings[order].data) for order in ("raster", "wavefront")]
    assert abs(sizes[0] - sizes[1]) <= 0.01 * sizes[0]


def test_serial_files_are_written_in_wavefront_order_unless_raster_is_asked():
    codec, _ = _codec("jicd-serial")
    image = generated_image(64, 64, seed=7)
    info = codec.info(codec.compress(image))
    assert (info["format_version"], info["scan_order"]) == (2, "wavefront")
    assert codec.info(codec.compress(image, scan_order="raster"))["scan_order"] == "raster"
    with pytest.raises(ValueError, match="scan order must be one of"):
        codec.compress(image, scan_order="zigzag")
    # Other context models have one order: the file is the same and says "raster".
    hyperprior, _ = _codec("hyperprior")
    data = hyperprior.compress(image)
    assert hyperprior.compress(image, scan_order="raster") == data
    assert hyperprior.info(data)["scan_order"] == "raster"


def _as_format_version_1(data: bytes) -> bytes:
    """A raster-order float-path file in the layout version 1 wrote: the same header without
    its scan order and entropy path bytes (offsets 65 and 66), version 1, header size and CRC to
    match; the same chunks."""
    parsed = file_format.parse_file(data)
    assert (parsed.header.scan_order, parsed.header.entropy_path) == ("raster", "float")
    header_size = parsed.spans["header"][1]
    old = bytearray(data[:65] + data[67:header_size - 4])
    struct.pack_into("<HH", old, 8, 1, header_size - 2)
    return bytes(old) + struct.pack("<I", zlib.crc32(old)) + data[header_size:]


def test_version_1_files_decode_in_raster_order():
    codec, _ = _codec("jicd-serial")
    encoding = codec.encode(generated_image(70, 100, seed=8), scan_order="raster")
    old = _as_format_version_1(encoding.data)
    assert codec.info(old)["format_version"] == 1
    for output in codec.outputs:
        decoding = codec.decode(old, output)
        for stream, symbols in decoding.symbols.items():
            np.testing.assert_array_equal(symbols, encoding.symbols[stream])
        np.testing.assert_array_equal(decoding.image, codec.decode(encoding.data, output).image)


def test_a_header_naming_the_wrong_scan_order_is_caught_by_the_symbols_crc():
    codec, _ = _codec("jicd-serial")
    data = codec.compress(generated_image(64, 64, seed=9))
    assert data[65] == 1  # wavefront
    with pytest.raises(api.SymbolsMismatch, match="base chunk"):
        codec.decompress(_with_header_field(data, 65, "<B", 0))


# ------------------------------------------------------------------------------ hostile input

@pytest.fixture(scope="module")
def jicd_file():
    codec, _ = _codec("jicd-serial")
    return codec, codec.compress(generated_image(64, 64, seed=5))


def test_every_flipped_byte_is_refused(jicd_file):
    codec, data = jicd_file
    kinds = set()
    for position in range(len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 0x5A
        with pytest.raises(file_format.JdcFormatError) as caught:
            codec.decompress(bytes(damaged), "noisy")
        kinds.add(type(caught.value).__name__)
    assert {"NotAJdcFile", "UnsupportedVersion", "CorruptChunk"} <= kinds


def test_truncation_anywhere_but_after_the_base_chunk_is_refused(jicd_file):
    codec, data = jicd_file
    base_offset, base_size = file_format.parse_file(data).spans["base"]
    for length in range(len(data)):
        if length == base_offset + base_size:
            assert codec.decompress(data[:length]).shape == (64, 64, 3)
            continue
        with pytest.raises(file_format.TruncatedFile):
            codec.decompress(data[:length])


def _with_header_field(data, offset, fmt, value):
    """`data` with a header field replaced and the header CRC made valid again."""
    header_size = struct.unpack_from("<H", data, 10)[0]
    damaged = bytearray(data)
    struct.pack_into(fmt, damaged, offset, value)
    struct.pack_into("<I", damaged, header_size - 4, zlib.crc32(damaged[:header_size - 4]))
    return bytes(damaged)


@pytest.mark.parametrize("offset,fmt,value,error,message", [
    (0, "<8s", b"\x89PNG\r\n\x1a\n", file_format.NotAJdcFile, "not a .jdc file"),
    (8, "<H", 3, file_format.UnsupportedVersion, "version 3 is not supported"),
    (48, "<I", 2**31, file_format.InvalidHeader, "image height 2147483648 is outside"),
    (52, "<I", 2**20, file_format.InvalidHeader, "image width 1048576 is outside"),
    (64, "<B", 200, file_format.InvalidHeader, "latent list runs past"),
    (13, "<B", 2, file_format.InvalidHeader, "scan order 'wavefront' needs the serial context"),
])
def test_forged_headers_are_refused(jicd_file, offset, fmt, value, error, message):
    codec, data = jicd_file
    with pytest.raises(error, match=message):
        codec.decompress(_with_header_field(data, offset, fmt, value))


def test_raster_file_forged_to_another_context_model_is_refused_by_the_codec():
    codec, _ = _codec("jicd-serial")
    data = codec.compress(generated_image(64, 64, seed=5), scan_order="raster")
    with pytest.raises(file_format.InvalidHeader, match="header does not fit this model: "
                                                        "context model 'checkerboard'"):
        codec.decompress(_with_header_field(data, 13, "<B", 2))


def test_file_of_another_model_is_refused(jicd_file):
    codec, data = jicd_file
    other = Codec(codec.model, perturbed(jax.device_get(codec.params)))
    assert other.model_id != codec.model_id
    with pytest.raises(file_format.WrongModel, match="file was written with model"):
        other.decompress(data)


def test_wrong_symbols_crc_is_reported(jicd_file):
    codec, data = jicd_file
    parsed = file_format.parse_file(data)
    crcs = dict(parsed.symbols_crcs, base=parsed.symbols_crcs["base"] ^ 1)
    forged = file_format.write_file(parsed.header, parsed.chunks, crcs)
    with pytest.raises(api.SymbolsMismatch, match="base chunk decoded to symbols with CRC-32"):
        codec.decompress(forged)


def test_decoder_with_different_floats_is_caught_by_the_symbols_crc(jicd_file):
    """A decoder whose entropy parameters differ slightly (as on another platform) while its
    model identifier matches must not return an image."""
    codec, data = jicd_file
    params = jax.device_get(codec.params)
    params = dict(params, base_parameters=perturbed(params["base_parameters"], 0.05))
    drifted = Codec(codec.model, params, side_tables=codec.side_tables,
                    latent_tables=codec.latent_tables)
    drifted.model_id = codec.model_id
    with pytest.raises(api.SymbolsMismatch, match="base chunk"):
        drifted.decompress(data)


# ------------------------------------------------------------------------------ checkpoints

def test_checkpoint_tables_are_built_once_and_stored_beside_it(tmp_path, monkeypatch, capsys):
    model, params = tiny_model("jicd")
    workdir = save_checkpoint(tmp_path / "run", "jicd", params, step=3)
    first = Codec.from_checkpoint(workdir)
    assert first.model_id == _codec("jicd-serial")[0].model_id
    tables = tmp_path / "run" / "checkpoints" / "3" / "coding_tables"
    assert sorted(p.name for p in tables.iterdir()) == ["latent.bin", "manifest.json", "side.bin"]
    manifest = json.loads((tables / "manifest.json").read_text())
    assert manifest["params_sha256"] == api.parameters_digest(params)
    assert manifest["side_sha256"] == first.side_tables.digest()

    def no_rebuild(*args):
        raise AssertionError("tables were rebuilt")
    monkeypatch.setattr(api, "build_side_tables", no_rebuild)
    second = Codec.from_checkpoint(tmp_path / "run" / "checkpoints" / "3")
    assert second.model_id == first.model_id
    assert second.model_kind == "jicd" and second.context_model == "serial"
    data = _codec("jicd-serial")[0].compress(generated_image(64, 64))
    np.testing.assert_array_equal(second.decompress(data),
                                  _codec("jicd-serial")[0].decompress(data))
    assert capsys.readouterr().err == ""


def test_checkpoint_tables_of_other_parameters_are_rebuilt(tmp_path, capsys):
    model, params = tiny_model("hyperprior")
    workdir = save_checkpoint(tmp_path / "run", "hyperprior", params)
    original = Codec.from_checkpoint(workdir)
    manifest_path = tmp_path / "run" / "checkpoints" / "1" / "coding_tables" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps(dict(manifest, params_sha256="0" * 64)))
    rebuilt = Codec.from_checkpoint(workdir)
    assert "were built from other parameters; rebuilding them" in capsys.readouterr().err
    assert rebuilt.model_id == original.model_id
    assert json.loads(manifest_path.read_text()) == manifest


def test_missing_checkpoint_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        Codec.from_checkpoint(tmp_path / "nowhere")


def test_model_identifier_depends_on_weights_architecture_and_tables():
    codec, _ = _codec("jicd-serial")
    checkerboard, _ = _codec("jicd-checkerboard")
    params = jax.device_get(codec.params)
    identify = lambda model, params, kind="jicd": api.model_identifier(  # noqa: E731
        model, kind, params, codec.side_tables, codec.latent_tables)
    assert identify(codec.model, params) == codec.model_id
    assert identify(checkerboard.model, params) == checkerboard.model_id != codec.model_id
    assert identify(codec.model, perturbed(params, 1e-7)) != codec.model_id
    assert identify(codec.model, params, "codec") != codec.model_id
    assert api.model_identifier(codec.model, "jicd", params, codec.latent_tables,
                                codec.side_tables) != codec.model_id
