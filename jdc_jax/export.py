"""Export a codec checkpoint as a self-contained inference package.

    python -m jdc_jax.export --checkpoint CKPT --out DIR [--overwrite]

CKPT is a work directory, its checkpoints/ directory or one step directory (as for
`python -m jdc_jax compress`). `jdc_jax.exported.Codec.load(DIR)` compresses and decompresses
with the package alone, without model classes, Flax, orbax or TensorFlow, and writes files
byte-identical to the native codec's (`jdc_jax.codec.Codec`) on the same machine.

Package layout (all JSON is UTF-8, sorted keys):

    manifest.json            {"package_version": 1,
                              "versions": {"jdc_jax", "jax", "jaxlib", "file_format"},
                              "model_id": hex of the 32-byte identifier written in file headers,
                              "files": {relative path: sha256 hex} of every other file}
    codec.json               what the coder needs besides its functions: "model_kind",
                             "context_model", "streams", "side_channels", "groups"
                             ({stream: {"channels", "causal_taps"}}), "architecture" (the JSON
                             hashed into the model identifier), "weights" (per array, in
                             `jax.tree_util` leaf order: "path", "dtype", "shape", "offset" and
                             "size" in bytes within weights.bin) and "functions"
                             ({name: {"file", "weights": leaf positions it takes,
                             "arguments": symbolic shapes}})
    config.json              the model's config (the checkpoint's)
    side_tables.bin          the checkpoint's stored coding tables, byte for byte
    latent_tables.bin        (`jdc_jax.entropy.tables` canonical form)
    weights.bin              every weight array, little-endian, concatenated
    integer_entropy.npz      (a model with the integer entropy path only) its integer network
                             (`jdc_jax.integer.network`); the manifest then also holds
                             "integer_model_id", the identifier of its integer-path files
    functions/NAME.jax_exported
                             `jax.export` serializations (StableHLO) of the functions of
                             `jdc_jax.codec.model_functions`, lowered for cpu, cuda and tpu,
                             with symbolic height and width (analysis: 16*h x 16*w,
                             hyper-analysis: 4*h x 4*w, the others h x w; the per-position
                             serial step has fixed shapes, the wavefront step a symbolic
                             number of positions b)

Weights are arguments of the exported functions, not constants baked into them: the package
holds one copy of them however many functions share them, and the native codec runs the very
same functions with the same arguments, so both compile the same computation (constants would
let XLA fold and fuse differently from the native program).

The loader verifies every file against the manifest's sha256 and recomputes the model
identifier from the architecture, the weights and the tables, so a missing or altered file is
refused by name. The package is built in a temporary directory next to DIR and then renamed into
place; an existing DIR is replaced only with --overwrite, after the new package is complete.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

import jdc_jax
from jdc_jax.codec import file_format
from jdc_jax.codec.api import Codec, architecture, named_parameters
from jdc_jax.codec.model_functions import describe_model, model_functions, scope_leaf_indexes

PACKAGE_VERSION = 1
PLATFORMS = ("cpu", "cuda", "tpu")
MANIFEST = "manifest.json"
CODEC = "codec.json"
CONFIG = "config.json"
SIDE_TABLES = "side_tables.bin"
LATENT_TABLES = "latent_tables.bin"
WEIGHTS = "weights.bin"
INTEGER_ENTROPY = "integer_entropy.npz"
FUNCTIONS_DIRECTORY = "functions"
FUNCTION_SUFFIX = ".jax_exported"


def export_function(function, weights, argument_shapes) -> jax.export.Exported:
    """`jax.export` of f(weights, *arrays) for weights like `weights` and float32 arrays of the
    given symbolic shapes (one symbolic scope, so arguments share their dimension names)."""
    scope = jax.export.SymbolicScope()
    weight_specs = [jax.ShapeDtypeStruct(np.shape(w), np.asarray(w).dtype) for w in weights]
    argument_specs = [jax.ShapeDtypeStruct(jax.export.symbolic_shape(shape, scope=scope),
                                           jnp.float32) for shape in argument_shapes]
    return jax.export.export(jax.jit(function), platforms=PLATFORMS)(weight_specs,
                                                                      *argument_specs)


def package_files(codec: Codec) -> dict[str, bytes]:
    """Relative path -> bytes of every file of the package of `codec`, the manifest last."""
    params = jax.device_get(codec.params)
    description = describe_model(codec.model, params)
    named = named_parameters(params)
    leaves = [array for _, array in named]
    files: dict[str, bytes] = {}
    weights_index, offset, chunks = [], 0, []
    for path, array in named:
        data = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"))).tobytes()
        weights_index.append({"path": path, "dtype": array.dtype.newbyteorder("<").str,
                              "shape": list(array.shape), "offset": offset, "size": len(data)})
        chunks.append(data)
        offset += len(data)
    functions = {}
    for name, function in model_functions(codec.model, params).items():
        indexes = scope_leaf_indexes(params, function.scope)
        exported = export_function(function.function, [leaves[i] for i in indexes],
                                   function.argument_shapes)
        file = f"{FUNCTIONS_DIRECTORY}/{name}{FUNCTION_SUFFIX}"
        files[file] = bytes(exported.serialize())
        functions[name] = {"file": file, "weights": indexes,
                           "arguments": list(function.argument_shapes)}
    files[WEIGHTS] = b"".join(chunks)
    files[SIDE_TABLES] = codec.side_tables.to_bytes()
    files[LATENT_TABLES] = codec.latent_tables.to_bytes()
    config = codec.config if codec.config is not None else {"model": codec.model_kind}
    files[CONFIG] = _json_bytes(config)
    integer = {}
    if codec.integer_entropy is not None:
        files[INTEGER_ENTROPY] = codec.integer_entropy.to_bytes()
        integer = {"integer_model_id": codec.integer_model_id.hex()}
    files[CODEC] = _json_bytes({
        "model_kind": codec.model_kind,
        "context_model": codec.context_model,
        "streams": list(codec.streams),
        "side_channels": description.side_channels,
        "groups": {stream: {"channels": group.channels,
                            "causal_taps": None if group.causal_taps is None
                            else np.asarray(group.causal_taps, bool).tolist()}
                   for stream, group in description.groups.items()},
        "architecture": architecture(codec.model, codec.model_kind),
        "weights": weights_index,
        "functions": functions,
    })
    files[MANIFEST] = _json_bytes({
        "package_version": PACKAGE_VERSION,
        "versions": {"jdc_jax": jdc_jax.__version__, "jax": jax.__version__,
                     "jaxlib": jaxlib.__version__, "file_format": file_format.FORMAT_VERSION},
        "model_id": codec.model_id.hex(), **integer,
        "files": {path: hashlib.sha256(data).hexdigest() for path, data in sorted(files.items())},
    })
    return files


def write_package(codec: Codec, directory: str | os.PathLike, *, overwrite: bool = False
                  ) -> Path:
    """Writes the package of `codec` to `directory` atomically; returns its path.

    Raises FileExistsError when `directory` exists and `overwrite` is False."""
    directory = Path(directory).expanduser().resolve()
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory} exists; choose another --out or pass --overwrite")
    directory.parent.mkdir(parents=True, exist_ok=True)
    files = package_files(codec)
    building = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp",
                                     dir=directory.parent))
    try:
        for path, data in files.items():
            target = building / path
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
        os.chmod(building, 0o777 & ~_umask())
        if directory.exists():
            # The old package is moved aside only once the new one is complete.
            retired = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".old",
                                            dir=directory.parent))
            os.replace(directory, retired / directory.name)
            os.replace(building, directory)
            shutil.rmtree(retired)
        else:
            os.replace(building, directory)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return directory


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit status (1 with a one-line error)."""
    parser = argparse.ArgumentParser(
        prog="python -m jdc_jax.export",
        description="Export a codec checkpoint as a self-contained inference package "
                    "(jax.export functions, weights, coding tables, config and manifest).")
    parser.add_argument("--checkpoint", required=True,
                        help="training work directory or checkpoint directory")
    parser.add_argument("--out", required=True, help="package directory to write")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing package directory")
    args = parser.parse_args(argv)
    try:
        codec = Codec.from_checkpoint(args.checkpoint)
        directory = write_package(codec, args.out, overwrite=args.overwrite)
    except (ValueError, OSError) as error:
        print(f"jdc_jax.export: error: {error}", file=sys.stderr)
        return 1
    size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
    print(f"wrote {directory} ({size / 2**20:.1f} MiB, model {codec.model_id.hex()[:8]})")
    return 0


def _json_bytes(value) -> bytes:
    return (json.dumps(value, indent=1, sort_keys=True) + "\n").encode()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


if __name__ == "__main__":
    sys.exit(main())
