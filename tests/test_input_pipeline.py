"""tf.data input: noise statistics in TF, sources, sharding, size filtering, seeding."""

import logging
import os
import socket
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from jdc_jax import data_sources, images
from jdc_jax import input_pipeline
from jdc_jax import noise
from jdc_jax.noise import tf_noise

DOCUMENTED_PRACTICAL_MEDIAN_STD = {"R": 14.0, "G": 9.6, "B": 13.4}


def write_folder(folder, arrays: dict) -> str:
    for name, array in arrays.items():
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        images.write_png(path, array)
    return str(folder)


def uniform_image(value: int, height: int = 24, width: int = 24) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def textured_image(seed: int, size: int = 24, low: int = 0, high: int = 256) -> np.ndarray:
    return np.random.default_rng(seed).integers(low, high, (size, size, 3), dtype=np.uint8)


def first_batches(dataset, count: int) -> list[dict]:
    iterator = dataset.as_numpy_iterator()
    return [next(iterator) for _ in range(count)]


def noise_over_seeds(spec: str, level: int, count: int, size: int, quantized: bool) -> np.ndarray:
    """`count` noisy versions of a grey image, one per stateless seed, made inside tf.data."""
    parsed = noise.parse_noise_spec(spec)
    clean = tf.fill([size, size, 3], tf.constant(level, tf.uint8))
    synthesize = tf_noise.add_noise_tf if quantized else \
        tf_noise.synthesize_unclipped_tf

    def noisy(index):
        return synthesize(clean, parsed, tf.stack([index, tf.constant(7, tf.int64)]))

    dataset = tf.data.Dataset.range(count).map(noisy, num_parallel_calls=tf.data.AUTOTUNE)
    return np.stack(list(dataset.as_numpy_iterator()))


# ----------------------------------------------------------------------------- noise in TF

@pytest.mark.parametrize("sigma", [15, 25])
def test_pipeline_awgn_std_at_mid_grey_is_sigma_within_2_percent(tmp_path, sigma):
    folder = write_folder(tmp_path, {"a.png": uniform_image(128, 40, 40),
                                     "b.png": uniform_image(128, 40, 40)})
    dataset = input_pipeline.create_train_dataset(
        f"folder:{folder}", f"awgn:{sigma}", batch_size=16, crop_size=32, seed=0)
    batch = first_batches(dataset, 1)[0]
    assert batch["noisy"].dtype == np.uint8 and batch["noisy"].shape == (16, 32, 32, 3)
    measured = np.std(batch["noisy"].astype(np.float64) - batch["clean"])
    assert measured == pytest.approx(sigma, rel=0.02)


def test_tf_awgn_sigma_50_before_clipping_has_std_50_within_2_percent():
    unclipped = noise_over_seeds("awgn:50", 128, count=8, size=48, quantized=False)
    assert np.std(unclipped - 128) == pytest.approx(50, rel=0.02)


@pytest.mark.parametrize("level", [64, 128, 192])
def test_tf_poisson_gaussian_variance_is_a_y_plus_b_within_5_percent(level):
    a, b = 0.04, 0.0016
    z = noise_over_seeds(f"poisson_gaussian:{a},{b}", level, count=8, size=48,
                         quantized=False) / 255.0
    assert np.var(z) == pytest.approx(a * level / 255 + b, rel=0.05)
    assert np.mean(z) == pytest.approx(level / 255, abs=0.002)


def test_tf_practical_median_std_at_mid_grey_is_near_documented_figures():
    # Tolerance 6%, as for the numpy version: the interpolated tables' exact medians are up to
    # 2% below the documented rounded figures, plus ~3 standard errors of a 4000-draw median.
    noisy = noise_over_seeds("practical", 128, count=4000, size=8, quantized=True)
    assert noisy.dtype == np.uint8
    medians = np.median(np.std(noisy.astype(np.float64) - 128, axis=(1, 2)), axis=0)
    for channel, median in zip(noise.CHANNELS, medians):
        assert median == pytest.approx(DOCUMENTED_PRACTICAL_MEDIAN_STD[channel], rel=0.06)


def test_tf_inverse_cdfs_equal_the_numpy_ones_including_shorter_tables():
    parameters = noise.PracticalNoiseParameters.from_quantile_tables()
    tables = [table for channel in parameters.channels
              for table in (channel.a, channel.slope, channel.intercept)]
    tables += [noise.InverseCDF.from_samples(np.geomspace(1e-4, 1e-2, 5), log_space=True),
               noise.InverseCDF.from_samples(np.linspace(-1, 1, 40) ** 3)]
    levels, values = tf_noise._inverse_cdf_rows_tf(tables)
    uniforms = np.concatenate([np.linspace(0, 0.999999, 101), noise.SIDD_QUANTILE_LEVELS[:-1]])
    for u in uniforms:
        drawn = tf_noise._interpolate_rows_tf(
            levels, values, tf.fill([len(tables)], tf.constant(u, tf.float64))).numpy()
        drawn = [np.exp(d) if t.log_space else d for d, t in zip(drawn, tables)]
        np.testing.assert_allclose(drawn, [t.sample(u) for t in tables], rtol=1e-12, atol=1e-15)


def test_tf_practical_parameters_have_positive_b_and_a_within_the_tables():
    parameters = noise.PracticalNoiseParameters.from_quantile_tables()
    draw = tf.function(lambda seed: tf_noise._draw_practical_tf(parameters, seed))
    a, b = zip(*(draw(tf.constant([seed, 1], tf.int64)) for seed in range(200)))
    a, b = np.stack(a), np.stack(b)
    assert np.all(b > 0)
    for index, channel in enumerate(noise.CHANNELS):
        table = noise.SIDD_QUANTILES[channel]["a"]
        assert table[0] <= a[:, index].min() and a[:, index].max() <= table[-1]


def test_tf_quantization_clips_and_rounds_to_uint8():
    values = tf.constant([-3.0, 0.4, 0.6, 1.5, 2.5, 127.49, 254.6, 300.0])
    quantized = tf_noise.quantize_8bit_tf(values).numpy()
    assert quantized.dtype == np.uint8
    np.testing.assert_array_equal(quantized, [0, 0, 1, 2, 2, 127, 255, 255])


# ----------------------------------------------------------------------------- the chain

def test_same_seed_gives_the_same_batches_and_another_seed_other_batches(tmp_path):
    folder = write_folder(tmp_path, {f"{i}.png": textured_image(i) for i in range(3)})

    def batches(seed):
        return first_batches(input_pipeline.create_train_dataset(
            f"folder:{folder}", "awgn:25", batch_size=4, crop_size=16, seed=seed), 2)

    first, again, other = batches(1), batches(1), batches(2)
    for key in ("noisy", "clean"):
        for a, b in zip(first, again):
            np.testing.assert_array_equal(a[key], b[key])
    assert np.any(first[0]["noisy"] != other[0]["noisy"])


def test_two_processes_read_disjoint_halves_of_the_files(tmp_path):
    values = [10, 20, 30, 40, 50, 60]
    folder = write_folder(tmp_path, {f"{i}.png": uniform_image(v) for i, v in enumerate(values)})

    def seen(process_index):
        dataset = input_pipeline.create_train_dataset(
            f"folder:{folder}", "none", batch_size=3, crop_size=16, seed=0,
            process_index=process_index, process_count=2)
        return {int(v) for batch in first_batches(dataset, 4) for v in np.unique(batch["clean"])}

    assert seen(0) == {10, 30, 50}
    assert seen(1) == {20, 40, 60}


def test_images_smaller_than_the_crop_are_dropped_and_counted(tmp_path, caplog):
    folder = write_folder(tmp_path, {
        "big1.png": uniform_image(100, 40, 40), "big2.png": uniform_image(200, 32, 50),
        "small1.png": uniform_image(1, 20, 20), "small2.png": uniform_image(2, 40, 31)})
    caplog.set_level(logging.INFO)
    dataset = input_pipeline.create_train_dataset(
        f"folder:{folder}", "none", batch_size=4, crop_size=32, seed=0)
    assert "dropped 2 of 4 images smaller than the 32x32 crop" in caplog.text
    seen = {int(v) for batch in first_batches(dataset, 2) for v in np.unique(batch["clean"])}
    assert seen == {100, 200}


def test_every_image_smaller_than_the_crop_is_an_error(tmp_path):
    folder = write_folder(tmp_path, {"a.png": uniform_image(1, 20, 20),
                                     "b.png": uniform_image(2, 31, 64)})
    with pytest.raises(ValueError, match="all 2 images are smaller than the 32x32 crop"):
        input_pipeline.create_train_dataset(
            f"folder:{folder}", "none", batch_size=1, crop_size=32, seed=0)


def test_bad_sources_raise_naming_the_source(tmp_path):
    def create(source, noise_spec="none", **overrides):
        arguments = dict(batch_size=1, crop_size=8, seed=0) | overrides
        return input_pipeline.create_train_dataset(source, noise_spec, **arguments)

    with pytest.raises(ValueError, match="unknown data source 's3:bucket'"):
        create("s3:bucket")
    with pytest.raises(ValueError, match=f"does not exist: {tmp_path / 'missing'}"):
        create(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=f"no images .* found in {tmp_path}"):
        create(f"folder:{tmp_path}")
    deep = tmp_path / "deep"
    deep.mkdir()
    tf.io.write_file(str(deep / "a.png"), tf.io.encode_png(tf.zeros([16, 16, 3], tf.uint16)))
    with pytest.raises(ValueError, match=f"16-bit images are not supported: {deep / 'a.png'}"):
        create(f"folder:{deep}")
    with pytest.raises(ValueError, match="builtin takes no argument"):
        create("builtin:astronaut")
    with pytest.raises(ValueError, match="needs a dataset name"):
        create("tfds:")
    with pytest.raises(ValueError, match="unknown noise kind"):
        create("builtin", "gaussian:3")
    with pytest.raises(ValueError, match="clean_fraction"):
        create("builtin", clean_fraction=1.5)
    with pytest.raises(ValueError, match="crop_size >= 161"):
        create("builtin", msssim_min=0.8, crop_size=64)
    with pytest.raises(ValueError, match="process_index 2"):
        create("builtin", process_index=2, process_count=2)


def test_paired_crops_are_taken_at_the_same_place(tmp_path):
    clean = {f"{i}.png": textured_image(i, size=40, high=200) for i in range(2)}
    noisy = {name: image + 7 for name, image in clean.items()}
    noisy_dir = write_folder(tmp_path / "noisy", noisy)
    clean_dir = write_folder(tmp_path / "clean", clean)
    dataset = input_pipeline.create_train_dataset(
        f"paired:{noisy_dir},{clean_dir}", "none", batch_size=4, crop_size=16, seed=0)
    for batch in first_batches(dataset, 2):
        np.testing.assert_array_equal(batch["noisy"].astype(int) - batch["clean"], 7)
        assert len(np.unique(batch["clean"])) > 100  # real texture, not a constant


def test_paired_folders_list_unmatched_names_and_refuse_synthetic_noise(tmp_path):
    noisy_dir = write_folder(tmp_path / "noisy", {"a.png": uniform_image(1),
                                                  "extra.png": uniform_image(2)})
    clean_dir = write_folder(tmp_path / "clean", {"a.jpg": uniform_image(1)})
    source = f"paired:{noisy_dir},{clean_dir}"
    with pytest.raises(ValueError, match=r"1 names match; unmatched noisy: \['extra'\]"):
        input_pipeline.create_train_dataset(source, "none", batch_size=1, crop_size=8, seed=0)
    with pytest.raises(ValueError, match="paired data carries real noise"):
        input_pipeline.create_train_dataset(source, "awgn:25", batch_size=1, crop_size=8,
                                            seed=0)
    other_dir = write_folder(tmp_path / "other", {"b.png": uniform_image(1)})
    with pytest.raises(ValueError, match="0 names match"):
        input_pipeline.create_train_dataset(f"paired:{noisy_dir},{other_dir}", "none",
                                            batch_size=1, crop_size=8, seed=0)


def test_msssim_filter_keeps_only_pairs_similar_enough(tmp_path):
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, 170)[None, :, None] * np.linspace(0, 1, 170)[:, None, None]
    mild_clean = np.repeat(20 + 80 * ramp, 3, axis=-1)     # values in [20, 100]
    harsh_clean = np.repeat(140 + 80 * ramp, 3, axis=-1)   # values in [140, 220]
    clean = {"mild.png": mild_clean, "harsh.png": harsh_clean}
    sigma = {"mild.png": 2.0, "harsh.png": 60.0}
    noisy = {name: image + sigma[name] * rng.standard_normal(image.shape)
             for name, image in clean.items()}
    as_uint8 = lambda arrays: {n: noise.quantize_8bit(a) for n, a in arrays.items()}
    source = (f"paired:{write_folder(tmp_path / 'noisy', as_uint8(noisy))},"
              f"{write_folder(tmp_path / 'clean', as_uint8(clean))}")

    def clean_means(msssim_min):
        dataset = input_pipeline.create_train_dataset(
            source, "none", batch_size=2, crop_size=161, seed=0, msssim_min=msssim_min)
        return np.concatenate([batch["clean"].mean(axis=(1, 2, 3))
                               for batch in first_batches(dataset, 3)])

    unfiltered = clean_means(None)
    assert np.any(unfiltered < 120) and np.any(unfiltered > 120)
    assert np.all(clean_means(0.8) < 120)


def test_clean_fraction_makes_whole_batches_clean_alike_on_every_process(tmp_path):
    folder = write_folder(tmp_path, {f"{i}.png": textured_image(i) for i in range(4)})

    def clean_flags(process_index, clean_fraction):
        dataset = input_pipeline.create_train_dataset(
            f"folder:{folder}", "awgn:25", batch_size=2, crop_size=16, seed=3,
            process_index=process_index, process_count=2, clean_fraction=clean_fraction)
        flags = []
        for batch in first_batches(dataset, 24):
            equal = np.mean(batch["noisy"] == batch["clean"])
            assert equal == 1.0 or equal < 0.1  # all of the batch is clean, or none of it
            flags.append(equal == 1.0)
        return flags

    first_process = clean_flags(0, 0.5)
    assert 0 < sum(first_process) < 24
    assert clean_flags(1, 0.5) == first_process
    assert all(clean_flags(0, 1.0))


def test_tfds_clic_yields_crops_of_its_images(monkeypatch):
    # The mock stands for prepared data: nothing is downloaded, so nothing needs the network.
    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
    with tfds.testing.mock_data(num_examples=6):
        examples = [example["image"] for example in
                    tfds.load("clic", split="train").as_numpy_iterator()]
        dataset = input_pipeline.create_train_dataset(
            "tfds:clic", "none", batch_size=4, crop_size=16, seed=0)
        batches = first_batches(dataset, 2)
    large = [image for image in examples if min(image.shape[:2]) >= 16]
    assert 0 < len(large) < len(examples)  # the mock's random sizes include too-small images

    def is_crop_of_an_example(crop):
        for image in large:
            windows = np.lib.stride_tricks.sliding_window_view(image, crop.shape)
            if np.any(np.all(windows == crop, axis=(-3, -2, -1))):
                return True
        return False

    crops = [crop for batch in batches for crop in batch["clean"]]
    assert all(is_crop_of_an_example(crop) for crop in crops)


def test_iterator_restored_from_a_checkpoint_continues_with_the_same_batch(tmp_path):
    folder = write_folder(tmp_path / "images", {f"{i}.png": textured_image(i) for i in range(3)})

    def dataset():
        return input_pipeline.create_train_dataset(
            f"folder:{folder}", "practical", batch_size=2, crop_size=16, seed=0,
            clean_fraction=0.3)

    iterator = iter(dataset())
    next(iterator), next(iterator)
    saved = tf.train.Checkpoint(iterator=iterator).write(str(tmp_path / "state"))
    expected = next(iterator)
    restored = iter(dataset())
    tf.train.Checkpoint(iterator=restored).read(saved).assert_consumed()
    actual = next(restored)
    for key in ("noisy", "clean"):
        np.testing.assert_array_equal(actual[key].numpy(), expected[key].numpy())


def test_builtin_source_and_grey_or_rgba_files_give_rgb_crops(tmp_path):
    for path in data_sources.source_files(data_sources.parse_data_source("builtin"))["clean"]:
        assert images.image_size(path)
    batch = first_batches(input_pipeline.create_train_dataset(
        "builtin", "awgn:15", batch_size=2, crop_size=64, seed=0), 1)[0]
    assert batch["clean"].shape == (2, 64, 64, 3) and batch["clean"].dtype == np.uint8

    grey = textured_image(0)[..., 0]
    rgba = np.concatenate([uniform_image(50), np.zeros((24, 24, 1), np.uint8)], axis=-1)
    folder = tmp_path / "mixed"
    folder.mkdir()
    tf.io.write_file(str(folder / "grey.png"), tf.io.encode_png(grey[..., None]))
    tf.io.write_file(str(folder / "rgba.png"), tf.io.encode_png(rgba))
    batch = first_batches(input_pipeline.create_train_dataset(
        f"folder:{folder}", "none", batch_size=8, crop_size=16, seed=0), 1)[0]
    clean = batch["clean"]
    assert clean.shape == (8, 16, 16, 3)
    assert np.all(clean[..., 0] == clean[..., 1]) and np.all(clean[..., 1] == clean[..., 2])
    assert {int(v) for v in np.unique(clean)} >= {50} and len(np.unique(clean)) > 2


def test_folder_images_are_named_by_their_path_relative_to_the_folder(tmp_path):
    write_folder(tmp_path, {"b.png": uniform_image(5, 3, 4), "sub/a.png": uniform_image(9),
                            "other/a.png": uniform_image(9)})
    loaded = images.load_folder(tmp_path)
    assert [name for name, _ in loaded] == ["b.png", "other/a.png", "sub/a.png"]
    assert loaded[0][1].shape == (3, 4, 3) and int(loaded[2][1][0, 0, 0]) == 9


def test_training_evaluation_and_the_evaluation_tool_see_the_same_noisy_images(tmp_path):
    """Both name an image by its path relative to the dataset (the noise seed): nested folders
    get the same noise in both, and equal file names in two folders get different noise."""
    from jdc_jax import evaluate

    write_folder(tmp_path, {"x/a.png": uniform_image(128, 32, 32),
                            "y/a.png": uniform_image(128, 32, 32)})
    spec = noise.parse_noise_spec("awgn:25")
    training_side = {name: noise.noisy_for_file(image, name, spec, 0)
                     for name, image in images.load_folder(tmp_path)}
    tool_side = {name: noise.noisy_for_file(image, name, spec, 0)
                 for name, image in evaluate.load_dataset(f"folder:{tmp_path}")}
    assert sorted(training_side) == sorted(tool_side) == ["x/a.png", "y/a.png"]
    for name in training_side:
        np.testing.assert_array_equal(training_side[name], tool_side[name])
    assert not np.array_equal(training_side["x/a.png"], training_side["y/a.png"])


def test_noise_level_is_the_drawn_awgn_sigma_and_zero_for_clean_batches(tmp_path):
    folder = write_folder(tmp_path, {f"{i}.png": textured_image(i, 64, 60, 200) for i in range(4)})
    dataset = input_pipeline.create_train_dataset(
        f"folder:{folder}", "awgn:10-40", batch_size=4, crop_size=32, seed=3,
        with_noise_level=True)
    batch = first_batches(dataset, 1)[0]
    levels = batch["noise_level"]
    assert levels.shape == (4,) and levels.dtype == np.float32
    assert np.all((levels >= 10) & (levels <= 40)) and len(np.unique(levels)) == 4
    measured = np.std(batch["noisy"].astype(np.float64) - batch["clean"], axis=(1, 2, 3))
    np.testing.assert_allclose(measured, levels, rtol=0.1)  # 32x32x3 samples, no clipping
    clean_batches = input_pipeline.create_train_dataset(
        f"folder:{folder}", "awgn:10-40", batch_size=4, crop_size=32, seed=3, clean_fraction=1.0,
        with_noise_level=True)
    batch = first_batches(clean_batches, 1)[0]
    np.testing.assert_array_equal(batch["noise_level"], 0.0)
    np.testing.assert_array_equal(batch["noisy"], batch["clean"])


def refuse_connections(monkeypatch) -> list:
    """Makes every TCP connection of this process fail as on a machine without a network;
    returns the list of (host, port) tried."""
    tried = []

    def unreachable(address, *args, **kwargs):
        tried.append(address)
        raise OSError(101, "Network is unreachable")
    monkeypatch.setattr(socket, "create_connection", unreachable)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                 "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return tried


def test_tfds_data_neither_prepared_nor_downloadable_fails_at_once_naming_the_fixes(
        tmp_path, monkeypatch):
    tried = refuse_connections(monkeypatch)
    start = time.perf_counter()
    with pytest.raises(data_sources.SourceUnavailable) as refused:
        input_pipeline.create_train_dataset("tfds:clic", "awgn:25", batch_size=2, crop_size=16,
                                            seed=0, data_dir=str(tmp_path))
    assert time.perf_counter() - start < 10.0
    assert str(refused.value) == (
        f"tfds:clic is not in the TFDS data directory {tmp_path} and cannot be downloaded "
        f"(data.vision.ee.ethz.ch:443 unreachable: [Errno 101] Network is unreachable); give "
        f"--config.data_dir=DIR, a TFDS data directory that holds clic, or download its files "
        f"by hand and prepare them with TFDS's manual_dir (README, \"Training data offline\"), "
        f"or train on image files with --config.data_source=folder:PATH")
    assert tried == [("data.vision.ee.ethz.ch", 443)]  # one probe, no retries
    assert os.listdir(tmp_path) == []  # nothing downloaded or half-prepared


def test_the_download_probe_goes_through_the_configured_proxy(tmp_path, monkeypatch):
    tried = refuse_connections(monkeypatch)
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    with pytest.raises(data_sources.SourceUnavailable, match=r"\(proxy.example:3128 unreachable"):
        input_pipeline.check_source_available("tfds:clic", str(tmp_path))
    assert tried == [("proxy.example", 3128)]
    input_pipeline.check_source_available("builtin", None)  # file sources need no network
