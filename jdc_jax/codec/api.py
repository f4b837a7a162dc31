"""`Codec`: the ``.jdc`` codec of a trained Flax codec model (see `file_codec` for the coding).

`Codec` is a `file_codec.FileCodec` whose pieces are the jitted functions of
`model_functions` with this model's weights as arguments; an exported package
(`jdc_jax.export`, `jdc_jax.exported`) runs the same functions, so both write the same bytes.

Coding tables. `Codec.from_checkpoint` builds the side tables (from the factorized prior's
parameters) and the latent tables once and stores them beside the checkpoint step, in
`<step>/coding_tables/{side,latent}.bin` with a `manifest.json` recording the sha256 of the
parameters they were built from; later loads read them (after checking that digest) instead of
rebuilding, so every encoder and decoder of that checkpoint uses the same integers. The model
identifier in each file header is the sha256 of the model kind and architecture, the weights
(canonical order: sorted parameter paths, each with dtype, shape and little-endian bytes) and
both table digests (`model_identifier`, `model_id`).

Integer entropy path. A model calibrated with `python -m jdc_jax.integer calibrate` has its
integer entropy network (`jdc_jax.integer`) stored beside the checkpoint step, in
`<step>/integer_entropy.npz`; `from_checkpoint` loads it, and the codec then writes files whose
coding-table indexes every platform derives identically (`file_codec`, "Entropy paths"). Those
files carry `integer_model_identifier`: the float identifier and the integer network's digest.

Compiled pieces are jitted once per architecture; JAX compiles each once per image shape (the
integer path's functions once per codec: its integer weights are constants of the program).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jdc_jax import checkpoints
from jdc_jax.codec import file_format, model_id
from jdc_jax.codec.file_codec import (
    PADDING_MULTIPLE,
    STREAM_LAYOUTS,
    CodecFunctions,
    Decoding,
    Encoding,
    FileCodec,
    SymbolsMismatch,
)
from jdc_jax.codec.model_functions import describe_model, model_functions, scope_weights
from jdc_jax.codec.tiling import Tiling
from jdc_jax.entropy import latent_coding
from jdc_jax.entropy.tables import CodingTables
from jdc_jax.images import as_rgb, pad_to_multiple, to_uint8
from jdc_jax.codec.integer_functions import integer_functions, integer_model_identifier
from jdc_jax.integer.network import IntegerEntropyModel
from jdc_jax.models.registry import FIELDS_ADDED_LATER, model_from_config

# The coding core's names are this module's too (`jdc_jax.codec.api.SymbolsMismatch`, ...).
__all__ = ["Codec", "Decoding", "Encoding", "INTEGER_ENTROPY_FILE", "PADDING_MULTIPLE",
           "SymbolsMismatch", "TABLES_DIRECTORY", "architecture", "integer_functions",
           "integer_model_identifier", "as_rgb", "build_side_tables",
           "load_or_build_tables", "model_identifier", "named_parameters", "pad_to_multiple",
           "parameters_digest", "to_uint8"]
TABLES_DIRECTORY = "coding_tables"
INTEGER_ENTROPY_FILE = "integer_entropy.npz"
_ABSENT = object()


class Codec(FileCodec):
    """Compresses uint8 RGB images with one codec model and decodes its ``.jdc`` files.

    Args:
      model: an unbound Flax codec module (JICD, Hyperprior, Testolina or Cheng2020).
      params: its parameters (the "params" collection).
      side_tables, latent_tables: the coding tables; built from `params` when None (tests).
        `from_checkpoint` loads or builds and stores them.
      model_kind: the name written in file headers (`file_format.MODEL_KINDS`); default the
        module's own kind. Checkpoints use their config's name ("jdc", "codec", ...).
      config: the model's config dict (a checkpoint's), kept for export; None otherwise.
      tiling: when the analysis and synthesis run on tiles (`tiling.Tiling`, `FileCodec`).
      integer_entropy: the model's `IntegerEntropyModel` (`jdc_jax.integer`), or None: the
        codec then writes the integer entropy path by default and decodes both paths.
    """

    def __init__(self, model, params, *, side_tables: CodingTables | None = None,
                 latent_tables: CodingTables | None = None, model_kind: str | None = None,
                 config: dict | None = None, tiling: Tiling = Tiling(),
                 integer_entropy: IntegerEntropyModel | None = None):
        streams = getattr(model, "streams", None)
        if streams not in STREAM_LAYOUTS:
            raise ValueError(f"{type(model).__name__} is not a codec model (its streams are "
                             f"{streams}, not one of {STREAM_LAYOUTS})")
        kind = model_kind or model.kind  # FileCodec checks that files can name it
        self.model = model
        self.config = config
        self.params = jax.device_put(params)
        side_tables = build_side_tables(model, params) if side_tables is None else side_tables
        latent_tables = _latent_tables() if latent_tables is None else latent_tables
        description = describe_model(model, self.params)
        named = {name: functools.partial(_jitted(function.function),
                                         scope_weights(self.params, function.scope))
                 for name, function in model_functions(model, self.params).items()}
        float_id = model_identifier(model, kind, params, side_tables, latent_tables)
        if integer_entropy is not None:
            _check_integer_fits(integer_entropy, description)
        self.integer_entropy = integer_entropy
        super().__init__(
            functions=CodecFunctions.from_named(named, description.streams,
                                                description.context_model),
            model_kind=kind, model_id=float_id,
            context_model=description.context_model, streams=description.streams,
            groups=description.groups, side_channels=description.side_channels,
            side_tables=side_tables, latent_tables=latent_tables, tiling=tiling,
            integer=None if integer_entropy is None else integer_functions(
                integer_entropy, description.context_model, float_id))

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, tiling: Tiling = Tiling()) -> "Codec":
        """The codec of a checkpoint (work directory, checkpoints/ or one step directory; the
        latest step unless a step directory is given), with its stored coding tables."""
        params, config, step = checkpoints.restore_params(path)
        kind = config.get("model")
        if kind not in file_format.MODEL_KINDS:
            raise ValueError(f"checkpoint {path} holds a {kind!r} model, not a codec")
        model = model_from_config(config)
        step_directory = checkpoints.resolve_checkpoint_dir(path) / str(step)
        side_tables, latent_tables = load_or_build_tables(
            step_directory / TABLES_DIRECTORY, model, params)
        integer_path = step_directory / INTEGER_ENTROPY_FILE
        integer_entropy = IntegerEntropyModel.load(integer_path) if integer_path.is_file() \
            else None
        return cls(model, params, side_tables=side_tables, latent_tables=latent_tables,
                   model_kind=kind, config=config, tiling=tiling,
                   integer_entropy=integer_entropy)

    def with_integer_entropy(self, integer_entropy: IntegerEntropyModel | None) -> "Codec":
        """The codec of the same model, tables and tiling with another integer entropy network
        (None: the float path only)."""
        return Codec(self.model, self.params, side_tables=self.side_tables,
                     latent_tables=self.latent_tables, model_kind=self.model_kind,
                     config=self.config, tiling=self.tiling, integer_entropy=integer_entropy)

    def with_compute_dtype(self, dtype) -> "Codec":
        """The same weights, tables and integer network with the float parts computing in
        `dtype` (e.g. bfloat16, as a TPU computes float32 convolutions by default). It reads and
        writes this codec's model identifiers: only the float arithmetic differs, which the
        integer entropy path does not see (`jdc_jax.integer`); float-path files may then fail
        with `SymbolsMismatch`."""
        codec = Codec(self.model.clone(dtype=jnp.dtype(dtype)), self.params,
                      side_tables=self.side_tables, latent_tables=self.latent_tables,
                      model_kind=self.model_kind, config=self.config, tiling=self.tiling,
                      integer_entropy=self.integer_entropy)
        codec.model_id = self.model_id
        if self._integer is not None:
            codec._integer = dataclasses.replace(codec._integer, model_id=self.integer_model_id)
        return codec


def _check_integer_fits(integer_entropy: IntegerEntropyModel, description) -> None:
    """Raises ValueError when an integer network was not made for this model's shapes."""
    shapes = {stream: group.head.channels for stream, group in integer_entropy.groups.items()}
    wanted = {stream: group.channels for stream, group in description.groups.items()}
    if (integer_entropy.z_medians.size != description.side_channels or shapes != wanted
            or integer_entropy.hyper_synthesis[0].kernel.shape[2] != description.side_channels):
        raise ValueError(f"the integer entropy network (side channels "
                         f"{integer_entropy.z_medians.size}, groups {shapes}) does not fit this "
                         f"model (side channels {description.side_channels}, groups {wanted})")


@functools.lru_cache(maxsize=None)
def _jitted(function):
    """One jit per model function, shared by every Codec of that architecture."""
    return jax.jit(function)


@functools.lru_cache(maxsize=1)
def _latent_tables() -> CodingTables:
    return latent_coding.build_latent_tables()


# --------------------------------------------------------------------------- tables, identity

def build_side_tables(model, params) -> CodingTables:
    """The coding tables of the model's factorized prior: of the side latent z, or of y for the
    factorized-prior model (`factorized_prior`)."""
    return model.apply({"params": params}, method=lambda m: m.factorized_prior().build_tables())


def parameters_digest(params) -> str:
    """sha256 hex of the weights: sorted parameter paths, each with dtype, shape and bytes."""
    return model_id.weights_digest(named_parameters(params))


def named_parameters(params) -> list[tuple[str, np.ndarray]]:
    """(path, host array) of every parameter, in `jax.tree_util` leaf order; the path is
    `jax.tree_util.keystr`, e.g. "['g_a']['layers_0']['kernel']"."""
    return [(jax.tree_util.keystr(path), np.asarray(leaf))
            for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]]


def architecture(model, model_kind: str) -> str:
    """The JSON of the model kind and the module's architecture fields, as hashed in the model
    identifier. A field added later (`registry.FIELDS_ADDED_LATER`) at its default is left out,
    so models of before it existed keep their identifier."""
    fields = {field.name: getattr(model, field.name) for field in dataclasses.fields(model)
              if field.name not in ("parent", "name")
              and FIELDS_ADDED_LATER.get(field.name, _ABSENT) != getattr(model, field.name)}

    def as_json(value):
        if isinstance(value, (bool, int, float, str)):
            return value
        return list(value) if isinstance(value, tuple) else str(jnp.dtype(value))
    return json.dumps({"kind": model_kind, **{name: as_json(value)
                                              for name, value in fields.items()}},
                      sort_keys=True)


def model_identifier(model, model_kind: str, params, side_tables: CodingTables,
                     latent_tables: CodingTables) -> bytes:
    """The 32-byte model identifier of file headers: sha256 of the kind and architecture
    fields, the weights digest and both table digests (`model_id.model_identifier`)."""
    return model_id.model_identifier(architecture(model, model_kind), parameters_digest(params),
                                     side_tables.digest(), latent_tables.digest())


def load_or_build_tables(directory: str | os.PathLike, model, params
                         ) -> tuple[CodingTables, CodingTables]:
    """(side, latent) tables stored in `directory`, or built and stored there.

    Stored tables are used only when the manifest's parameters digest is that of `params` and
    each file's digest is the manifest's; otherwise (or when unreadable) they are rebuilt,
    with a note on stderr, and rewritten atomically. A read-only directory keeps the tables
    in memory only (also noted)."""
    directory = Path(directory)
    weights = parameters_digest(params)
    manifest_path = directory / "manifest.json"
    note = None
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("params_sha256") != weights:
            note = "were built from other parameters"
        else:
            side = CodingTables.load(directory / "side.bin")
            latent = CodingTables.load(directory / "latent.bin")
            if (side.digest(), latent.digest()) == (manifest.get("side_sha256"),
                                                    manifest.get("latent_sha256")):
                return side, latent
            note = "do not match their manifest"
    except FileNotFoundError:
        pass
    except (OSError, ValueError, TypeError, AttributeError) as error:
        note = f"are unreadable ({error})"
    if note:
        print(f"note: coding tables in {directory} {note}; rebuilding them", file=sys.stderr)
    side = build_side_tables(model, params)
    latent = _latent_tables()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        side.save(directory / "side.bin")
        latent.save(directory / "latent.bin")
        checkpoints.write_json_atomic(manifest_path, {
            "params_sha256": weights, "side_sha256": side.digest(),
            "latent_sha256": latent.digest()})
    except OSError as error:
        print(f"note: could not store the coding tables in {directory} ({error}); using them "
              f"from memory", file=sys.stderr)
    return side, latent
