"""tf.data training input: image sources and the noise-synthesizing chain.

`create_train_dataset` yields dicts ``{"noisy": uint8 (B, crop, crop, 3), "clean": uint8
(B, crop, crop, 3)}`` in [0, 255], B the per-process batch. The chain, per process:

1. source records (file paths, or encoded images for TFDS), this process's shard only;
2. a header-only size scan of the shard (`images.image_size`): images smaller than the crop are
   dropped and counted in the log, ValueError if none is left (also for 16-bit and non-image
   files, and for paired images of different sizes);
3. shuffle (seeded, reshuffled every epoch), repeat;
4. decode (PNG / JPEG / BMP; grey -> RGB, alpha dropped), random crop, noise synthesis;
5. optionally keep only crops with MS-SSIM(noisy, clean) >= msssim_min;
6. batch(drop_remainder=True); with `clean_fraction`, whole batches become clean -> clean
   (noisy := clean, JDC, Brummer & De Vleeschouwer); prefetch.

Sources (`source` strings):

    builtin                    the colour photographs shipped inside scikit-image (no download)
    folder:PATH                PNG / JPEG / BMP files below PATH (recursive)
    paired:NOISY_DIR,CLEAN_DIR real noisy / clean pairs, matched by their path relative to
                               their folder without extension; the crop is taken at the same
                               place in both; noise must be "none"
    tfds:NAME                  the "train" split of a TFDS dataset with an "image" feature,
                               e.g. tfds:clic (downloaded and prepared on first use)

Sharding: file lists are split by `Dataset.shard(process_count, process_index)`; TFDS splits by
`tfds.even_splits`, so each process reads only its part of the records.

Randomness is stateless and seeded: element i of process p uses the seed
fold_in(fold_in([seed, 0], p + 1), i) for its crop and its noise, and batch k decides
clean -> clean from fold_in(fold_in([seed, 0], 0), k), the same on every process, so a global
batch is clean on all processes at once. The same arguments give the same batches on every run,
and the iterator can be checkpointed with tf.train.Checkpoint.

The noise models are those of `noise` (same spec strings, same distributions), written with
stateless TF ops: `synthesize_unclipped_tf` / `add_noise_tf`.
"""

from __future__ import annotations

import os

import numpy as np
import skimage.data
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from jdc_jax import images
from jdc_jax import noise as noise_lib

SOURCE_KINDS = ("builtin", "folder", "paired", "tfds")
# What tf.io.decode_image reads (PPM, for one, it does not).
TRAIN_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
# The scene photographs in skimage.data's own folder; its greyscale, synthetic, medical,
# microscopy and astronomy images are left out.
BUILTIN_IMAGES = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png",
                  "motorcycle_right.png", "rocket.jpg")
# tf.image.ssim_multiscale: the 11-pixel window must fit the coarsest of its 5 scales.
MSSSIM_MIN_CROP_SIZE = (11 - 1) * 2**4 + 1


def _hide_accelerators_from_tf() -> None:
    """Keeps TF off GPUs, which belong to JAX. Idempotent."""
    if not tf.config.get_visible_devices("GPU"):
        return
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError as error:
        raise RuntimeError("TensorFlow already initialized its GPUs; build the input pipeline "
                           "before running any TF operation") from error


# ----------------------------------------------------------------------------- noise in TF

def _split_seed(seed: tf.Tensor, count: int) -> list[tf.Tensor]:
    return tf.unstack(tf.random.experimental.stateless_split(seed, count))


def _draw_parameter_tf(parameter: noise_lib.Parameter, seed: tf.Tensor) -> tf.Tensor:
    """One float32 draw of a `noise.Choice` or `noise.Interval`."""
    if isinstance(parameter, noise_lib.Interval):
        return tf.random.stateless_uniform([], seed, minval=parameter.low, maxval=parameter.high)
    index = tf.random.stateless_uniform([], seed, minval=0, maxval=len(parameter.values),
                                        dtype=tf.int32)
    return tf.gather(tf.constant(parameter.values, tf.float32), index)


def _inverse_cdf_rows_tf(tables: list[noise_lib.InverseCDF]) -> tuple[tf.Tensor, tf.Tensor]:
    """The tables as rows of (levels, interpolated values), float64 (len(tables), L): shorter
    tables repeat their last entry, which a draw in [0, 1) never reaches."""
    length = max(len(table.levels) for table in tables)

    def padded(row: np.ndarray) -> np.ndarray:
        return np.pad(row, (0, length - len(row)), mode="edge")

    return (tf.constant(np.stack([padded(t.levels) for t in tables]), tf.float64),
            tf.constant(np.stack([padded(t.interpolated_values) for t in tables]), tf.float64))


def _interpolate_rows_tf(levels: tf.Tensor, values: tf.Tensor, uniform: tf.Tensor) -> tf.Tensor:
    """Row r: interp(uniform[r], levels[r], values[r]) (piecewise linear), float64 (R,)."""
    upper = tf.clip_by_value(tf.searchsorted(levels, uniform[:, None], side="right")[:, 0],
                             1, levels.shape[1] - 1)
    lower = upper - 1

    def at(table, index):
        return tf.gather(table, index[:, None], batch_dims=1)[:, 0]

    weight = (uniform - at(levels, lower)) / (at(levels, upper) - at(levels, lower))
    return at(values, lower) + weight * (at(values, upper) - at(values, lower))


def _draw_practical_tf(parameters: noise_lib.PracticalNoiseParameters,
                       seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-channel (a, b), float64 (3,): `noise.PracticalNoiseParameters.sample` in TF.

    All 9 inverse CDFs (channel-major: a, slope, intercept) are interpolated at once; a channel
    whose b <= 0 redraws its three parameters, the others keep theirs."""
    tables = [table for channel in parameters.channels
              for table in (channel.a, channel.slope, channel.intercept)]
    levels, values = _inverse_cdf_rows_tf(tables)
    log_space = tf.constant([table.log_space for table in tables])
    channels = len(parameters.channels)

    def draw(attempt):
        uniform = tf.random.stateless_uniform(
            [len(tables)], tf.random.experimental.stateless_fold_in(seed, attempt),
            dtype=tf.float64)
        drawn = _interpolate_rows_tf(levels, values, uniform)
        a, slope, intercept = tf.unstack(
            tf.reshape(tf.where(log_space, tf.exp(drawn), drawn), [channels, 3]), axis=1)
        return a, slope * a + intercept

    def redraw(attempt, a, b):
        new_a, new_b = draw(attempt + 1)
        rejected = b <= 0
        return attempt + 1, tf.where(rejected, new_a, a), tf.where(rejected, new_b, b)

    a, b = draw(tf.constant(0, tf.int64))
    _, a, b = tf.while_loop(lambda attempt, a, b: tf.reduce_any(b <= 0), redraw,
                            (tf.constant(0, tf.int64), a, b))
    return a, b


def synthesize_unclipped_tf(clean: tf.Tensor, spec: noise_lib.NoiseSpec,
                            seed: tf.Tensor) -> tf.Tensor:
    """`noise.synthesize_unclipped` in TF: float32 (H, W, 3), 8-bit units, before clipping.

    clean: uint8 (H, W, 3); seed: int64 (2,) stateless seed."""
    x = tf.cast(clean, tf.float32)
    if spec.kind == "none":
        return x
    parameter_seed, poisson_seed, normal_seed = _split_seed(seed, 3)
    if spec.kind == "awgn":
        sigma = _draw_parameter_tf(spec.sigma, parameter_seed)
        return x + sigma * tf.random.stateless_normal(tf.shape(x), normal_seed)
    if spec.kind == "poisson_gaussian":
        a_seed, b_seed = _split_seed(parameter_seed, 2)
        a = _draw_parameter_tf(spec.poisson_scale, a_seed)
        b = _draw_parameter_tf(spec.gaussian_variance, b_seed)
    elif spec.kind == "practical":
        a, b = _draw_practical_tf(spec.practical_parameters(), parameter_seed)
        a, b = tf.cast(a, tf.float32), tf.cast(b, tf.float32)
    else:
        raise ValueError(f"unknown noise kind {spec.kind!r}")
    y = x / 255.0
    counts = tf.random.stateless_poisson(tf.shape(y), poisson_seed, lam=tf.maximum(y, 0.0) / a,
                                         dtype=tf.float32)
    z = a * counts + tf.sqrt(b) * tf.random.stateless_normal(tf.shape(y), normal_seed)
    return 255.0 * z


def quantize_8bit_tf(noisy: tf.Tensor) -> tf.Tensor:
    """`noise.quantize_8bit` in TF: clip to [0, 255], round half to even, uint8."""
    return tf.cast(tf.round(tf.clip_by_value(noisy, 0.0, 255.0)), tf.uint8)


def add_noise_tf(clean: tf.Tensor, spec: noise_lib.NoiseSpec, seed: tf.Tensor) -> tf.Tensor:
    """`noise.add_noise` in TF: uint8 (H, W, 3) -> noisy uint8 (H, W, 3)."""
    return quantize_8bit_tf(synthesize_unclipped_tf(clean, spec, seed))


# ----------------------------------------------------------------------------- sources

def _builtin_paths() -> list[str]:
    paths = [os.path.join(skimage.data.data_dir, name) for name in BUILTIN_IMAGES]
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise ValueError(f"builtin: scikit-image does not ship {', '.join(missing)}")
    return paths


def _paired_paths(argument: str) -> tuple[list[str], list[str]]:
    """(noisy, clean) paths matched by their relative path without extension."""
    folders = argument.split(",")
    if len(folders) != 2 or not all(folders):
        raise ValueError(f"paired:{argument}: expected paired:NOISY_DIR,CLEAN_DIR")
    by_name = []
    for folder in folders:
        named = {}
        for path in images.list_images(folder, TRAIN_IMAGE_EXTENSIONS):
            name = os.path.splitext(os.path.relpath(path, folder))[0]
            if name in named:
                raise ValueError(f"paired:{argument}: {named[name]} and {path} share the name "
                                 f"{name!r}")
            named[name] = path
        by_name.append(named)
    noisy, clean = by_name
    noisy_only, clean_only = sorted(noisy.keys() - clean.keys()), sorted(clean.keys() - noisy.keys())
    if noisy_only or clean_only:
        matched = len(noisy.keys() & clean.keys())
        raise ValueError(
            f"paired:{argument}: {matched} names match; unmatched noisy: {noisy_only[:20]}, "
            f"unmatched clean: {clean_only[:20]}"
            + (" (more not shown)" if max(len(noisy_only), len(clean_only)) > 20 else ""))
    names = sorted(noisy)
    return [noisy[n] for n in names], [clean[n] for n in names]


def _tfds_records(name: str, data_dir: str | None, process_index: int,
                  process_count: int) -> tf.data.Dataset:
    """Encoded "image" bytes of this process's part of the TFDS "train" split."""
    builder = tfds.builder(name, data_dir=data_dir)
    if "image" not in builder.info.features:
        raise ValueError(f"tfds:{name} has no 'image' feature")
    builder.download_and_prepare()
    split = tfds.even_splits("train", n=process_count)[process_index]
    records = builder.as_dataset(split=split, shuffle_files=False,
                                 decoders={"image": tfds.decode.SkipDecoding()})
    return records.map(lambda example: {"clean": example["image"]})


def _source_records(source: str, data_dir: str | None, process_index: int,
                    process_count: int) -> tuple[tf.data.Dataset, bool]:
    """This process's records {"clean"[, "noisy"]}: file paths, or encoded images (the flag)."""
    kind, _, argument = source.partition(":")
    if kind not in SOURCE_KINDS:
        raise ValueError(f"unknown data source {source!r}; expected builtin, folder:PATH, "
                         "paired:NOISY_DIR,CLEAN_DIR or tfds:NAME")
    if kind == "tfds":
        if not argument:
            raise ValueError("tfds: needs a dataset name, e.g. tfds:clic")
        return _tfds_records(argument, data_dir, process_index, process_count), True
    if kind == "builtin":
        if argument:
            raise ValueError(f"{source!r}: builtin takes no argument")
        paths = {"clean": _builtin_paths()}
    elif kind == "folder":
        if not argument:
            raise ValueError("folder: needs a path, e.g. folder:/data/clic")
        paths = {"clean": images.list_images(argument, TRAIN_IMAGE_EXTENSIONS)}
    else:
        noisy, clean = _paired_paths(argument)
        paths = {"noisy": noisy, "clean": clean}
    records = tf.data.Dataset.from_tensor_slices(paths)
    return records.shard(process_count, process_index), False


def _croppable(records: tf.data.Dataset, encoded: bool, crop_size: int, source: str,
               process_index: int, process_count: int) -> np.ndarray:
    """Per record, whether its image holds a crop; reads headers only. Logs the drop count."""

    def size(value: bytes, index: int) -> tuple[int, int]:
        if not encoded:
            return images.image_size(os.fsdecode(value))
        try:
            return images.image_size(value)
        except ValueError as error:
            raise ValueError(f"{source}: record {index}: {error}") from error

    logging.info("%s: reading the image sizes of process %d's shard", source, process_index)
    keep = []
    for index, record in enumerate(records.as_numpy_iterator()):
        height, width = size(record["clean"], index)
        if "noisy" in record and size(record["noisy"], index) != (height, width):
            raise ValueError(f"{source}: {os.fsdecode(record['noisy'])} and "
                             f"{os.fsdecode(record['clean'])} differ in size")
        keep.append(min(height, width) >= crop_size)
    where = f"{source} (process {process_index} of {process_count})"
    if not keep:
        raise ValueError(f"{where}: no images in this process's shard")
    dropped = len(keep) - sum(keep)
    if dropped == len(keep):
        raise ValueError(f"{where}: all {len(keep)} images are smaller than the "
                         f"{crop_size}x{crop_size} crop")
    log = logging.warning if dropped else logging.info
    log("%s: dropped %d of %d images smaller than the %dx%d crop", where, dropped, len(keep),
        crop_size, crop_size)
    return np.array(keep)


# ----------------------------------------------------------------------------- the chain

def _check_arguments(batch_size, crop_size, seed, process_index, process_count, clean_fraction,
                     msssim_min, shuffle_buffer) -> None:
    if batch_size < 1 or crop_size < 1 or shuffle_buffer < 1:
        raise ValueError(f"batch_size ({batch_size}), crop_size ({crop_size}) and "
                         f"shuffle_buffer ({shuffle_buffer}) must be positive")
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} is not in [0, {process_count})")
    if not 0.0 <= clean_fraction <= 1.0:
        raise ValueError(f"clean_fraction must be in [0, 1], got {clean_fraction}")
    if msssim_min is not None:
        if not 0.0 < msssim_min <= 1.0:
            raise ValueError(f"msssim_min must be in (0, 1], got {msssim_min}")
        if crop_size < MSSSIM_MIN_CROP_SIZE:
            raise ValueError(f"msssim_min needs crop_size >= {MSSSIM_MIN_CROP_SIZE} (5-scale "
                             f"MS-SSIM with an 11-pixel window), got {crop_size}")


def _random_crop(image: tf.Tensor, top: tf.Tensor, left: tf.Tensor, crop_size: int) -> tf.Tensor:
    crop = image[top:top + crop_size, left:left + crop_size]
    return tf.ensure_shape(crop, [crop_size, crop_size, 3])


def create_train_dataset(source: str, noise: str, *, batch_size: int, crop_size: int, seed: int,
                         process_index: int = 0, process_count: int = 1,
                         clean_fraction: float = 0.0, msssim_min: float | None = None,
                         shuffle_buffer: int = 256, data_dir: str | None = None
                         ) -> tf.data.Dataset:
    """The infinite training stream of this process (see the module docstring).

    Args:
      source: builtin, folder:PATH, paired:NOISY_DIR,CLEAN_DIR or tfds:NAME.
      noise: a `noise.parse_noise_spec` string; "none" for paired sources.
      batch_size: per-process batch size B.
      crop_size: side of the square random crops; smaller images are dropped.
      seed: seeds shuffling, crops, noise and clean -> clean batches.
      process_index, process_count: this process's shard of the source.
      clean_fraction: probability that a batch is clean -> clean (noisy := clean).
      msssim_min: keep only crops whose MS-SSIM(noisy, clean) is at least this, computed by
        tf.image.ssim_multiscale on the cropped pair (needs crop_size >= 161); meant for paired
        data, where it drops pairs too noisy to learn from (JDC: 0.8). Every crop failing it
        stalls the stream.
      shuffle_buffer: shuffle buffer size in records (paths, or encoded images for TFDS).
      data_dir: TFDS data directory.

    Returns:
      A tf.data.Dataset of {"noisy", "clean"}: uint8 (B, crop_size, crop_size, 3), [0, 255].
    """
    _check_arguments(batch_size, crop_size, seed, process_index, process_count, clean_fraction,
                     msssim_min, shuffle_buffer)
    spec = noise_lib.parse_noise_spec(noise)
    paired = source.partition(":")[0] == "paired"
    if paired and spec.kind != "none":
        raise ValueError(f"{source}: paired data carries real noise; use noise 'none', "
                         f"not {noise!r}")
    _hide_accelerators_from_tf()

    records, encoded = _source_records(source, data_dir, process_index, process_count)
    keep = tf.constant(_croppable(records, encoded, crop_size, source, process_index,
                                  process_count))
    records = records.enumerate().filter(lambda index, _: keep[index]).map(lambda _, r: r)
    records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()

    root_seed = tf.constant([seed, 0], tf.int64)
    process_seed = tf.random.experimental.stateless_fold_in(root_seed, process_index + 1)
    batch_seed = tf.random.experimental.stateless_fold_in(root_seed, 0)

    def decode(record: tf.Tensor) -> tf.Tensor:
        data = record if encoded else tf.io.read_file(record)
        return tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)

    def make_example(index, record):
        crop_seed, noise_seed = _split_seed(
            tf.random.experimental.stateless_fold_in(process_seed, index), 2)
        clean = decode(record["clean"])
        top_seed, left_seed = _split_seed(crop_seed, 2)
        shape = tf.shape(clean)
        top = tf.random.stateless_uniform([], top_seed, minval=0,
                                          maxval=shape[0] - crop_size + 1, dtype=tf.int32)
        left = tf.random.stateless_uniform([], left_seed, minval=0,
                                           maxval=shape[1] - crop_size + 1, dtype=tf.int32)
        clean = _random_crop(clean, top, left, crop_size)
        if paired:
            noisy = _random_crop(decode(record["noisy"]), top, left, crop_size)
        else:
            noisy = add_noise_tf(clean, spec, noise_seed)
        return {"noisy": noisy, "clean": clean}

    def similar_enough(example):
        similarity = tf.image.ssim_multiscale(tf.cast(example["noisy"], tf.float32),
                                              tf.cast(example["clean"], tf.float32), 255.0)
        return similarity >= msssim_min

    def clean_to_clean(index, batch):
        uniform = tf.random.stateless_uniform(
            [], tf.random.experimental.stateless_fold_in(batch_seed, index))
        noisy = tf.where(uniform < clean_fraction, batch["clean"], batch["noisy"])
        return {"noisy": noisy, "clean": batch["clean"]}

    examples = records.enumerate().map(make_example, num_parallel_calls=tf.data.AUTOTUNE)
    if msssim_min is not None:
        examples = examples.filter(similar_enough)
    batches = examples.batch(batch_size, drop_remainder=True)
    if clean_fraction > 0:
        batches = batches.enumerate().map(clean_to_clean, num_parallel_calls=tf.data.AUTOTUNE)
    logging.info("input pipeline: %s, noise %s, %d crops of %dx%d per batch, process %d of %d",
                 source, spec.text, batch_size, crop_size, crop_size, process_index,
                 process_count)
    return batches.prefetch(tf.data.AUTOTUNE)


def as_numpy(dataset: tf.data.Dataset):
    """Iterates a dataset as numpy arrays (dicts of np.ndarray for `create_train_dataset`)."""
    return dataset.as_numpy_iterator()


def create_eval_images(folder: str) -> list[tuple[str, np.ndarray]]:
    """Held-out images: (path relative to `folder` with '/' separators, uint8 (H, W, 3)),
    sorted by path; ValueError if the folder is missing or holds no image."""
    return [(os.path.relpath(path, folder).replace(os.sep, "/"), images.read_image(path))
            for path in images.list_images(folder)]
