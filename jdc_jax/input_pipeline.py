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
                               e.g. tfds:clic (downloaded and prepared on first use; see
                               `tfds_builder` for a machine that cannot download it)

Sharding: file lists are split by `Dataset.shard(process_count, process_index)`; TFDS splits by
`tfds.even_splits`, so each process reads only its part of the records.

Randomness is stateless and seeded: element i of process p uses the seed
fold_in(fold_in([seed, 0], p + 1), i) for its crop and its noise, and batch k decides
clean -> clean from fold_in(fold_in([seed, 0], 0), k), the same on every process, so a global
batch is clean on all processes at once. The same arguments give the same batches on every run,
and the iterator can be checkpointed with tf.train.Checkpoint.

The noise models are those of `noise` (same spec strings, same distributions), written with
stateless TF ops (`noise.tf_noise`).
"""

from __future__ import annotations

import os
import socket
import urllib.parse
import urllib.request

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from jdc_jax import data_sources, images
from jdc_jax import noise as noise_lib
from jdc_jax.noise.tf_noise import add_noise_tf, noise_level_tf, split_seed

# tf.image.ssim_multiscale: the 11-pixel window must fit the coarsest of its 5 scales.
MSSSIM_MIN_CROP_SIZE = (11 - 1) * 2**4 + 1


def hide_accelerators_from_tf() -> None:
    """Keeps TF off GPUs, which belong to JAX (TF only feeds data). Idempotent; the training
    entry point and `create_train_dataset` call it before any TF operation."""
    if not tf.config.get_visible_devices("GPU"):
        return
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError as error:
        raise RuntimeError("TensorFlow already initialized its GPUs; build the input pipeline "
                           "before running any TF operation") from error


# ----------------------------------------------------------------------------- sources

# Seconds a download host (or the proxy) may take to accept a TCP connection before the data
# counts as not downloadable; a reachable host answers in well under a second.
DOWNLOAD_PROBE_TIMEOUT_S = 5.0


def tfds_builder(name: str, data_dir: str | None):
    """The TFDS builder of `name` in `data_dir` (TFDS's default directory when None), checked
    before anything is downloaded or written.

    It must have an "image" feature (ValueError otherwise). Unless the dataset is already
    prepared in the data directory, every host of its download URLs (TFDS's checksums file; the
    configured proxy instead, when the environment names one) must accept a TCP connection within
    DOWNLOAD_PROBE_TIMEOUT_S. If one does not, `data_sources.SourceUnavailable` says so in one
    line with the three fixes (an existing data directory, a manual download prepared with TFDS's
    manual_dir, or a folder source), in seconds, where TFDS itself would retry
    each download for minutes. A dataset whose URLs TFDS does not list is not probed.
    """
    builder = tfds.builder(name, data_dir=data_dir)
    if "image" not in builder.info.features:
        raise ValueError(f"tfds:{name} has no 'image' feature")
    if builder.is_prepared():
        return builder
    origins = {"{0}://{1}".format(*urllib.parse.urlsplit(url)) for url in builder.url_infos or {}}
    for origin in sorted(origins):
        address, error = _probe_download_host(origin)
        if error is not None:
            raise data_sources.SourceUnavailable(
                f"tfds:{name} is not in the TFDS data directory {builder.data_dir_root} and "
                f"cannot be downloaded ({address} unreachable: {error}); give "
                f"--config.data_dir=DIR, a TFDS data directory that holds {name}, or download "
                f"its files by hand and prepare them with TFDS's manual_dir (README, \"Training "
                f"data offline\"), or train on image files with "
                f"--config.data_source=folder:PATH")
    return builder


def _probe_download_host(url: str) -> tuple[str, OSError | None]:
    """(host:port connected to, the connection error or None) for downloading from `url`."""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = f"{parts.hostname}:{port}"
    try:
        socket.create_connection((parts.hostname, port), timeout=DOWNLOAD_PROBE_TIMEOUT_S).close()
    except OSError as error:
        return address, error
    return address, None


def check_source_available(source: str, data_dir: str | None) -> None:
    """Raises `data_sources.SourceUnavailable` when a tfds: source can neither be read from
    `data_dir` nor downloaded (`tfds_builder`); file sources are checked by config validation.
    Training calls it before it writes anything to its work directory."""
    parsed = data_sources.parse_data_source(source)
    if parsed.kind == "tfds":
        tfds_builder(parsed.tfds_name, data_dir)


def _tfds_records(name: str, data_dir: str | None, process_index: int,
                  process_count: int) -> tf.data.Dataset:
    """Encoded "image" bytes of this process's part of the TFDS "train" split."""
    builder = tfds_builder(name, data_dir)
    builder.download_and_prepare()
    split = tfds.even_splits("train", n=process_count)[process_index]
    records = builder.as_dataset(split=split, shuffle_files=False,
                                 decoders={"image": tfds.decode.SkipDecoding()})
    return records.map(lambda example: {"clean": example["image"]})


def _source_records(source: data_sources.DataSource, data_dir: str | None, process_index: int,
                    process_count: int) -> tuple[tf.data.Dataset, bool]:
    """This process's records {"clean"[, "noisy"]}: file paths, or encoded images (the flag)."""
    if source.kind == "tfds":
        return _tfds_records(source.tfds_name, data_dir, process_index, process_count), True
    records = tf.data.Dataset.from_tensor_slices(data_sources.source_files(source))
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
                         shuffle_buffer: int = 256, data_dir: str | None = None,
                         with_noise_level: bool = False) -> tf.data.Dataset:
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
      data_dir: TFDS data directory (None: TFDS's default); a tfds: source that is neither
        there nor downloadable raises `data_sources.SourceUnavailable` (`tfds_builder`).
      with_noise_level: also yield "noise_level", float32 (B,): each image's noise std in 8-bit
        units (`tf_noise.noise_level_tf`; 0 for clean -> clean batches), for denoisers told the
        level (FFDNet).

    Returns:
      A tf.data.Dataset of {"noisy", "clean"}: uint8 (B, crop_size, crop_size, 3), [0, 255]
      (and "noise_level").
    """
    _check_arguments(batch_size, crop_size, seed, process_index, process_count, clean_fraction,
                     msssim_min, shuffle_buffer)
    spec = noise_lib.parse_noise_spec(noise)
    parsed = data_sources.parse_data_source(source)
    paired = parsed.kind == "paired"
    if paired and spec.kind != "none":
        raise ValueError(f"{source}: paired data carries real noise; use noise 'none', "
                         f"not {noise!r}")
    hide_accelerators_from_tf()

    records, encoded = _source_records(parsed, data_dir, process_index, process_count)
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
        crop_seed, noise_seed = split_seed(
            tf.random.experimental.stateless_fold_in(process_seed, index), 2)
        clean = decode(record["clean"])
        top_seed, left_seed = split_seed(crop_seed, 2)
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
        example = {"noisy": noisy, "clean": clean}
        if with_noise_level:
            example["noise_level"] = noise_level_tf(clean, noisy, spec, noise_seed)
        return example

    def similar_enough(example):
        similarity = tf.image.ssim_multiscale(tf.cast(example["noisy"], tf.float32),
                                              tf.cast(example["clean"], tf.float32), 255.0)
        return similarity >= msssim_min

    def clean_to_clean(index, batch):
        uniform = tf.random.stateless_uniform(
            [], tf.random.experimental.stateless_fold_in(batch_seed, index))
        to_clean = uniform < clean_fraction
        mixed = dict(batch, noisy=tf.where(to_clean, batch["clean"], batch["noisy"]))
        if with_noise_level:
            mixed["noise_level"] = tf.where(to_clean, tf.zeros_like(batch["noise_level"]),
                                            batch["noise_level"])
        return mixed

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
