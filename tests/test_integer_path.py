"""The integer entropy-parameter path (`jdc_jax.integer`): exactness against a numpy reference,
accumulator bounds, storage and identity, and files that decode on decoders whose floats differ."""

import dataclasses
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import (FAST_COMPILE, generated_image, integer_codec, save_checkpoint, tiny_model,
                      write_images)
from jdc_jax import __main__ as jdc_cli
from jdc_jax import images
from jdc_jax.codec import Codec, api, file_format, scan_order
from jdc_jax.entropy import latent_coding
from jdc_jax.integer import __main__ as integer_cli
from jdc_jax.integer import calibrate, float_network, ops, reference
from jdc_jax.integer.network import INT32_MAX, AccumulatorOverflow, IntegerEntropyModel

REPO = Path(__file__).resolve().parents[1]
# Every Gaussian-conditional family: Cheng hyper synthesis with serial and checkerboard contexts
# (JICD: two groups, the enhancement conditioned on the base), the Balle mean-scale hyper
# synthesis without a parameter network (transposed convolutions, parameters in psi) and the
# scale hyperprior (ReLU, no mean).
KINDS = {
    "jicd-serial": ("jicd", {}),
    "jicd-checkerboard": ("jicd", {"context_model": "checkerboard"}),
    "mean-scale-hyperprior": ("hyperprior", {"parameter_network": False}),
    "scale-hyperprior": ("scale_hyperprior", {}),
}


def _codec(name):
    kind, fields = KINDS[name]
    return integer_codec(kind, **fields)


def _fixed(latent, bits):
    """The fixed-point y_hat of a float32 latent the integer path produced (exact)."""
    return np.round(np.asarray(latent, np.float64) * 2.0**bits).astype(np.int64)


def _in_coding_order(values, context_model, causal_taps, order):
    """(h, w, C) per-element values flattened in the order the coder visits them."""
    height, width = values.shape[:2]
    if context_model == "serial":
        return np.concatenate([values[rows, cols].reshape(-1) for rows, cols in
                               scan_order.scan_fronts(height, width, causal_taps, order)])
    if context_model == "checkerboard":
        anchors = (np.arange(height)[:, None] + np.arange(width)[None, :]) % 2 == 0
        return np.concatenate([values[anchors].reshape(-1), values[~anchors].reshape(-1)])
    return values.reshape(-1)


@pytest.mark.parametrize("name", ["mean-scale-hyperprior", "scale-hyperprior", "jicd-serial"])
def test_float_network_equals_the_flax_model(name):
    kind, fields = KINDS[name]
    model, params = tiny_model(kind, **fields)
    network = float_network.float_network(model, params)
    bound = model.bind({"params": params})
    z_hat = jax.random.normal(jax.random.key(1), (1, 2, 3, 16)) * 3.0
    psi = np.asarray(bound.hyper_synthesis(z_hat))
    ours = float_network.hyper_synthesis(network, z_hat)[-1]
    y = jax.random.normal(jax.random.key(2), (1, 8, 12, 16)) * 2.0
    for stream, group in network.groups.items():
        module = getattr(bound, f"{stream}_parameters")
        part = y[..., :group.channels] if stream == "base" else y[..., -group.channels:]
        extra = y[..., :12] if stream == "enhancement" else None
        y_hat = None if group.context_model == "none" else jnp.round(part)
        mean, scale = module(psi, y_hat, extra)
        (our_mean, our_scale), _ = float_network.group_parameters(network, stream, ours, y_hat,
                                                                  extra)
        np.testing.assert_allclose(our_mean, mean, atol=2e-5)
        np.testing.assert_allclose(our_scale, scale, atol=2e-5)
    if all(group.hidden for group in network.groups.values()):  # psi is the groups' input
        np.testing.assert_allclose(ours, psi, atol=2e-5)


@pytest.mark.parametrize("name", list(KINDS))
def test_coded_indexes_equal_the_numpy_reference_element_for_element(name):
    codec, integer = _codec(name)
    bits = integer.mean_fraction_bits
    encoding = codec.encode(generated_image(70, 100, seed=3))
    assert encoding.entropy_path == "integer"
    side = encoding.symbols["side"].reshape(encoding.latents["side"].shape)
    psi = reference.hyper_synthesis(integer, side[None])
    np.testing.assert_array_equal(np.asarray(ops.hyper_synthesis(integer, side[None])), psi)
    fixed = {}
    for stream in codec.groups:
        fixed[stream] = _fixed(encoding.latents[stream], bits)
        extra = fixed["base"][None] if stream == "enhancement" else None
        mean, index = reference.group_parameters(integer, stream, psi, fixed[stream][None],
                                                 extra)
        indexes = latent_coding.integer_indexes(
            mean[0], index[0], round_around_mean=codec.context_model != "serial",
            fraction_bits=bits)
        expected = _in_coding_order(indexes, codec.context_model,
                                    codec.groups[stream].causal_taps, "wavefront")
        assert encoding.indexes[stream].size == expected.size > 0
        np.testing.assert_array_equal(encoding.indexes[stream], expected)
    decoding = codec.decode(encoding.data, codec.outputs[-1])
    for stream in codec.groups:
        np.testing.assert_array_equal(decoding.indexes[stream], encoding.indexes[stream])
        np.testing.assert_array_equal(decoding.symbols[stream], encoding.symbols[stream])


@pytest.mark.parametrize("name", ["jicd-serial", "jicd-checkerboard", "scale-hyperprior"])
def test_clipped_extreme_inputs_stay_within_the_asserted_bounds(name):
    _, integer = _codec(name)
    bounds = integer.accumulator_bounds()
    assert max(bounds.values()) <= INT32_MAX
    rng = np.random.default_rng(0)
    n = integer.z_medians.size
    # Far beyond the clipping: escape-coded outliers, and every input at its limit.
    for side in (rng.integers(-10**6, 10**6, (1, 2, 3, n)), np.full((1, 2, 3, n), 2**30)):
        psi = reference.hyper_synthesis(integer, side)  # raises BoundExceeded past a bound
        np.testing.assert_array_equal(np.asarray(ops.hyper_synthesis(integer, side)), psi)
        for stream, group in integer.groups.items():
            channels = group.head.channels
            y = rng.integers(-2**31 + 1, 2**31 - 1, psi.shape[:3] + (channels,))
            extra = (rng.integers(-2**31 + 1, 2**31 - 1, psi.shape[:3] + (group.extra_channels,))
                     if group.extra_channels else None)
            y = None if group.context is None else y
            ours = ops.group_parameters(integer, stream, psi.astype(np.int32), y, extra)
            theirs = reference.group_parameters(integer, stream, psi, y, extra)
            for a, b in zip(ours, theirs):
                np.testing.assert_array_equal(np.asarray(a), b)


def test_an_input_range_too_wide_for_int32_is_refused():
    _, integer = _codec("jicd-serial")
    with pytest.raises(AccumulatorOverflow, match="base/context"):
        dataclasses.replace(integer, latent_limit=2**30)
    with pytest.raises(AccumulatorOverflow, match="hyper_synthesis/0"):
        dataclasses.replace(integer, z_limit=2**26)


def test_activation_bits_that_could_overflow_are_refused_at_conversion():
    codec, _ = _codec("jicd-serial")
    images = [generated_image(64, 64, seed=20)]
    with pytest.raises(AccumulatorOverflow, match="2\\^31 - 1"):
        calibrate.calibrate(codec.model, codec.params, codec.side_tables.medians, images,
                            weight_bits=16, activation_bits=24)


def test_saved_network_loads_identically_and_the_model_id_covers_it(tmp_path):
    codec, integer = _codec("jicd-checkerboard")
    integer.save(tmp_path / "integer.npz")
    loaded = IntegerEntropyModel.load(tmp_path / "integer.npz")
    for (name, a), (other, b) in zip(integer.named_arrays(), loaded.named_arrays()):
        assert name == other
        np.testing.assert_array_equal(a, b)
    identifier = api.integer_model_identifier(codec.model_id, loaded)
    assert identifier == codec.integer_model_id != codec.model_id
    changed = loaded.groups["base"].head.bias.copy()
    changed[0] += 1
    group = dataclasses.replace(loaded.groups["base"],
                                head=dataclasses.replace(loaded.groups["base"].head, bias=changed))
    other = dataclasses.replace(loaded, groups={**loaded.groups, "base": group})
    assert api.integer_model_identifier(codec.model_id, other) != identifier
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz is not a readable integer entropy network"):
        IntegerEntropyModel.load(tmp_path / "bad.npz")


def test_the_header_records_the_path_and_each_path_carries_its_identifier():
    codec, _ = _codec("jicd-serial")
    image = generated_image(64, 64, seed=4)
    integer_file = codec.compress(image)
    float_file = codec.compress(image, entropy_path="float")
    assert codec.info(integer_file)["entropy_path"] == "integer"
    assert codec.info(float_file)["entropy_path"] == "float"
    assert integer_file[66] == 1 and float_file[66] == 0
    assert file_format.parse_file(integer_file).header.model_id == codec.integer_model_id
    assert file_format.parse_file(float_file).header.model_id == codec.model_id
    assert codec.info(integer_file)["written_with_this_model"]
    for data in (integer_file, float_file):
        assert codec.decompress(data, "noisy").shape == (64, 64, 3)
    # A codec of the same model without integer parameters decodes the float file and refuses
    # the integer one by name.
    plain = Codec(codec.model, codec.params)
    assert plain.model_id == codec.model_id and plain.default_entropy_path == "float"
    np.testing.assert_array_equal(plain.decompress(float_file), codec.decompress(float_file))
    with pytest.raises(file_format.WrongModel, match="integer entropy path, and this model has "
                                                     "no integer entropy parameters"):
        plain.decompress(integer_file)
    with pytest.raises(ValueError, match="no integer entropy parameters"):
        plain.compress(image, entropy_path="integer")
    with pytest.raises(ValueError, match="entropy path must be one of"):
        codec.compress(image, entropy_path="fixed")


def test_integer_raster_and_wavefront_files_decode_to_identical_latents():
    codec, _ = _codec("jicd-serial")
    image = generated_image(80, 112, seed=6)
    wavefront = codec.encode(image)
    raster = codec.encode(image, scan_order="raster")
    assert wavefront.data != raster.data
    for stream in ("base", "enhancement"):
        np.testing.assert_array_equal(wavefront.latents[stream], raster.latents[stream])
    np.testing.assert_array_equal(codec.decode(raster.data, "noisy").image,
                                  codec.decode(wavefront.data, "noisy").image)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["jicd-serial", "jicd-checkerboard"])
def test_integer_files_decode_op_by_op_and_with_bfloat16_float_parts(name):
    codec, _ = _codec(name)
    bfloat16 = codec.with_compute_dtype(jnp.bfloat16)
    assert bfloat16.model.dtype == jnp.bfloat16
    for seed, size in enumerate([(64, 64), (48, 112)]):
        encoding = codec.encode(generated_image(*size, seed=30 + seed))
        with jax.disable_jit():
            op_by_op = codec.decode(encoding.data, "noisy")
        lower_precision = bfloat16.decode(encoding.data, "noisy")
        for decoding in (op_by_op, lower_precision):
            for stream in codec.streams:
                np.testing.assert_array_equal(decoding.symbols[stream], encoding.symbols[stream])
        # The synthesis stays float: op by op it matches closely; bfloat16 only roughly.
        reference_image = codec.decode(encoding.data, "noisy").image
        assert np.max(np.abs(op_by_op.image - reference_image)) <= 1e-4


@pytest.mark.slow
def test_a_calibrated_checkpoint_decodes_integer_files_in_a_one_thread_process(tmp_path):
    kind, fields = KINDS["jicd-serial"]
    model, params = tiny_model(kind, **fields)
    workdir = save_checkpoint(tmp_path / "run", kind, params, **fields)
    folder = write_images(tmp_path / "calibration", [(64, 64), (80, 96)])
    assert integer_cli.main(["calibrate", "--checkpoint", workdir, "--images", str(folder),
                             "--noise", "awgn:25"]) == 0
    codec = Codec.from_checkpoint(workdir)
    assert codec.default_entropy_path == "integer"
    images.write_png(tmp_path / "in.png", generated_image(40, 72, seed=39))
    for flags, path in (([], "integer"), (["--entropy-path", "float"], "float")):
        assert jdc_cli.main(["compress", "--checkpoint", workdir, str(tmp_path / "in.png"),
                             str(tmp_path / "in.jdc"), *flags]) == 0
        assert codec.info((tmp_path / "in.jdc").read_bytes())["entropy_path"] == path
    files = []
    for seed, size in enumerate([(64, 64), (70, 130), (128, 96)]):
        encoding = codec.encode(generated_image(*size, seed=40 + seed))
        path = tmp_path / f"{seed}.jdc"
        path.write_bytes(encoding.data)
        files.append((str(path), {stream: zlib.crc32(symbols.astype("<i4").tobytes())
                                  for stream, symbols in encoding.symbols.items()}))
    script = (
        "import json, sys, zlib; from jdc_jax.codec import Codec\n"
        "codec = Codec.from_checkpoint(sys.argv[1]); out = []\n"
        "for path in sys.argv[2:]:\n"
        "    d = codec.decode(open(path, 'rb').read(), 'noisy')\n"
        "    out.append({s: zlib.crc32(v.astype('<i4').tobytes()) for s, v in d.symbols.items()})\n"
        "print(json.dumps(out))\n")
    environment = dict(os.environ, XLA_FLAGS=f"{FAST_COMPILE} --xla_cpu_multi_thread_eigen=false "
                       "intra_op_parallelism_threads=1", OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", script, workdir] + [p for p, _ in files],
                            capture_output=True, text=True, env=environment, cwd=REPO,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [s for _, s in files]


def test_calibrate_command_refuses_a_model_without_a_gaussian_conditional(tmp_path, capsys):
    model, params = tiny_model("factorized")
    workdir = save_checkpoint(tmp_path / "run", "factorized", params)
    assert integer_cli.main(["calibrate", "--checkpoint", workdir]) == 1
    assert "has no Gaussian conditional" in capsys.readouterr().err


def test_integer_functions_lower_for_cpu_gpu_and_tpu_with_integer_operations_only():
    _, integer = _codec("jicd-serial")
    front = jax.jit(lambda psi, taps, extra: ops.front_parameters(integer, "enhancement", psi,
                                                                  taps, extra))
    specs = [jax.ShapeDtypeStruct(shape, jnp.int32) for shape in
             [(8, integer.psi_range[0].size), (8, 12, 4), (8, 12)]]
    hyper = jax.jit(lambda symbols: ops.hyper_synthesis(integer, symbols))
    for function, arguments in ((front, specs),
                                (hyper, [jax.ShapeDtypeStruct((1, 2, 3, 16), jnp.int32)])):
        exported = jax.export.export(function, platforms=("cpu", "cuda", "tpu"))(*arguments)
        text = exported.mlir_module()
        assert exported.platforms == ("cpu", "cuda", "tpu")
        assert "f32" not in text and "bf16" not in text and "f16" not in text
        assert "stablehlo.dot_general" in text and "stablehlo.convolution" not in text


def test_calibration_images_of_a_paired_source_are_its_noisy_images_as_they_are(tmp_path):
    clean = write_images(tmp_path / "clean", [(64, 64), (80, 96)], seed=1)
    noisy = write_images(tmp_path / "noisy", [(64, 64), (80, 96)], seed=2)
    got = calibrate.calibration_images(f"paired:{noisy},{clean}", "awgn:25", crop=48)
    expected = [images.read_image(path)[top: top + 48, left: left + 48]
                for path, (top, left) in zip(sorted(str(p) for p in noisy.iterdir()),
                                             [(8, 8), (16, 24)])]
    assert len(got) == 2 and all(np.array_equal(a, b) for a, b in zip(got, expected))
