"""`Codec.load(DIR)`: the ``.jdc`` codec of an exported inference package (`jdc_jax.export`).

Runs the package's `jax.export` functions with its weights through the same coding loop as the
native codec (`jdc_jax.codec.file_codec`), so on the machine that exported it the files it
writes are byte-identical to the native codec's and it decodes theirs to identical pixels.
It imports numpy, JAX and the model-free coding modules only: no model class, Flax, orbax,
TensorFlow or training code.

Loading checks, in this order, and refuses the package with a `PackageError` (a ValueError)
naming the file:
  - manifest.json is present, readable, of package version 1, and the package writes the
    ``.jdc`` format version this reader reads;
  - every file the manifest lists is present (`MissingPackageFile`) and has its sha256
    (`PackageHashMismatch`), and every file the codec needs is listed;
  - the model identifier recomputed from codec.json's architecture, the weights and both
    coding tables is the manifest's (`PackageHashMismatch` naming manifest.json), and so is the
    integer path's identifier when the package holds an integer entropy network
    (integer_entropy.npz: the codec then writes the integer path, `jdc_jax.integer`).

The functions are compiled on first use per image shape (the per-position serial step once, the
wavefront step once per bucket of positions, `jdc_jax.codec.scan_order.front_bucket`).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
from pathlib import Path

import jax
import numpy as np

from jdc_jax.codec import file_format, model_id
from jdc_jax.codec.file_codec import CodecFunctions, FileCodec, LatentGroup, function_names
from jdc_jax.codec.integer_functions import integer_functions
from jdc_jax.integer.network import IntegerEntropyModel
from jdc_jax.codec.tiling import Tiling
from jdc_jax.entropy.tables import CodingTables

PACKAGE_VERSION = 1
MANIFEST = "manifest.json"
CODEC = "codec.json"
SIDE_TABLES = "side_tables.bin"
LATENT_TABLES = "latent_tables.bin"
WEIGHTS = "weights.bin"
CONFIG = "config.json"
INTEGER_ENTROPY = "integer_entropy.npz"


class PackageError(ValueError):
    """An inference package that cannot be used."""


class MissingPackageFile(PackageError):
    """A file of the package is not there."""


class PackageHashMismatch(PackageError):
    """A file of the package is not the one exported (sha256 or model identifier differs)."""


class Codec(FileCodec):
    """A `FileCodec` running an exported package; build it with `Codec.load(directory)`.

    Attributes (besides `FileCodec`'s): directory, manifest (dict), config (the model's config
    dict).
    """

    @classmethod
    def load(cls, directory: str | os.PathLike, *, tiling: Tiling = Tiling()) -> "Codec":
        """The codec of the package in `directory` (see the module docstring for the checks),
        with `tiling` for large images (`jdc_jax.codec.tiling`; the native codec's default)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise MissingPackageFile(f"inference package not found: {directory}")
        manifest = _read_manifest(directory)
        files = _verified_files(directory, manifest["files"])
        description = _json(files, CODEC)
        names = function_names(tuple(description["streams"]), description["context_model"])
        needed = [CONFIG, SIDE_TABLES, LATENT_TABLES, WEIGHTS,
                  *(description["functions"][name]["file"] for name in names
                    if name in description["functions"])]
        missing = [name for name in names if name not in description["functions"]]
        if missing:
            raise PackageError(f"{directory / CODEC} lacks the functions {', '.join(missing)}")
        unlisted = [path for path in needed if path not in files]
        if unlisted:
            raise PackageError(f"{directory / MANIFEST} does not list {', '.join(unlisted)}")
        side_tables = _tables(files, SIDE_TABLES)
        latent_tables = _tables(files, LATENT_TABLES)
        weights = _weights(files[WEIGHTS], description["weights"])
        identifier = model_id.model_identifier(
            description["architecture"],
            model_id.weights_digest((entry["path"], array) for entry, array
                                    in zip(description["weights"], weights)),
            side_tables.digest(), latent_tables.digest())
        if identifier.hex() != manifest["model_id"]:
            raise PackageHashMismatch(
                f"{directory / MANIFEST}: model id {manifest['model_id'][:8]} does not match "
                f"the package's architecture, weights and tables ({identifier.hex()[:8]})")
        on_device = [jax.device_put(array) for array in weights]
        functions = {}
        for name in names:
            entry = description["functions"][name]
            exported = jax.export.deserialize(bytearray(files[entry["file"]]))
            functions[name] = functools.partial(
                jax.jit(exported.call), [on_device[index] for index in entry["weights"]])
        groups = {stream: LatentGroup(
            int(group["channels"]),
            None if group["causal_taps"] is None else np.asarray(group["causal_taps"], bool))
            for stream, group in description["groups"].items()}
        streams = tuple(description["streams"])
        integer = None
        if "integer_model_id" in manifest:
            if INTEGER_ENTROPY not in files:
                raise PackageError(f"{directory / MANIFEST} does not list {INTEGER_ENTROPY}")
            try:
                network = IntegerEntropyModel.load(io.BytesIO(files[INTEGER_ENTROPY]))
            except ValueError as error:
                raise PackageError(f"{INTEGER_ENTROPY}: {error}") from None
            integer = integer_functions(network, description["context_model"], identifier)
            if integer.model_id.hex() != manifest["integer_model_id"]:
                raise PackageHashMismatch(
                    f"{directory / MANIFEST}: integer model id "
                    f"{str(manifest['integer_model_id'])[:8]} does not match the package's "
                    f"model and integer network ({integer.model_id.hex()[:8]})")
        codec = cls(functions=CodecFunctions.from_named(functions, streams,
                                                        description["context_model"]),
                    model_kind=description["model_kind"],
                    model_id=identifier, context_model=description["context_model"],
                    streams=streams, groups=groups,
                    side_channels=int(description["side_channels"]),
                    side_tables=side_tables, latent_tables=latent_tables, tiling=tiling,
                    integer=integer)
        codec.directory = directory
        codec.manifest = manifest
        codec.config = _json(files, CONFIG)
        return codec


def _read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    if not path.is_file():
        raise MissingPackageFile(f"{path} is missing: {directory} is not an inference package")
    try:
        manifest = json.loads(path.read_bytes())
        version = manifest["package_version"]
        format_version = manifest["versions"]["file_format"]
        bytes.fromhex(manifest["model_id"])
        listed = manifest["files"]
    except (ValueError, KeyError, TypeError) as error:
        raise PackageError(f"{path} is unreadable ({type(error).__name__}: {error})") from None
    if version != PACKAGE_VERSION:
        raise PackageError(f"{path}: package version {version} is not supported; this loader "
                           f"reads version {PACKAGE_VERSION}")
    if format_version != file_format.FORMAT_VERSION:
        raise PackageError(f"{path}: the package writes .jdc format version {format_version}, "
                           f"this build writes version {file_format.FORMAT_VERSION}")
    if not isinstance(listed, dict) or not listed:
        raise PackageError(f"{path} lists no files")
    return manifest


def _verified_files(directory: Path, listed: dict) -> dict[str, bytes]:
    """Relative path -> bytes of every listed file, each checked against its sha256."""
    files = {}
    for relative, expected in sorted(listed.items()):
        parts = Path(relative).parts
        if Path(relative).is_absolute() or ".." in parts or not parts:
            raise PackageError(f"{directory / MANIFEST} lists a path outside the package: "
                               f"{relative!r}")
        path = directory / relative
        if not path.is_file():
            raise MissingPackageFile(f"package file {path} is missing")
        data = path.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise PackageHashMismatch(f"package file {path}: sha256 mismatch (manifest "
                                      f"{str(expected)[:16]}..., file {actual[:16]}...)")
        files[relative] = data
    return files


def _json(files: dict[str, bytes], name: str):
    if name not in files:
        raise PackageError(f"the manifest does not list {name}")
    try:
        return json.loads(files[name])
    except ValueError as error:
        raise PackageError(f"{name} is not valid JSON ({error})") from None


def _tables(files: dict[str, bytes], name: str) -> CodingTables:
    try:
        return CodingTables.from_bytes(files[name])
    except ValueError as error:
        raise PackageError(f"{name}: {error}") from None


def _weights(data: bytes, index: list[dict]) -> list[np.ndarray]:
    """The weight arrays of weights.bin, as codec.json's index describes them."""
    arrays, end = [], 0
    for entry in index:
        dtype = np.dtype(entry["dtype"])
        shape = tuple(int(size) for size in entry["shape"])
        offset, size = int(entry["offset"]), int(entry["size"])
        if offset != end or size != dtype.itemsize * int(np.prod(shape)) \
                or offset + size > len(data):
            raise PackageError(f"{WEIGHTS}: entry {entry['path']} does not fit the file")
        arrays.append(np.frombuffer(data, dtype, int(np.prod(shape)), offset).reshape(shape))
        end = offset + size
    if end != len(data):
        raise PackageError(f"{WEIGHTS} has {len(data) - end} bytes no weight describes")
    return arrays
