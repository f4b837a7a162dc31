"""Make a zoo entry from a training checkpoint.

    python -m jdc_jax.zoo.build --checkpoint RUN --name jicd-sigma25 \
        [--description TEXT] [--root jdc_jax/zoo/weights] [--overwrite]

The entry is `ROOT/NAME/rate_point_K/`, K being the checkpoint config's `rate_point` (see
`jdc_jax.zoo` for its files). Parameters are rounded to float16 (a parameter outside float16's
finite range is an error), and the coding tables and the model identifier are computed from the
rounded values, so the entry describes exactly the model that `jdc_jax.zoo.load` rebuilds. The
entry is written in a temporary directory beside its place and renamed into it. The card names
the model it was fine-tuned from (`init_from`) by zoo name and rate point (`donor_record`), never
by a path of the training machine.

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
from jdc_jax.entropy.latent_coding import build_latent_tables
from jdc_jax.entropy.tables import CodingTables
from jdc_jax.models.losses import rate_lambda
from jdc_jax.models.registry import model_from_config

FLOAT16_MAX = float(np.finfo(np.float16).max)
# Config fields every rate point of one lambda ladder shares (launch/ladder.sh changes only the
# rate point, init_from and run settings): a donor that agrees on them is this ladder's.
LADDER_FIELDS = ("model", "channels", "latent_channels", "base_channels", "context_model",
                 "noise", "data_source")


def float16_params(params) -> dict[str, np.ndarray]:
    """{"a/b/kernel": float16 array} of a parameter tree; raises if a value cannot be float16."""
    flat = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        key = zoo.PATH_SEPARATOR.join(str(getattr(entry, "key", entry)) for entry in path)
        value = np.asarray(leaf, dtype=np.float32)
        largest = float(np.max(np.abs(value))) if value.size else 0.0
        if not np.isfinite(largest) or largest > FLOAT16_MAX:
            raise ValueError(f"parameter {key} reaches {largest:g}, beyond float16's range")
        flat[key] = value.astype(np.float16)
    return flat


def donor_record(init_from: str, name: str, config: dict,
                 root: Path | None = None) -> dict | None:
    """The card's "init_from": the model an entry was fine-tuned from, by zoo name and rate
    point rather than by a path of the machine that trained it; None when it was not.

    The rate point is the donor checkpoint's config's, when the checkpoint is reachable here
    (else None). The name is `name`, the entry being built, when the donor is the neighbouring
    rate point of the same ladder (its `LADDER_FIELDS` equal `config`'s, its rate point one
    away); otherwise the donor's work directory name (the path without a trailing
    checkpoints/ or step directory). A donor given as zoo:NAME:RATE_POINT is that entry; the
    entry being built itself (a warm restart, `init_step`) passes on its own card's donor."""
    if not init_from:
        return None
    if init_from.startswith(zoo.SPEC_PREFIX):
        donor_name, donor_point = zoo.parse_spec(init_from)
        if (donor_name, donor_point) != (name, int(config["rate_point"])):
            return {"name": donor_name, "rate_point": donor_point}
        try:
            return zoo.card(name, donor_point, root).get("init_from")
        except (zoo.UnknownModel, FileNotFoundError):
            return None
    try:
        donor, _ = checkpoints.restore_config(init_from)
    except (OSError, ValueError):
        donor = None
    rate_point = int(donor["rate_point"]) if donor and "rate_point" in donor else None
    same_ladder = (donor is not None and rate_point is not None
                   and abs(rate_point - int(config["rate_point"])) == 1
                   and all(donor.get(field) == config.get(field) for field in LADDER_FIELDS))
    if same_ladder:
        return {"name": name, "rate_point": rate_point}
    parts = [part for part in init_from.split("/") if part]
    while len(parts) > 1 and (parts[-1].isdigit() or parts[-1] == checkpoints.CHECKPOINT_SUBDIR):
        parts.pop()
    return {"name": parts[-1] if parts else init_from, "rate_point": rate_point}


def build_entry(checkpoint: str, name: str, root: Path, description: str = "",
                overwrite: bool = False, integer_calibration: str | None = "builtin") -> Path:
    """Writes the entry of `checkpoint` under `root`; returns its directory. With
    `integer_calibration` (a data source, `integer.calibrate.calibration_images`), also its
    integer entropy network, for models with a Gaussian conditional."""
    params, config, step = checkpoints.restore_params(checkpoint)
    rate_point = int(config["rate_point"])
    destination = Path(root) / name / f"rate_point_{rate_point}"
    if destination.exists() and not overwrite:
        raise FileExistsError(f"{destination} exists (give --overwrite to replace it)")
    flat = float16_params(params)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        np.savez(staging / zoo.PARAMS_FILE, **flat)
        donor = donor_record(config.get("init_from", ""), name, config, root)
        # The training machine's paths say nothing to a user; the card names the donor.
        shipped_config = dict(config, init_from="")
        (staging / zoo.CONFIG_FILE).write_text(json.dumps(shipped_config, indent=1,
                                                          sort_keys=True))
        shipped = zoo.load_params(staging)
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
        (staging / zoo.CARD_FILE).write_text(json.dumps({
            "name": name, "rate_point": rate_point,
            "lambda": rate_lambda(ml_collections.ConfigDict(config)),
            "model": config["model"], "context_model": config.get("context_model"),
            "noise": config.get("noise"), "data_source": config.get("data_source"),
            "crop_size": config.get("crop_size"), "batch_size": config.get("batch_size"),
            "training_steps": int(step),
            "init_from": donor,
            "parameters": int(sum(v.size for v in flat.values())),
            "model_id": identifier.hex(), "description": description,
            "params_sha256": parameters_digest(shipped), "side_tables_sha256": side.digest(),
            "latent_tables_sha256": latent.digest(), **integer_fields,
        }, indent=1, sort_keys=True))
        staging.chmod(0o755)
        if destination.exists():
            shutil.rmtree(destination)
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination


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


def _shared_latent_tables(root: Path, built):
    """The zoo's one latent table file: written when missing, else it must equal `built`."""
    path = root / zoo.LATENT_TABLES_FILE
    if path.exists():
        stored = CodingTables.load(path)
        if stored.digest() != built.digest():
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
