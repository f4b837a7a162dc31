"""Make a zoo entry from a training checkpoint.

    python -m jdc_jax.zoo.build --checkpoint RUN --name jicd-sigma25 \
        [--description TEXT] [--root jdc_jax/zoo/weights] [--overwrite]

The entry is `ROOT/NAME/rate_point_K/`, K being the checkpoint config's `rate_point` (see
`jdc_jax.zoo` for its files); a denoiser's (`registry.DENOISER_KINDS`) is `ROOT/NAME/`, with no
tables. Convolution kernels are stored as int8 with a float16 scale per output channel, the other
parameters as float16 (a value outside float16's finite range is an error), and the coding
tables and the model identifier are computed from the stored values, so the entry describes
exactly the model that `jdc_jax.zoo.load` rebuilds. The entry is written in a temporary
directory beside its place and renamed into it. The card names the model it was fine-tuned from
(`init_from`) by zoo name and rate point (`donor_record`), never by a path of the training
machine.

With --integer-calibration SOURCE (default "builtin"; "none" to skip) the entry also gets its
integer entropy-parameter network (`jdc_jax.integer`), calibrated on SOURCE with the model's
training noise from the shipped float32 values, and the card its digest and the identifier of
integer-path files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import jax
import ml_collections
import numpy as np

from jdc_jax import checkpoints, zoo
from jdc_jax.atomic_write import write_bytes_atomic
from jdc_jax.codec.api import (INTEGER_ENTROPY_FILE, Codec, build_side_tables,
                               integer_model_identifier, model_identifier, parameters_digest)
from jdc_jax.codec.model_id import weights_digest
from jdc_jax.config_validation import frozen_modules, module_lr_scales
from jdc_jax.entropy.latent_coding import build_latent_tables
from jdc_jax.entropy.tables import CodingTables
from jdc_jax.models.losses import rate_lambda
from jdc_jax.models.registry import DENOISER_KINDS, model_from_config

FLOAT16_MAX = float(np.finfo(np.float16).max)
INT8_LARGEST = 127  # symmetric: -127..127
WEIGHT_STORAGE = "int8 kernels with a float16 scale per output channel; float16 others"
# Config fields every rate point of one lambda ladder shares (launch/ladder.sh changes only the
# rate point, init_from and run settings): a donor that agrees on them is this ladder's.
LADDER_FIELDS = ("model", "channels", "latent_channels", "base_channels", "context_model",
                 "noise", "data_source")


def shipped_arrays(params) -> dict[str, np.ndarray]:
    """{"a/b/kernel": array} of a parameter tree as an entry stores it (`jdc_jax.zoo`): each 4-D
    kernel as int8 (round(value / scale), scale = the float16 of the output channel's largest
    magnitude / 127) with its scales under "a/b/kernel@scale", every other parameter as
    float16. ValueError naming a parameter whose values or scales float16 cannot hold."""
    arrays = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        key = zoo.PATH_SEPARATOR.join(str(getattr(entry, "key", entry)) for entry in path)
        if key.endswith(zoo.SCALE_SUFFIX):
            raise ValueError(f"parameter {key}: a name ending in {zoo.SCALE_SUFFIX!r} is "
                             "reserved for kernel scales")
        value = np.asarray(leaf, dtype=np.float32)
        largest = float(np.max(np.abs(value))) if value.size else 0.0
        if not np.isfinite(largest) or largest > FLOAT16_MAX:
            raise ValueError(f"parameter {key} reaches {largest:g}, beyond float16's range")
        if key.rpartition(zoo.PATH_SEPARATOR)[2] == "kernel" and value.ndim == 4:
            arrays[key], arrays[key + zoo.SCALE_SUFFIX] = int8_per_output_channel(value)
        else:
            arrays[key] = value.astype(np.float16)
    return arrays


def int8_per_output_channel(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 kernel, float16 scales of its last axis): kernel ~ int8 x scale, within half a
    scale per value; the scale is the float16 at or just above the channel's largest
    magnitude / 127 (zero for a channel of zeros)."""
    largest = np.max(np.abs(kernel), axis=tuple(range(kernel.ndim - 1)), initial=0.0)
    scale = (largest / INT8_LARGEST).astype(np.float16)
    # Rounded up where float16 rounded it down (or to zero): the largest value is then at most
    # 127 scales, so no value is clipped.
    low = scale.astype(np.float64) * INT8_LARGEST < largest
    scale = np.where(low, np.nextafter(scale, np.float16(np.inf)), scale).astype(np.float16)
    divisor = np.where(scale > 0, scale.astype(np.float32), np.float32(1))
    quantized = np.clip(np.rint(kernel / divisor), -INT8_LARGEST, INT8_LARGEST)
    return quantized.astype(np.int8), scale


def donor_record(init_from: str, name: str, config: dict,
                 root: Path | None = None) -> dict | None:
    """The card's "init_from": the model an entry was fine-tuned from, by zoo name and rate
    point rather than by a path of the machine that trained it; None when it was not.

    The rate point is the donor checkpoint's config's, when the checkpoint is reachable here
    (else None). The name is `name`, the entry being built, when the donor is the neighbouring
    rate point of the same ladder (its `LADDER_FIELDS` equal `config`'s, its rate point one
    away); otherwise the donor's work directory name (the path without a trailing
    checkpoints/ or step directory). A donor given as zoo:NAME:RATE_POINT (zoo:NAME for a
    denoiser) is that entry; the entry being built itself (a warm restart, `init_step`)
    passes on its own card's donor. A denoiser (`DENOISER_KINDS`) has no rate point: its
    donor given by a path is named by its work directory, rate point None."""
    if not init_from:
        return None
    own_point = None if config.get("model") in DENOISER_KINDS else int(config["rate_point"])
    if init_from.startswith(zoo.SPEC_PREFIX):
        donor_name, donor_point = zoo.split_spec(init_from)
        if (donor_name, donor_point) != (name, own_point):
            return {"name": donor_name, "rate_point": donor_point}
        try:
            own_card = (zoo.denoiser_card(name, root) if own_point is None
                        else zoo.card(name, own_point, root))
        except (zoo.UnknownModel, FileNotFoundError):
            return None
        return own_card.get("init_from")
    if own_point is None:
        return {"name": _work_directory_name(init_from), "rate_point": None}
    try:
        donor, _ = checkpoints.restore_config(init_from)
    except (OSError, ValueError):
        donor = None
    rate_point = int(donor["rate_point"]) if donor and "rate_point" in donor else None
    same_ladder = (donor is not None and rate_point is not None
                   and abs(rate_point - own_point) == 1
                   and all(donor.get(field) == config.get(field) for field in LADDER_FIELDS))
    if same_ladder:
        return {"name": name, "rate_point": rate_point}
    return {"name": _work_directory_name(init_from), "rate_point": rate_point}


def training_record(config: dict, params, step: int, name: str,
                    root: Path | None = None) -> tuple[int, dict | None, dict | None]:
    """The card's (training_steps, init_from, partial_fine_tune) for a checkpoint at `step`.

    A run that froze some modules (factor 0 in `module_lr_scales`) and started from another
    model fine-tuned only the rest: the entry keeps its donor's training steps and donor (so a
    campaign run that has all its steps stays done when its entry is replaced by the fine-tuned
    model), and "partial_fine_tune" says what the fine-tune did: {"steps", "trained_modules",
    "learning_rate"}. Any other run: its own step and `donor_record`, and None."""
    init_from = config.get("init_from", "")
    frozen = frozen_modules(module_lr_scales(config))
    if not (frozen and init_from):
        return int(step), donor_record(init_from, name, config, root), None
    record = {"steps": int(step), "trained_modules": sorted(set(params) - frozen),
              "learning_rate": float(config["learning_rate"])}
    if init_from.startswith(zoo.SPEC_PREFIX):
        donor_name, donor_point = zoo.split_spec(init_from)
        donor_card = (zoo.denoiser_card(donor_name, root) if donor_point is None
                      else zoo.card(donor_name, donor_point, root))
        steps, donor = int(donor_card["training_steps"]), donor_card.get("init_from")
    else:
        # A checkpoint: its own steps, and the model it came from in turn.
        donor_config, steps = checkpoints.restore_config(init_from)
        donor_point = donor_config.get("rate_point")
        donor = donor_record(donor_config.get("init_from", ""), name, donor_config, root)
    own_point = None if config.get("model") in DENOISER_KINDS else config.get("rate_point")
    if None not in (own_point, donor_point) and int(own_point) != int(donor_point):
        # The frozen modules hold the donor's lambda; the rest would have learned another.
        raise ValueError(f"this checkpoint was fine-tuned from {init_from} (rate point "
                         f"{donor_point}) with some modules frozen, at rate point {own_point}'s "
                         f"lambda: such a fine-tune keeps its donor's rate point "
                         f"(--config.rate_point={donor_point})")
    return int(steps), donor, record


def build_entry(checkpoint: str, name: str, root: Path, description: str = "",
                overwrite: bool = False, integer_calibration: str | None = "builtin") -> Path:
    """Writes the entry of `checkpoint` under `root`; returns its directory. With
    `integer_calibration` (a data source, `integer.calibrate.calibration_images`), also its
    integer entropy network, for models with a Gaussian conditional."""
    if not zoo.ENTRY_NAME.fullmatch(name):
        raise ValueError(f"zoo name {name!r}: expected letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    params, config, step = checkpoints.restore_params(checkpoint)
    if config["model"] in DENOISER_KINDS:
        destination = Path(root) / name
        if destination.exists() and not _is_denoiser_entry(destination):
            raise FileExistsError(f"{destination} exists and is not a denoiser's entry (a "
                                  "codec's rate points?); it is left as it is")
        return _write_entry(destination, overwrite, name, params, config,
                            training_record(config, params, step, name, root), description,
                            lambda staging, shipped: {})
    rate_point = int(config["rate_point"])
    destination = Path(root) / name / f"rate_point_{rate_point}"
    if (destination.parent / zoo.PARAMS_FILE).exists():
        raise FileExistsError(f"{destination.parent} is a denoiser's entry, not a codec's")
    record = training_record(config, params, step, name, root)

    def codec_fields(staging: Path, shipped) -> dict:
        model = model_from_config(config)
        side = build_side_tables(model, shipped)
        side.save(staging / zoo.SIDE_TABLES_FILE)
        latent = _shared_latent_tables(Path(root), build_latent_tables())
        identifier = model_identifier(model, config["model"], shipped, side, latent)
        integer_fields = {}
        codec = Codec(model, shipped, side_tables=side, latent_tables=latent,
                      model_kind=config["model"], config=config)
        if integer_calibration and codec.has_side:
            integer_fields = _write_integer_entropy(codec, staging, integer_calibration)
        return {"rate_point": rate_point, "lambda": rate_lambda(ml_collections.ConfigDict(config)),
                "context_model": config.get("context_model"), "model_id": identifier.hex(),
                "side_tables_sha256": side.digest(), "latent_tables_sha256": latent.digest(),
                **integer_fields}

    return _write_entry(destination, overwrite, name, params, config, record, description,
                        codec_fields)


def _write_entry(destination: Path, overwrite: bool, name: str, params, config: dict,
                 record: tuple, description: str, kind_fields) -> Path:
    """Writes an entry in a temporary directory beside `destination`, then renames it there:
    params.npz (`shipped_arrays`), config.json (without the training machine's init_from path:
    the card names the donor) and card.json, with `record` from `training_record`, whose
    fields every entry has are completed by `kind_fields(staging directory, shipped float32
    params)`, which may write more files."""
    if destination.exists() and not overwrite:
        raise FileExistsError(f"{destination} exists (give --overwrite to replace it)")
    arrays = shipped_arrays(params)
    steps, donor, partial_fine_tune = record
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        np.savez(staging / zoo.PARAMS_FILE, **arrays)
        (staging / zoo.CONFIG_FILE).write_text(json.dumps(dict(config, init_from=""), indent=1,
                                                          sort_keys=True))
        shipped = zoo.load_params(staging)
        card = {
            "name": name, "model": config["model"], "noise": config.get("noise"),
            "data_source": config.get("data_source"), "crop_size": config.get("crop_size"),
            "batch_size": config.get("batch_size"), "training_steps": steps,
            "init_from": donor, "partial_fine_tune": partial_fine_tune,
            "parameters": int(sum(v.size for v in jax.tree_util.tree_leaves(shipped))),
            "weight_storage": WEIGHT_STORAGE, "description": description,
            "params_sha256": parameters_digest(shipped),
            **kind_fields(staging, shipped)}
        (staging / zoo.CARD_FILE).write_text(json.dumps(card, indent=1, sort_keys=True))
        staging.chmod(0o755)
        # The old entry is moved aside before the new one takes its place, and deleted after:
        # an interrupted build leaves one of the two whole.
        if destination.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{destination.name}.old.",
                                            dir=destination.parent))
            destination.rename(retired / destination.name)
            staging.rename(destination)
            shutil.rmtree(retired)
        else:
            staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination


def _is_denoiser_entry(directory: Path) -> bool:
    """Whether `directory` is a denoiser's entry (params.npz and a card of a denoiser kind)."""
    try:
        card = json.loads((directory / zoo.CARD_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (directory / zoo.PARAMS_FILE).is_file() and card.get("model") in DENOISER_KINDS


def _work_directory_name(path: str) -> str:
    """The run's directory name of a checkpoint path (without checkpoints/ or a step)."""
    parts = [part for part in path.split("/") if part]
    while len(parts) > 1 and (parts[-1].isdigit() or parts[-1] == checkpoints.CHECKPOINT_SUBDIR):
        parts.pop()
    return parts[-1] if parts else path


def _write_integer_entropy(codec, directory: Path, calibration: str) -> dict:
    """Calibrates the codec's integer network, writes it into `directory`; returns the card
    fields naming it."""
    from jdc_jax.integer.calibrate import calibrate_codec

    integer = calibrate_codec(codec, calibration)
    integer.save(directory / INTEGER_ENTROPY_FILE)
    return {"integer_entropy_sha256": weights_digest(integer.named_arrays()),
            "integer_model_id": integer_model_identifier(codec.model_id, integer).hex()}


def add_integer_entropy(name: str, rate_point: int, root: Path | None = None,
                        calibration: str = "builtin") -> Path:
    """Gives an existing entry its integer entropy network (or a new one): calibrates it from
    the entry's own float32 values and adds its digest and identifier to the card (the other
    files and fields are left as they are). Returns the entry's directory."""
    directory = zoo.entry_directory(name, rate_point, root)
    codec = zoo.load(name, rate_point, root).with_integer_entropy(None)
    card_path = directory / zoo.CARD_FILE
    card = json.loads(card_path.read_text())
    card.update(_write_integer_entropy(codec, directory, calibration))
    write_bytes_atomic(card_path, json.dumps(card, indent=1, sort_keys=True).encode())
    return directory


def same_tables_but_near_ties(stored, built) -> bool:
    """Whether two builds of the latent tables differ at most where leftover counts went to
    one of two near-tied bins: the same precision, table lengths and offsets, every count
    within 1 of the other's, and at most 1 % of the tables touched.

    The normal CDF's last bits are not the same on every CPU (one row of 1,088 differed between
    two x86_64 machines: two bins' fractional parts close enough for the last bits to reorder
    them, one count moved between them). Every entry codes with the zoo's stored file, never
    with a rebuild, so such a rebuild does not change what the entries write."""
    if (stored.precision, stored.num_tables) != (built.precision, built.num_tables):
        return False
    if not (np.array_equal(stored.lengths, built.lengths)
            and np.array_equal(stored.offsets, built.offsets)
            and stored.pmfs.shape == built.pmfs.shape):
        return False
    difference = np.abs(stored.pmfs.astype(np.int64) - built.pmfs.astype(np.int64))
    return bool(difference.max(initial=0) <= 1
                and np.count_nonzero(difference.any(axis=1)) <= stored.num_tables // 100)


def _shared_latent_tables(root: Path, built):
    """The zoo's one latent table file: written when missing, else it must equal `built` (but
    for near ties: `same_tables_but_near_ties`), and the stored file is the one used."""
    path = root / zoo.LATENT_TABLES_FILE
    if path.exists():
        stored = CodingTables.load(path)
        if stored.digest() != built.digest() and not same_tables_but_near_ties(stored, built):
            raise ValueError(f"{path} differs from the latent tables this version builds; "
                             f"rebuild every entry of {root}")
        return stored
    root.mkdir(parents=True, exist_ok=True)
    built.save(path)
    return built


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jdc_jax.zoo.build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="work directory or checkpoint (required unless "
                                               "--integer-only)")
    parser.add_argument("--name", required=True, help="zoo name, e.g. jicd-sigma25")
    parser.add_argument("--description", default="")
    parser.add_argument("--root", default=str(zoo.WEIGHTS_DIRECTORY))
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--integer-calibration", default="builtin",
                        help="images calibrating the integer entropy network (builtin, "
                             "folder:PATH or a folder); none: no integer network")
    parser.add_argument("--integer-only", type=int, metavar="RATE_POINT",
                        help="only (re)calibrate the integer network of the existing entry "
                             "--name at this rate point")
    args = parser.parse_args(argv)
    calibration = None if args.integer_calibration == "none" else args.integer_calibration
    if args.integer_only is not None:
        destination = add_integer_entropy(args.name, args.integer_only, Path(args.root),
                                          calibration or "builtin")
        print(f"wrote {destination / INTEGER_ENTROPY_FILE}")
        return 0
    if args.checkpoint is None:
        parser.error("--checkpoint is required unless --integer-only is given")
    try:
        destination = build_entry(args.checkpoint, args.name, Path(args.root),
                                  args.description, args.overwrite, calibration)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in destination.rglob("*") if p.is_file())
    print(f"wrote {destination} ({size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
