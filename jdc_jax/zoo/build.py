"""Make a zoo entry from a training checkpoint.

    python -m jdc_jax.zoo.build --checkpoint RUN --name jicd-small-sigma25 \
        [--description TEXT] [--root jdc_jax/zoo/weights] [--overwrite]

The entry is `ROOT/NAME/rate_point_K/`, K being the checkpoint config's `rate_point` (see
`jdc_jax.zoo` for its files). Parameters are rounded to float16 (a parameter outside float16's
finite range is an error), and the coding tables and the model identifier are computed from the
rounded values, so the entry describes exactly the model that `jdc_jax.zoo.load` rebuilds. The
entry is written in a temporary directory beside its place and renamed into it.
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
from jdc_jax.codec.api import build_side_tables, model_identifier, parameters_digest
from jdc_jax.entropy.latent_coding import build_latent_tables
from jdc_jax.entropy.tables import CodingTables
from jdc_jax.models.losses import rate_lambda
from jdc_jax.models.registry import model_from_config

FLOAT16_MAX = float(np.finfo(np.float16).max)


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


def build_entry(checkpoint: str, name: str, root: Path, description: str = "",
                overwrite: bool = False) -> Path:
    """Writes the entry of `checkpoint` under `root`; returns its directory."""
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
        (staging / zoo.CONFIG_FILE).write_text(json.dumps(config, indent=1, sort_keys=True))
        shipped = zoo.load_params(staging)
        model = model_from_config(config)
        side = build_side_tables(model, shipped)
        side.save(staging / zoo.SIDE_TABLES_FILE)
        latent = _shared_latent_tables(Path(root), build_latent_tables())
        identifier = model_identifier(model, config["model"], shipped, side, latent)
        (staging / zoo.CARD_FILE).write_text(json.dumps({
            "name": name, "rate_point": rate_point,
            "lambda": rate_lambda(ml_collections.ConfigDict(config)),
            "model": config["model"], "context_model": config.get("context_model"),
            "noise": config.get("noise"), "data_source": config.get("data_source"),
            "crop_size": config.get("crop_size"), "batch_size": config.get("batch_size"),
            "training_steps": int(step), "init_from": config.get("init_from", ""),
            "parameters": int(sum(v.size for v in flat.values())),
            "model_id": identifier.hex(), "description": description,
            "params_sha256": parameters_digest(shipped), "side_tables_sha256": side.digest(),
            "latent_tables_sha256": latent.digest(),
        }, indent=1, sort_keys=True))
        staging.chmod(0o755)
        if destination.exists():
            shutil.rmtree(destination)
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination


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
    parser.add_argument("--checkpoint", required=True, help="work directory or checkpoint")
    parser.add_argument("--name", required=True, help="zoo name, e.g. jicd-small-sigma25")
    parser.add_argument("--description", default="")
    parser.add_argument("--root", default=str(zoo.WEIGHTS_DIRECTORY))
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        destination = build_entry(args.checkpoint, args.name, Path(args.root),
                                  args.description, args.overwrite)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in destination.rglob("*") if p.is_file())
    print(f"wrote {destination} ({size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
