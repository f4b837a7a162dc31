"""CompressAI -> jdc_jax conversion: layer-for-layer equality with CompressAI's own outputs.

The fixtures (tests/fixtures/compressai/<arch>.npz, written by
tests/fixtures/make_compressai_fixtures.py in the peer environment) hold a briefly trained
CompressAI model's state dict and its eval-mode tensors on a fixed image; no PyTorch is needed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdc_jax.convert import compressai as convert
from jdc_jax.entropy import gaussian
from jdc_jax.entropy.latent_coding import quantize_latent
from jdc_jax.models.registry import model_from_config

FIXTURES = Path(__file__).parent / "fixtures" / "compressai"
ARCHITECTURES = tuple(convert.ARCHITECTURES)


def load_fixture(arch: str):
    data = np.load(FIXTURES / f"{arch}.npz")
    state = {key[len("state/"):]: data[key] for key in data.files if key.startswith("state/")}
    return data, state


def relative_error(ours, reference) -> float:
    """max |ours - reference| / max |reference|: the error relative to the tensor's scale."""
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


def forward_pieces(arch: str, data, state):
    """This project's tensors for the fixture image, piece by piece (NHWC)."""
    params, config = convert.convert_state_dict(arch, state)
    model = model_from_config(config)
    variables = {"params": jax.tree_util.tree_map(jnp.asarray, params)}

    def run(method, *args):
        return model.apply(variables, *args, method=method)

    x = jnp.asarray(data["image"][None], jnp.float32) / 255.0
    out = {"y": run(lambda m, x: m.analysis(x), x)}
    if arch == "bmshj2018-factorized":
        out["y_hat"], out["likelihoods_y"] = run(lambda m, y: m.prior(y, mode="round"), out["y"])
    else:
        out["z"] = run(lambda m, y: m.hyper_analysis(y), out["y"])
        out["z_hat"], out["likelihoods_z"] = run(lambda m, z: m.side_prior(z, mode="round"),
                                                 out["z"])
        psi = run(lambda m, z: m.hyper_synthesis(z), out["z_hat"])
        if config["context_model"] == "serial":
            # The serial context reads y_hat = round(y) (CompressAI's forward does too).
            out["y_hat"] = jnp.round(out["y"])
            out["means"], out["scales"] = run(lambda m, p, q: m.base_parameters(p, q), psi,
                                              out["y_hat"])
        else:
            out["means"], out["scales"] = run(lambda m, p: m.base_parameters(p, None), psi)
            out["y_hat"] = quantize_latent(out["y"], out["means"], round_around_mean=True,
                                           mode="round")
        # CompressAI's likelihood model: the Gaussian with its continuous (bounded) scales.
        out["likelihoods_y"] = gaussian.gaussian_likelihood(out["y_hat"], out["means"],
                                                            out["scales"])
    out["x_hat"] = run(lambda m, q: m.synthesize(q), out["y_hat"])
    return {name: np.asarray(value) for name, value in out.items()}, config


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_converted_model_equals_compressai_layer_for_layer(arch):
    data, state = load_fixture(arch)
    ours, _ = forward_pieces(arch, data, state)
    for name in ("y", "z", "means", "scales", "x_hat"):
        if name in data.files and name in ours:
            if name == "means" and arch == "bmshj2018-hyperprior":
                np.testing.assert_array_equal(ours[name], 0.0)
                continue
            assert relative_error(ours[name], data[name]) < 1e-4, name
    # Quantized latents: the same integers wherever CompressAI's float input is not within
    # float error of a rounding boundary (none is, in these fixtures).
    for name in ("z_hat", "y_hat"):
        if name in data.files:
            assert relative_error(ours[name], data[name]) < 1e-4, name
            offsets = np.round(ours[name] - data[name])
            assert np.count_nonzero(offsets) == 0, name


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_converted_likelihoods_and_estimated_rate_equal_compressai(arch):
    data, state = load_fixture(arch)
    ours, _ = forward_pieces(arch, data, state)
    reference_y = data["likelihoods_y_at_y_hat"] if "likelihoods_y_at_y_hat" in data.files \
        else data["likelihoods_y"]
    pairs = [(ours["likelihoods_y"], reference_y)]
    if "likelihoods_z" in data.files:
        pairs.append((ours["likelihoods_z"], data["likelihoods_z"]))
    bits = 0.0
    for mine, reference in pairs:
        assert mine.shape == reference.shape
        assert relative_error(mine, reference) < 1e-4
        bits += float(np.sum(-np.log2(mine.astype(np.float64))))
    estimated = float(data["estimated_bits"])
    assert abs(bits / estimated - 1.0) < 1e-3, (bits, estimated)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_converted_config_records_the_architecture_read_off_the_weights(arch):
    _, state = load_fixture(arch)
    _, config = convert.convert_state_dict(arch, state)
    spec = convert.ARCHITECTURES[arch]
    assert config["model"] == spec.kind
    assert config["context_model"] == spec.context_model
    assert config["stored_medians"] is True
    assert tuple(config["prior_filters"]) == (3, 3, 3, 3)  # CompressAI 1.2's bottleneck
    expected_widths = (16, 16) if arch == "cheng2020-anchor" else (16, 24)
    assert (config["channels"], config["latent_channels"]) == expected_widths


def test_pixel_shuffle_order_maps_depth_to_space_channels_to_pytorch_channels():
    # 2 output channels, r = 2: ours (i*2 + j)*2 + c <- PyTorch c*4 + i*2 + j.
    order = convert.pixel_shuffle_order(2, 2)
    assert order.tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


def test_older_entropy_bottleneck_key_names_convert_to_the_same_model():
    data, state = load_fixture("mbt2018-mean")
    renamed = {}
    for key, value in state.items():
        for plural, singular in (("matrices", "_matrix"), ("biases", "_bias"),
                                 ("factors", "_factor")):
            prefix = f"entropy_bottleneck.{plural}."
            if key.startswith(prefix):
                key = f"entropy_bottleneck.{singular}{key[len(prefix):]}"
        renamed[key] = value
    params_new, _ = convert.convert_state_dict("mbt2018-mean", state)
    params_old, _ = convert.convert_state_dict("mbt2018-mean", renamed)
    for a, b in zip(jax.tree_util.tree_leaves(params_new), jax.tree_util.tree_leaves(params_old)):
        np.testing.assert_array_equal(a, b)


def test_module_prefix_of_data_parallel_checkpoints_is_dropped():
    _, state = load_fixture("bmshj2018-factorized")
    prefixed = {f"module.{key}": value for key, value in state.items()}
    params, _ = convert.convert_state_dict("bmshj2018-factorized", prefixed)
    np.testing.assert_array_equal(params["g_a"]["conv0"]["bias"], state["g_a.0.bias"])


@pytest.mark.parametrize("change, message", [
    ("missing", "missing key 'h_s.2.weight' (expected in this architecture's state dict)"),
    ("renamed", "missing key 'h_s.2.weight' (the state dict has 'h_s.2.weights' instead)"),
    ("shape", "key 'h_s.2' does not fit mbt2018"),
    ("extra", "unexpected key 'h_s.9.weight'"),
    ("mask", "key 'context_prediction.mask' is not the type-'A' raster mask"),
])
def test_broken_state_dicts_fail_naming_the_key(change, message):
    _, state = load_fixture("mbt2018")
    state = dict(state)
    if change == "missing":
        del state["h_s.2.weight"]
    elif change == "renamed":
        state["h_s.2.weights"] = state.pop("h_s.2.weight")
    elif change == "shape":
        state["h_s.2.weight"] = state["h_s.2.weight"][:, :-1]
    elif change == "extra":
        state["h_s.9.weight"] = np.zeros((3, 3), np.float32)
    else:
        mask = state["context_prediction.mask"].copy()
        mask[:, :, 2, 2] = 1  # type "B": the centre tap opened
        state["context_prediction.mask"] = mask
    with pytest.raises(convert.ConversionError, match=re.escape(message)):
        convert.convert_state_dict("mbt2018", state)


def test_wrong_architecture_is_refused_by_the_first_key_it_lacks():
    _, state = load_fixture("bmshj2018-factorized")
    with pytest.raises(convert.ConversionError, match="missing key 'h_a.0.weight'"):
        convert.convert_state_dict("mbt2018-mean", state)
    with pytest.raises(convert.ConversionError, match="unknown architecture 'mbt2019'"):
        convert.convert_state_dict("mbt2019", state)


@pytest.mark.slow
def test_command_line_writes_nothing_when_the_state_dict_is_broken(tmp_path):
    _, state = load_fixture("bmshj2018-hyperprior")
    del state["g_s.6.bias"]
    weights = tmp_path / "broken.npz"
    np.savez(weights, **state)
    out = tmp_path / "converted"
    result = subprocess.run(
        [sys.executable, "-m", "jdc_jax.convert", "compressai", "--arch", "bmshj2018-hyperprior",
         "--weights", str(weights), "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "missing key 'g_s.6.bias'" in result.stderr
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.npz"]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_converted_model_writes_jdc_files_at_compressai_estimated_rate(arch, tmp_path):
    """The range-coded payload of a real .jdc file is CompressAI's estimated bits within 2 %
    (the file adds a fixed header and 20 bytes of framing per chunk), and the decoded image is
    CompressAI's x_hat up to float rounding."""
    from jdc_jax.codec import file_format
    from jdc_jax.codec.api import Codec

    data, state = load_fixture(arch)
    params, config = convert.convert_state_dict(arch, state)
    out = convert.write_checkpoint(params, config, tmp_path / "converted")
    codec = Codec.from_checkpoint(out)
    large = codec.encode(data["large_image"])
    payload_bits = 8 * sum(len(chunk) for chunk in
                           file_format.parse_file(large.data).chunks.values())
    estimated = float(data["large_estimated_bits"])
    assert abs(payload_bits / estimated - 1.0) < 0.02, (payload_bits, estimated)
    small = codec.compress(data["image"])
    decoded = codec.decode(small, "reconstruction").image
    assert float(np.max(np.abs(decoded - data["x_hat"][0]))) < 1e-4
    np.testing.assert_array_equal(codec.decompress(small, "reconstruction"),
                                  codec.decompress(codec.compress(data["image"]),
                                                   "reconstruction"))


def test_converted_checkpoint_starts_a_fine_tune_with_its_exact_weights(tmp_path):
    """--config.init_from=DIR with a converted model: the config names the same architecture
    (kind, widths, prior widths, stored medians) and training starts from CompressAI's weights."""
    from jdc_jax import checkpoints, train
    from jdc_jax.default_config import get_config

    _, state = load_fixture("mbt2018-mean")
    params, converted = convert.convert_state_dict("mbt2018-mean", state)
    out = convert.write_checkpoint(params, converted, tmp_path / "converted")
    config = get_config()
    for field in ("model", "channels", "latent_channels", "context_model",
                  "parameter_network", "stored_medians"):
        setattr(config, field, converted[field])
    config.prior_filters = tuple(converted["prior_filters"])
    config.crop_size, config.init_from = 64, str(out)
    model = model_from_config(config)
    started = train.create_train_state(config, model, train.make_optimizer(config),
                                       jax.random.key(0))
    saved, _, step = checkpoints.restore_params(out)
    assert step == 0
    flat = jax.tree_util.tree_leaves_with_path(started.params)
    assert len(flat) == len(jax.tree_util.tree_leaves(saved))
    for (path, ours), theirs in zip(flat, jax.tree_util.tree_leaves(saved)):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs), err_msg=str(path))
    np.testing.assert_array_equal(np.asarray(started.params["side_prior"]["medians"]),
                                  state["entropy_bottleneck.quantiles"][:, 0, 1])
