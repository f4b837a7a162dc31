"""The model zoo: entries built from checkpoints, loading by name, the CLI's --model, and the
models shipped in the package."""

import jax
import numpy as np
import pytest

from conftest import TINY_FIELDS, generated_image, load_config, save_checkpoint, tiny, tiny_model
from jdc_jax import checkpoints, images, train, zoo
from jdc_jax.__main__ import main
from jdc_jax.codec import Codec, file_format
from jdc_jax.models import registry
from jdc_jax.zoo.build import build_entry, donor_record, float16_params

SHIPPED_NAME = "jicd-sigma25"
SHIPPED_RATE_POINTS = (1,)  # the campaign's ladder so far (results/campaign/README.md)


@pytest.fixture(scope="module")
def entry(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo")
    _, params = tiny_model("jicd")
    checkpoint = save_checkpoint(folder / "run", "jicd", params, rate_point=2)
    root = folder / "weights"
    directory = build_entry(checkpoint, "tiny-jicd", root, description="a tiny test model")
    return dict(folder=folder, root=root, directory=directory, params=params,
                checkpoint=checkpoint)


def test_entry_holds_float16_params_that_load_as_exactly_their_float32_values(entry):
    loaded = zoo.load_params(entry["directory"])
    flat_original = float16_params(entry["params"])
    with np.load(entry["directory"] / zoo.PARAMS_FILE) as stored:
        assert sorted(stored.files) == sorted(flat_original)
        for key in stored.files:
            assert stored[key].dtype == np.float16
    for key, value in flat_original.items():
        node = loaded
        for part in key.split("/"):
            node = node[part]
        assert node.dtype == np.float32
        np.testing.assert_array_equal(node, value.astype(np.float32))


def test_loaded_entry_round_trips_and_its_card_names_its_model_id(entry):
    codec = zoo.load("tiny-jicd", rate_point=2, root=entry["root"])
    card = zoo.card("tiny-jicd", root=entry["root"])
    assert card["model_id"] == codec.model_id.hex()
    assert card["rate_point"] == 2 and card["description"] == "a tiny test model"
    assert card["parameters"] == sum(v.size for v in float16_params(entry["params"]).values())
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
        float16_params({"a": {"kernel": np.array([1e5], np.float32)}})


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
        tmp_path, monkeypatch):
    monkeypatch.setenv("JDC_ZOO_ROOT", str(tmp_path / "weights"))
    config = tiny(load_config("configs/jicd.py:smoke"), tmp_path, num_train_steps=2,
                  eval_folder="", rate_point=1)
    train.train_and_evaluate(config, str(tmp_path / "machine_a"))
    build_entry(str(tmp_path / "machine_a"), "tiny-run", tmp_path / "weights")
    # Machine B has the committed entry only: it continues at step 2 from the float16 weights.
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
    train.train_and_evaluate(restart, str(tmp_path / "machine_b"))
    assert checkpoints.restore_params(tmp_path / "machine_b")[2] == 4
    build_entry(str(tmp_path / "machine_b"), "tiny-run", tmp_path / "weights", overwrite=True)
    card = zoo.card("tiny-run", 1)
    assert card["training_steps"] == 4
    assert card["init_from"] is None  # the restart of a from-scratch run names no donor
    assert donor_record("zoo:other:3", "tiny-run", {"rate_point": 1}) == {"name": "other",
                                                                           "rate_point": 3}
