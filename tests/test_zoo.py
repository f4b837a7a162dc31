"""The model zoo: entries built from checkpoints, loading by name, the CLI's --model, and the
models shipped in the package."""

import numpy as np
import pytest

from conftest import generated_image, save_checkpoint, tiny_model
from jdc_jax import images, zoo
from jdc_jax.__main__ import main
from jdc_jax.codec import Codec, file_format
from jdc_jax.zoo.build import build_entry, float16_params

SHIPPED_NAME = "jicd-small-sigma25"


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
    assert file_format.parse_file(data).header.model_id == codec.model_id
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


@pytest.mark.skipif(SHIPPED_NAME not in zoo.available(), reason="no shipped models")
def test_shipped_models_load_and_their_tables_match_their_cards():
    shipped = zoo.available()
    assert shipped[SHIPPED_NAME] == (2, 3, 4)
    total = sum(p.stat().st_size for p in zoo.WEIGHTS_DIRECTORY.rglob("*") if p.is_file())
    assert total < 30 * 2**20
    codec = zoo.load(SHIPPED_NAME, rate_point=2)
    assert zoo.card(SHIPPED_NAME, 2)["model_id"] == codec.model_id.hex()
    image = generated_image(64, 64, seed=1)
    data = codec.compress(image)
    denoised = codec.decompress(data, "denoised")
    assert denoised.shape == (64, 64, 3) and denoised.dtype == np.uint8
