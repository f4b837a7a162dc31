"""The model zoo: entries built from checkpoints, loading by name, the CLI's --model, and the
models shipped in the package."""

import jax
import numpy as np
import pytest

from conftest import TINY_FIELDS, generated_image, load_config, save_checkpoint, tiny, tiny_model
from jdc_jax import checkpoints, images, train, zoo
from jdc_jax.__main__ import main
from jdc_jax.codec import Codec, file_format
from jdc_jax.evaluate import DenoiserRunner
from jdc_jax.models import registry
from jdc_jax.entropy.tables import CodingTables
from jdc_jax.zoo.build import (_shared_latent_tables, build_entry, donor_record,
                               int8_per_output_channel, shipped_arrays, training_record)

SHIPPED_NAME = "jicd-sigma25"
SHIPPED_RATE_POINTS = (1, 2, 3, 4)  # the campaign's ladder so far (results/campaign/README.md)


@pytest.fixture(scope="module")
def entry(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo")
    _, params = tiny_model("jicd")
    checkpoint = save_checkpoint(folder / "run", "jicd", params, rate_point=2)
    root = folder / "weights"
    directory = build_entry(checkpoint, "tiny-jicd", root, description="a tiny test model")
    return dict(folder=folder, root=root, directory=directory, params=params,
                checkpoint=checkpoint)


def _flat(tree) -> dict[str, np.ndarray]:
    return {"/".join(str(entry.key) for entry in path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_entry_holds_int8_kernels_and_float16_others_that_load_as_exactly_their_product(entry):
    loaded = _flat(zoo.load_params(entry["directory"]))
    original = _flat(entry["params"])
    assert sorted(loaded) == sorted(original)
    with np.load(entry["directory"] / zoo.PARAMS_FILE) as stored:
        stored = {key: stored[key] for key in stored.files}
    kernels = [key for key, value in original.items()
               if key.endswith("/kernel") and value.ndim == 4]
    assert len(kernels) >= 20  # every convolution of the tiny JICD
    assert sorted(stored) == sorted(list(original) + [k + zoo.SCALE_SUFFIX for k in kernels])
    for key, value in original.items():
        assert loaded[key].dtype == np.float32
        if key in kernels:
            quantized, scale = stored[key], stored[key + zoo.SCALE_SUFFIX]
            assert quantized.dtype == np.int8 and scale.dtype == np.float16
            assert scale.shape == (value.shape[-1],)
            assert int(np.max(np.abs(quantized))) == 127  # each channel's largest value
            np.testing.assert_array_equal(
                loaded[key], quantized.astype(np.float32) * scale.astype(np.float32))
            # At most half a step from the trained value.
            steps = np.abs(loaded[key] - value) / scale.astype(np.float32)
            assert float(np.max(steps)) <= 0.5 + 1e-3
        else:
            assert stored[key].dtype == np.float16
            np.testing.assert_array_equal(loaded[key], value.astype(np.float16).astype(np.float32))


def test_int8_kernels_keep_zeros_and_every_value_within_half_a_step_even_for_tiny_scales():
    kernel = np.zeros((5, 5, 2, 4), np.float32)
    kernel[:2, :, 0, 0] = np.linspace(-0.3, 0.5, 10).reshape(2, 5)  # a causal (masked) kernel
    kernel[0, 0, 1, 1] = 1e-6      # largest / 127 rounds to 0 in float16: the smallest scale
    kernel[4, 4, 1, 2] = -2.54     # scale 0.02: exactly -127
    kernel[1, 1, 0, 3], kernel[2, 2, 1, 3] = 1e-3, -4e-4  # a subnormal float16 scale
    quantized, scale = int8_per_output_channel(kernel)
    np.testing.assert_array_equal(quantized[2:, :, :, 0], 0)
    assert scale[1] == np.float16(2.0**-24) and quantized[0, 0, 1, 1] == 17
    assert quantized[4, 4, 1, 2] == -127 and scale[2] == np.float16(0.02)
    assert quantized[1, 4, 0, 0] == 127 and quantized[0, 0, 0, 0] == round(-0.3 / float(scale[0]))
    assert int(np.max(np.abs(quantized))) <= 127
    dequantized = quantized.astype(np.float32) * scale.astype(np.float32)
    steps = np.abs(dequantized - kernel) / scale.astype(np.float32)
    assert float(np.max(steps)) <= 0.5 + 1e-3
    np.testing.assert_array_equal(dequantized[kernel == 0], 0)
    empty, empty_scale = int8_per_output_channel(np.zeros((3, 3, 0, 2), np.float32))
    assert empty.shape == (3, 3, 0, 2) and empty_scale.tolist() == [0, 0]


def test_an_entry_of_float16_kernels_still_loads(tmp_path):
    kernel = np.arange(24, dtype=np.float16).reshape(1, 2, 3, 4) / 7
    np.savez(tmp_path / zoo.PARAMS_FILE, **{"a/kernel": kernel,
                                            "a/bias": np.ones(4, np.float16)})
    loaded = zoo.load_params(tmp_path)
    np.testing.assert_array_equal(loaded["a"]["kernel"], kernel.astype(np.float32))
    assert loaded["a"]["kernel"].dtype == np.float32


def test_a_params_file_with_an_unscaled_int8_kernel_or_another_dtype_is_refused(tmp_path):
    for arrays, message in (
            ({"a/kernel": np.ones((1, 1, 2, 3), np.int8)}, r"a/kernel \(1, 1, 2, 3\) needs "
             r"float16 scales a/kernel@scale of shape \(3,\)"),
            ({"a/kernel": np.ones((1, 1, 2, 3), np.int8),
              "a/kernel@scale": np.ones(2, np.float16)}, "needs float16 scales"),
            ({"a/bias@scale": np.ones(2, np.float16)}, "a/bias@scale scales no int8 kernel"),
            ({"a/kernel": np.ones((1, 1, 2, 3), np.float16),
              "a/kernel@scale": np.ones(3, np.float16)}, "a/kernel@scale scales no int8 kernel"),
            ({"a/kernel": np.ones((2, 3), np.int8), "a/kernel@scale": np.ones(3, np.float16)},
             r"int8 a/kernel has shape \(2, 3\); only 4-D kernels"),
            ({"a/bias": np.ones(2, np.float32)}, "a/bias is float32, not float16 or int8")):
        np.savez(tmp_path / zoo.PARAMS_FILE, **arrays)
        with pytest.raises(ValueError, match=message):
            zoo.load_params(tmp_path)


def test_loaded_entry_round_trips_and_its_card_names_its_model_id(entry):
    codec = zoo.load("tiny-jicd", rate_point=2, root=entry["root"])
    card = zoo.card("tiny-jicd", root=entry["root"])
    assert card["model_id"] == codec.model_id.hex()
    assert card["rate_point"] == 2 and card["description"] == "a tiny test model"
    assert card["parameters"] == sum(v.size for v in jax.tree_util.tree_leaves(entry["params"]))
    assert card["weight_storage"] == "int8 kernels with a float16 scale per output channel; " \
                                     "float16 others"
    image = generated_image(40, 56, seed=3)
    data = codec.compress(image)
    # The entry holds its integer entropy network: files carry the integer path's identifier.
    assert card["integer_model_id"] == codec.integer_model_id.hex() != card["model_id"]
    assert file_format.parse_file(data).header.model_id == codec.integer_model_id
    assert file_format.parse_file(data).header.entropy_path == "integer"
    again = zoo.load("tiny-jicd", root=entry["root"])
    np.testing.assert_array_equal(again.decompress(data, "noisy"), codec.decompress(data, "noisy"))
    assert zoo.available(entry["root"]) == {"tiny-jicd": (2,)}


def test_unknown_name_or_rate_point_names_what_is_available(entry):
    with pytest.raises(zoo.UnknownModel, match=r"unknown zoo model 'nope'; available: "
                                               r"tiny-jicd \(rate points 2\)"):
        zoo.load("nope", root=entry["root"])
    with pytest.raises(zoo.UnknownModel, match="zoo model 'tiny-jicd' has no rate point 5; "
                                               "it has 2"):
        zoo.load("tiny-jicd", rate_point=5, root=entry["root"])


def test_an_entry_whose_files_do_not_match_its_card_is_refused_by_name(entry, tmp_path):
    import shutil

    root = tmp_path / "weights"
    shutil.copytree(entry["root"], root)
    side = root / "tiny-jicd" / "rate_point_2" / zoo.SIDE_TABLES_FILE
    other = root / "tiny-jicd" / "rate_point_2" / zoo.LATENT_TABLES_FILE
    shutil.copy(root / zoo.LATENT_TABLES_FILE, other)
    shutil.copy(other, side)  # valid tables, but not this model's side tables
    with pytest.raises(zoo.DamagedEntry, match=r"side_tables.bin does not match the "
                                               r"side_tables_sha256 of .*card.json"):
        zoo.load("tiny-jicd", root=root)


def test_an_entry_whose_integer_network_does_not_match_its_card_is_refused(entry, tmp_path):
    import dataclasses
    import shutil

    from jdc_jax.integer.network import IntegerEntropyModel

    root = tmp_path / "weights"
    shutil.copytree(entry["root"], root)
    path = root / "tiny-jicd" / "rate_point_2" / "integer_entropy.npz"
    integer = IntegerEntropyModel.load(path)
    dataclasses.replace(integer, z_limit=integer.z_limit + 1).save(path)
    with pytest.raises(zoo.DamagedEntry, match=r"integer_entropy.npz does not match the "
                                               r"integer_entropy_sha256 of .*card.json"):
        zoo.load("tiny-jicd", root=root)


def test_building_over_an_existing_entry_needs_overwrite(entry):
    with pytest.raises(FileExistsError, match="rate_point_2 exists"):
        build_entry(entry["checkpoint"], "tiny-jicd", entry["root"])


def test_params_beyond_float16_range_are_refused():
    with pytest.raises(ValueError, match=r"parameter a/kernel reaches 100000, beyond float16"):
        shipped_arrays({"a": {"kernel": np.full((1, 1, 1, 2), 1e5, np.float32)}})
    with pytest.raises(ValueError, match=r"parameter a/bias reaches inf, beyond float16"):
        shipped_arrays({"a": {"bias": np.array([np.inf], np.float32)}})


def test_cli_compresses_with_model_name_and_decompresses_by_the_files_model_id(
        entry, monkeypatch, capsys):
    monkeypatch.setenv("JDC_ZOO_ROOT", str(entry["root"]))
    folder = entry["folder"]
    image = generated_image(36, 52, seed=9)
    images.write_png(folder / "in.png", image)
    assert main(["compress", "--model", "tiny-jicd", "--rate-point", "2",
                 str(folder / "in.png"), str(folder / "in.jdc")]) == 0
    data = (folder / "in.jdc").read_bytes()
    codec = zoo.load("tiny-jicd")
    assert data == codec.compress(image)
    assert main(["decompress", str(folder / "in.jdc"), str(folder / "out.png"),
                 "--output", "denoised"]) == 0
    np.testing.assert_array_equal(images.read_image(folder / "out.png"),
                                  codec.decompress(data, "denoised"))
    assert main(["models"]) == 0
    assert "tiny-jicd --rate-point 2: jicd" in capsys.readouterr().out


def test_decompress_without_model_refuses_a_file_of_an_unshipped_model(entry, monkeypatch,
                                                                       capsys):
    monkeypatch.setenv("JDC_ZOO_ROOT", str(entry["root"]))
    folder = entry["folder"]
    _, params = tiny_model("hyperprior")
    other = Codec.from_checkpoint(save_checkpoint(folder / "other", "hyperprior", params))
    (folder / "other.jdc").write_bytes(other.compress(generated_image(32, 32)))
    assert main(["decompress", str(folder / "other.jdc"), str(folder / "other.png")]) == 1
    assert (f"the file was written by model {other.model_id.hex()[:16]}..., which is not "
            f"shipped in the package") in capsys.readouterr().err


def test_shipped_models_load_and_their_tables_match_their_cards():
    shipped = zoo.available()
    assert shipped[SHIPPED_NAME] == SHIPPED_RATE_POINTS
    total = sum(p.stat().st_size for p in zoo.WEIGHTS_DIRECTORY.rglob("*") if p.is_file())
    assert total < 80 * 2**20  # the zoo's budget in the repository
    codec = zoo.load(SHIPPED_NAME, rate_point=1)
    assert zoo.card(SHIPPED_NAME, 1)["model_id"] == codec.model_id.hex()
    image = generated_image(64, 64, seed=1)
    data = codec.compress(image)
    denoised = codec.decompress(data, "denoised")
    assert denoised.shape == (64, 64, 3) and denoised.dtype == np.uint8


def test_card_names_a_donor_of_the_same_ladder_by_entry_name_and_rate_point(entry, tmp_path):
    _, params = tiny_model("jicd")
    donor = save_checkpoint(tmp_path / "machine" / "rate_point_3", "jicd", params, rate_point=3)
    checkpoint = save_checkpoint(tmp_path / "machine" / "rate_point_2", "jicd", params,
                                 rate_point=2, init_from=f"{donor}/checkpoints")
    directory = build_entry(checkpoint, "tiny-ladder", tmp_path / "weights")
    card = zoo.card("tiny-ladder", 2, root=tmp_path / "weights")
    assert card["init_from"] == {"name": "tiny-ladder", "rate_point": 3}
    assert str(tmp_path) not in (directory / zoo.CARD_FILE).read_text()
    assert str(tmp_path) not in (directory / zoo.CONFIG_FILE).read_text()
    assert zoo.card("tiny-jicd", root=entry["root"])["init_from"] is None  # trained from scratch


def test_card_names_a_donor_of_another_run_by_its_work_directory(tmp_path):
    _, params = tiny_model("jicd")
    other = save_checkpoint(tmp_path / "awgn50_run", "jicd", params, rate_point=3,
                            noise="awgn:50")
    config = {"rate_point": 2, "model": "jicd", "noise": "awgn:25", **TINY_FIELDS["jicd"]}
    assert donor_record(f"{other}/checkpoints/1", "tiny", config) == {"name": "awgn50_run",
                                                                       "rate_point": 3}
    # Unreachable here (the training machine's path): named by its directory, rate point unknown.
    assert donor_record("/work/runs/small/jicd/rate_point_4/checkpoints", "tiny", config) == {
        "name": "rate_point_4", "rate_point": None}
    assert donor_record("", "tiny", config) is None


def test_models_lists_how_each_shipped_entry_was_trained(capsys):
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    # An entry exported mid-run says how far its run had come (the card's steps, with commas).
    steps = zoo.card("codec-clean", 1)["training_steps"]
    assert steps >= 1000
    assert (f"codec-clean --rate-point 1: codec (serial context), lambda 0.0018, trained without "
            f"noise for {steps:,} steps; Cheng2020-anchor codec"
            ) in listing
    # A fine-tuned rate point names the entry it started from, and its enhancement fine-tune.
    assert ("jicd-sigma25 --rate-point 2: jicd (serial context), lambda 0.0035, trained on "
            "awgn:25 noise for 3,000 steps from jicd-sigma25 rate point 1, then "
            "enhancement_parameters, g_s_full alone for 1,500 more steps; JICD") in listing


def test_shipped_cards_name_their_donors_by_zoo_entry_not_by_path():
    shipped = zoo.available()
    donors = {point: zoo.card(SHIPPED_NAME, point)["init_from"]
              for point in shipped[SHIPPED_NAME]}
    # The ladder: rate point 1 from scratch, each next one fine-tuned from the one before.
    assert donors == {point: None if point == 1 else {"name": SHIPPED_NAME,
                                                      "rate_point": point - 1}
                      for point in SHIPPED_RATE_POINTS}


@pytest.mark.slow
def test_a_run_continues_from_its_zoo_entry_on_a_machine_without_its_checkpoints(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JDC_ZOO_ROOT", str(tmp_path / "weights"))
    config = tiny(load_config("configs/jicd.py:smoke"), tmp_path, num_train_steps=2,
                  eval_folder="", rate_point=1)
    train.train_and_evaluate(config, str(tmp_path / "machine_a"))
    build_entry(str(tmp_path / "machine_a"), "tiny-run", tmp_path / "weights")
    # Machine B has the committed entry only: it continues at step 2 from the weights as shipped.
    restart = tiny(load_config("configs/jicd.py:smoke"), tmp_path, num_train_steps=4,
                   eval_folder="", rate_point=1, init_from="zoo:tiny-run:1", init_step=2)
    model = registry.model_from_config(restart)
    state = train.create_train_state(restart, model, train.make_optimizer(restart),
                                     jax.random.key(7))
    assert int(state.step) == 2
    shipped = zoo.load_params(zoo.entry_directory("tiny-run", 1))
    for ours, theirs in zip(jax.tree_util.tree_leaves(state.params),
                            jax.tree_util.tree_leaves(shipped)):
        np.testing.assert_array_equal(np.asarray(ours), theirs)
    metrics = train.train_and_evaluate(restart, str(tmp_path / "machine_b"))
    assert checkpoints.restore_params(tmp_path / "machine_b")[2] == 4
    # The last step is the fresh optimizer's second, on the restart ramp: 1e-3 x 2/100 (the
    # logged rate once followed the global step instead: 1e-3 x 4/100).
    assert restart.learning_rate == 1e-3 and restart.log_every_steps == 1
    np.testing.assert_allclose(metrics["learning_rate"], 1e-3 * 2 / 100, rtol=1e-5)
    # Resumed from its checkpoints without init_step (as campaign.sh resumes), it stays the
    # warm restart (its schedule would otherwise restart from the peak).
    resumed = tiny(load_config("configs/jicd.py:smoke"), tmp_path, num_train_steps=5,
                   eval_folder="", rate_point=1)
    train.keep_warm_restart(resumed, str(tmp_path / "machine_b"))
    assert (resumed.init_step, resumed.init_from) == (2, "zoo:tiny-run:1")
    with pytest.raises(ValueError, match="holds a warm restart from step 2; init_step 3"):
        train.keep_warm_restart(tiny(load_config("configs/jicd.py:smoke"), tmp_path,
                                     init_from="zoo:tiny-run:1", init_step=3),
                                str(tmp_path / "machine_b"))
    build_entry(str(tmp_path / "machine_b"), "tiny-run", tmp_path / "weights", overwrite=True)
    card = zoo.card("tiny-run", 1)
    assert card["training_steps"] == 4
    assert card["init_from"] is None  # the restart of a from-scratch run names no donor
    assert donor_record("zoo:other:3", "tiny-run", {"rate_point": 1}) == {"name": "other",
                                                                           "rate_point": 3}
    # A fine-tune of g_s_full alone, everything else frozen, replaces the entry: the card keeps
    # the run's 4 steps (so the campaign still sees the run done) and says what came after.
    frozen = ",".join(f"{name}=0" for name in sorted(set(shipped) - {"g_s_full"}))
    tune = tiny(load_config("configs/jicd.py:smoke"), tmp_path, num_train_steps=2,
                eval_folder="", rate_point=1, init_from="zoo:tiny-run:1",
                module_lr_scales=frozen)
    train.train_and_evaluate(tune, str(tmp_path / "tune"))
    build_entry(str(tmp_path / "tune"), "tiny-run", tmp_path / "weights", overwrite=True)
    card = zoo.card("tiny-run", 1)
    record = (4, None, {"steps": 2, "trained_modules": ["g_s_full"], "learning_rate": 1e-3})
    assert (card["training_steps"], card["init_from"], card["partial_fine_tune"]) == record
    assert main(["models"]) == 0
    assert ("tiny-run --rate-point 1: jicd (serial context), lambda 0.0018, trained on awgn:25 "
            "noise for 4 steps, then g_s_full alone for 2 more steps;") in capsys.readouterr().out
    # Fine-tuned from the checkpoint instead of the entry: its steps, and the donor it came from
    # (machine B's run, a warm restart of this entry, whose card names no donor).
    tuned, _ = checkpoints.restore_config(tmp_path / "tune")
    from_path = dict(tuned, init_from=str(tmp_path / "machine_b"))
    assert training_record(from_path, shipped, 2, "tiny-run") == record
    # The same fine-tune at another rate point's lambda is not exported.
    with pytest.raises(ValueError, match=r"fine-tuned from zoo:tiny-run:1 \(rate point 1\) "
                       r"with some modules frozen, at rate point 3's lambda: .* "
                       r"\(--config.rate_point=1\)"):
        training_record(dict(tuned, rate_point=3), shipped, 2, "tiny-run")


def test_zoo_specs_name_a_codec_with_its_rate_point_and_a_denoiser_without():
    assert zoo.split_spec("zoo:jicd-sigma25:3") == ("jicd-sigma25", 3)
    assert zoo.split_spec("zoo:ffdnet-clip") == ("ffdnet-clip", None)
    for spec in ("zoo:", "zoo:a:b", "jicd-sigma25:1", "zoo::1"):
        with pytest.raises(ValueError, match=r"expected zoo:NAME:RATE_POINT \(a codec"):
            zoo.split_spec(spec)
    with pytest.raises(ValueError, match="expected zoo:NAME:RATE_POINT, e.g."):
        zoo.parse_spec("zoo:ffdnet-clip")


def _tiny_ffdnet_checkpoint(workdir, step: int, **fields) -> tuple:
    model = registry.build_model("ffdnet", depth=3, features=8)
    params = registry.init_params(model, jax.random.key(4), (1, 16, 16, 3))
    checkpoint = save_checkpoint(workdir, "ffdnet", params, step=step, denoiser_depth=3,
                                 denoiser_features=8, noise="awgn:0-75", **fields)
    return model, params, checkpoint


def test_a_denoiser_entry_has_no_rate_point_and_is_read_where_a_checkpoint_would_be(
        entry, tmp_path, monkeypatch, capsys):
    model, params, checkpoint = _tiny_ffdnet_checkpoint(tmp_path / "ffdnet", step=5)
    root = tmp_path / "weights"
    directory = build_entry(checkpoint, "tiny-ffdnet", root, description="a tiny denoiser")
    assert directory == root / "tiny-ffdnet"
    assert sorted(p.name for p in directory.iterdir()) == [zoo.CARD_FILE, zoo.CONFIG_FILE,
                                                           zoo.PARAMS_FILE]
    assert zoo.denoisers(root) == ("tiny-ffdnet",) and zoo.available(root) == {}
    card = zoo.denoiser_card("tiny-ffdnet", root)
    assert (card["model"], card["noise"], card["training_steps"], card["init_from"]) == (
        "ffdnet", "awgn:0-75", 5, None)
    assert card["parameters"] == sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))

    monkeypatch.setenv("JDC_ZOO_ROOT", str(root))
    shipped = zoo.load_params(directory)
    restored, config, steps = zoo.restore("zoo:tiny-ffdnet")
    assert steps == 5 and config["model"] == "ffdnet" and config["init_from"] == ""
    # Evaluation's --denoiser and a teacher read it as they read a checkpoint; so does init_from.
    _, from_registry, _ = registry.restore_model("zoo:tiny-ffdnet", registry.DENOISER_KINDS)
    from_init = train.load_init_params("zoo:tiny-ffdnet", params)
    for tree in (restored, from_registry, from_init):
        for ours, theirs in zip(jax.tree_util.tree_leaves(tree),
                                jax.tree_util.tree_leaves(shipped), strict=True):
            np.testing.assert_array_equal(np.asarray(ours), theirs)
    denoise = DenoiserRunner("zoo:tiny-ffdnet")
    image = generated_image(24, 32, seed=2)
    expected = model.apply({"params": shipped}, image[None].astype(np.float32) / 255.0,
                           noise_level=np.float32(25 / 255))["denoised"]
    np.testing.assert_array_equal(denoise(image, noise_std=25.0),
                                  images.to_uint8(np.asarray(expected)[0]))
    with pytest.raises(ValueError, match="zoo:tiny-ffdnet holds a 'ffdnet' model, not one of "
                                         "jicd"):
        registry.restore_model("zoo:tiny-ffdnet", kinds=("jicd",))
    with pytest.raises(zoo.UnknownModel, match="unknown zoo denoiser 'nope'; available: "
                                               "tiny-ffdnet"):
        zoo.restore("zoo:nope")
    assert main(["models"]) == 0
    assert ("tiny-ffdnet (denoiser, zoo:tiny-ffdnet): ffdnet, trained on awgn:0-75 noise for 5 "
            "steps; a tiny denoiser") in capsys.readouterr().out

    # A codec and a denoiser never share a name's directory; a name is one plain component.
    with pytest.raises(FileExistsError, match="tiny-ffdnet is a denoiser's entry, not a codec's"):
        build_entry(entry["checkpoint"], "tiny-ffdnet", root)
    with pytest.raises(FileExistsError, match="tiny-jicd exists and is not a denoiser's entry"):
        build_entry(checkpoint, "tiny-jicd", entry["root"], overwrite=True)
    assert zoo.available(entry["root"]) == {"tiny-jicd": (2,)}
    for name in ("", ".", "..", "a/b", "a:b", ".hidden", "tiny-jicd/rate_point_2"):
        with pytest.raises(ValueError, match=f"zoo name {name!r}: expected letters"):
            build_entry(checkpoint, name, entry["root"], overwrite=True)
    assert sorted(p.name for p in entry["root"].iterdir()) == ["latent_tables.bin", "tiny-jicd"]


def test_a_denoiser_entry_names_its_donor_and_a_warm_restart_keeps_it(tmp_path, monkeypatch):
    monkeypatch.setenv("JDC_ZOO_ROOT", str(tmp_path / "weights"))
    root = tmp_path / "weights"
    _, _, donor = _tiny_ffdnet_checkpoint(tmp_path / "sigma50_run", step=2)
    _, _, tuned = _tiny_ffdnet_checkpoint(tmp_path / "tuned", step=5,
                                          init_from=f"{donor}/checkpoints/2")
    build_entry(tuned, "tiny-ffdnet", root)
    named = {"name": "sigma50_run", "rate_point": None}
    assert zoo.denoiser_card("tiny-ffdnet")["init_from"] == named
    # Machine B continues the run from the entry (init_step 5): the card keeps the donor.
    _, _, restarted = _tiny_ffdnet_checkpoint(tmp_path / "restart", step=8,
                                              init_from="zoo:tiny-ffdnet", init_step=5)
    build_entry(restarted, "tiny-ffdnet", root, overwrite=True)
    card = zoo.denoiser_card("tiny-ffdnet")
    assert (card["training_steps"], card["init_from"]) == (8, named)
    assert sorted(p.name for p in root.iterdir()) == ["tiny-ffdnet"]  # no staging left
    _, _, other = _tiny_ffdnet_checkpoint(tmp_path / "other", step=3, init_from="zoo:x:2")
    build_entry(other, "tiny-other", root)
    assert zoo.denoiser_card("tiny-other")["init_from"] == {"name": "x", "rate_point": 2}


def test_the_stored_latent_tables_stand_when_a_rebuild_differs_only_at_near_ties(tmp_path):
    """A machine whose normal CDF differs in the last bits moves a count between two near-tied
    bins of a table: the zoo's stored file still stands (and is the one used); any larger
    difference is refused."""
    rows = [np.array([30000, 20000, 15536])] * 100
    built = CodingTables.from_rows(rows, np.full(100, -1))

    def stored_with(changes):
        changed = [row.copy() for row in rows]
        for table, counts in changes.items():
            changed[table] = np.array(counts)
        tables = CodingTables.from_rows(changed, np.full(100, -1))
        root = tmp_path / f"zoo{len(list(tmp_path.iterdir()))}"
        root.mkdir()
        tables.save(root / zoo.LATENT_TABLES_FILE)
        return root, tables

    root, stored = stored_with({7: [30001, 19999, 15536]})
    assert _shared_latent_tables(root, built).digest() == stored.digest() != built.digest()
    for changes in ({7: [30002, 19998, 15536]},                           # 2 counts moved
                    {7: [30001, 19999, 15536], 8: [30001, 19999, 15536]}):  # 2 of 100 tables
        root, _ = stored_with(changes)
        with pytest.raises(ValueError, match="differs from the latent tables this version"):
            _shared_latent_tables(root, built)
