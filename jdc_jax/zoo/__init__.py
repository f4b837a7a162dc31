"""The model zoo: trained codecs (and denoisers) shipped inside the package, loaded by name.

    codec = jdc_jax.zoo.load("jicd-sigma25", rate_point=1)
    data = codec.compress(noisy_uint8_rgb)              # a .jdc file (bytes)
    denoised = codec.decompress(data, "denoised")       # base layer only
    python -m jdc_jax compress --model jicd-sigma25 --rate-point 1 noisy.png out.jdc

Each entry is one rate point of one model, in `weights/NAME/rate_point_K/`:

    config.json          the training config (model kind, sizes, lambda, noise, ...)
    params.npz           every parameter, keyed by its path ("g_a/rb0/conv1/kernel"): each
                         convolution kernel (4-D, HWIO) as int8 with one float16 scale per
                         output channel under "PATH@scale" (value = int8 x scale, |value| at
                         most 127 scales), every other parameter as float16; loaded as float32
                         (the product is exact in float32), so the shipped model is exactly
                         these values
    side_tables.bin      the side latent's coding tables, built from those float32 values
    integer_entropy.npz  (optional) the integer entropy-parameter network (`jdc_jax.integer`),
                         calibrated once on the built-in images: the entry's codec then writes
                         files that decode identically on every platform
    card.json            name, rate point, lambda, what it was trained on and how (init_from:
                         the zoo name and rate point it was fine-tuned from, or null;
                         partial_fine_tune: a later fine-tune of some modules with the rest
                         frozen, {"steps", "trained_modules", "learning_rate"}, or null),
                         parameter count, the model identifier written in its float-path files,
                         the sha256 of the parameters and of both tables, and with an integer
                         network its digest ("integer_entropy_sha256") and the identifier of
                         its integer-path files ("integer_model_id")

A denoiser (`registry.DENOISER_KINDS`: the FFDNet of the campaign's cascade, say) has no rate
point: its entry is `weights/NAME/` itself, holding config.json, params.npz and a card without
tables, and it is named zoo:NAME wherever a denoiser checkpoint is expected (`jdc_jax.evaluate
--denoiser`, `teacher_checkpoint`, `init_from`).

The latent's coding tables do not depend on the model (`entropy.latent_coding`), so one copy,
`weights/latent_tables.bin`, serves every entry.

Storage. Kernels hold almost all parameters. int8 kernels with a scale per output channel
(the largest magnitude of the channel maps to 127, so a weight moves by at most half a step) are
half the size of float16: an entry of the campaign's JICD (N = M = 64, 4.3 million parameters)
takes 5.3 MiB instead of 9.7 (4.2 MiB of weights and 1.0 MiB of integer network), so that three
ladders of four rate points fit the zoo's budget of 80 MB. Measured with real files on that model
(rate point 1 at 7,000 steps, all 24 Kodak images, AWGN 25, `jdc_jax.evaluate`), int8 against
float16 kernels: 25.804 -> 25.796 dB, 0.14100 -> 0.14145 bpp (+0.32 %), MS-SSIM 0.8878 ->
0.8876 (`results/campaign/awgn25/jicd_sigma25_rp1_step7000{,_int8}.json`). Zeros stay
exactly zero, so a masked (causal) kernel stays causal. The tables ship rather than being
rebuilt, so files written on one machine decode on another (the model identifier covers the
tables).
`python -m jdc_jax.zoo.build` makes an entry from a training checkpoint.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

WEIGHTS_DIRECTORY = Path(__file__).resolve().parent / "weights"
PARAMS_FILE = "params.npz"
CONFIG_FILE = "config.json"
CARD_FILE = "card.json"
SIDE_TABLES_FILE = "side_tables.bin"
LATENT_TABLES_FILE = "latent_tables.bin"
PATH_SEPARATOR = "/"
# The key of an int8 kernel's float16 scales (one per output channel): "PATH@scale".
SCALE_SUFFIX = "@scale"
RATE_POINT_DIRECTORY = re.compile(r"rate_point_(\d+)")
# An entry's name: a single path component that a zoo: spec can name (no "/", ":" or leading
# "." — the staging directories of a build start with ".").
ENTRY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# A shipped model named where a checkpoint path is expected (`jdc_jax.evaluate --checkpoints`,
# `--config.init_from`): zoo:NAME:RATE_POINT.
SPEC_PREFIX = "zoo:"


def parse_spec(spec: str) -> tuple[str, int]:
    """(name, rate point) of "zoo:NAME:RATE_POINT"; ValueError naming the expected form."""
    name, rate_point = split_spec(spec)
    if rate_point is None:
        raise ValueError(f"{spec!r}: expected zoo:NAME:RATE_POINT, e.g. zoo:jicd-sigma25:1")
    return name, rate_point


def split_spec(spec: str) -> tuple[str, int | None]:
    """(name, rate point) of "zoo:NAME:RATE_POINT" (a codec), (name, None) of "zoo:NAME" (a
    denoiser); ValueError naming the expected forms."""
    body = spec.removeprefix(SPEC_PREFIX)
    name, separator, rate_point = body.partition(":")
    if (not spec.startswith(SPEC_PREFIX) or not name or
            (separator and not rate_point.isdigit())):
        raise ValueError(f"{spec!r}: expected zoo:NAME:RATE_POINT (a codec, e.g. "
                         "zoo:jicd-sigma25:1) or zoo:NAME (a denoiser, e.g. zoo:ffdnet-clip)")
    return name, int(rate_point) if separator else None


class UnknownModel(ValueError):
    """A zoo name or rate point that is not shipped."""


def available(root: Path | None = None) -> dict[str, tuple[int, ...]]:
    """{name: its rate points, ascending} of every shipped model (under `root`, default the
    package's `weights/`)."""
    root = weights_root(root)
    models = {}
    if root.is_dir():
        for model in sorted(p for p in root.iterdir() if p.is_dir()):
            points = sorted(int(match.group(1)) for match in
                            (RATE_POINT_DIRECTORY.fullmatch(p.name) for p in model.iterdir())
                            if match and (model / match.group(0) / PARAMS_FILE).is_file())
            if points:
                models[model.name] = tuple(points)
    return models


def weights_root(root: Path | None = None) -> Path:
    """`root`, or the package's weights/ (the `JDC_ZOO_ROOT` environment variable overrides
    it, e.g. for a zoo kept outside the installation)."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get("JDC_ZOO_ROOT") or WEIGHTS_DIRECTORY)


def denoisers(root: Path | None = None) -> tuple[str, ...]:
    """The names of the shipped denoisers (entries without rate points), sorted."""
    root = weights_root(root)
    if not root.is_dir():
        return ()
    return tuple(sorted(p.name for p in root.iterdir()
                        if ENTRY_NAME.fullmatch(p.name) and (p / PARAMS_FILE).is_file()))


def denoiser_directory(name: str, root: Path | None = None) -> Path:
    """The directory of a shipped denoiser; UnknownModel naming the ones there are."""
    shipped = denoisers(root)
    if name not in shipped:
        raise UnknownModel(f"unknown zoo denoiser {name!r}; available: "
                           f"{', '.join(shipped) or 'none'}")
    return weights_root(root) / name


def restore(spec: str, root: Path | None = None) -> tuple[dict, dict, int]:
    """(float32 parameter tree, config dict, training steps) of zoo:NAME:RATE_POINT (a codec)
    or zoo:NAME (a denoiser), the parameters checked against the card's digest: what training
    (`init_from`) and evaluation (`--denoiser`) read where they would read a checkpoint."""
    name, rate_point = split_spec(spec)
    directory = (denoiser_directory(name, root) if rate_point is None
                 else entry_directory(name, rate_point, root))
    entry_card, config, params = _read_entry(directory)
    return params, config, int(entry_card["training_steps"])


def _read_entry(directory: Path) -> tuple[dict, dict, dict]:
    """(card, config, float32 parameter tree) of an entry, the parameters checked against the
    card's params_sha256 (DamagedEntry naming both files otherwise)."""
    from jdc_jax.codec.api import parameters_digest

    entry_card = json.loads((directory / CARD_FILE).read_text())
    params = load_params(directory)
    if parameters_digest(params) != entry_card.get("params_sha256"):
        raise DamagedEntry(f"{directory / PARAMS_FILE} does not match the params_sha256 of "
                           f"{directory / CARD_FILE}")
    return entry_card, json.loads((directory / CONFIG_FILE).read_text()), params


def entry_directory(name: str, rate_point: int | None = None, root: Path | None = None) -> Path:
    """The directory of one entry; `rate_point` None is the model's highest rate point."""
    root = weights_root(root)
    models = available(root)
    if name not in models:
        listed = ", ".join(f"{n} (rate points {', '.join(map(str, p))})"
                           for n, p in models.items()) or "none"
        raise UnknownModel(f"unknown zoo model {name!r}; available: {listed}")
    points = models[name]
    if rate_point is None:
        rate_point = points[-1]
    if rate_point not in points:
        raise UnknownModel(f"zoo model {name!r} has no rate point {rate_point}; it has "
                           f"{', '.join(map(str, points))}")
    return root / name / f"rate_point_{rate_point}"


def card(name: str, rate_point: int | None = None, root: Path | None = None) -> dict:
    """The entry's card (see the module docstring)."""
    return json.loads((entry_directory(name, rate_point, root) / CARD_FILE).read_text())


def denoiser_card(name: str, root: Path | None = None) -> dict:
    """A shipped denoiser's card."""
    return json.loads((denoiser_directory(name, root) / CARD_FILE).read_text())


def load_params(directory: Path) -> dict:
    """The float32 parameter tree of an entry's params.npz (see the module docstring): float16
    arrays, and int8 kernels times their float16 "@scale" per output channel. A file holding
    anything else (another dtype, a kernel without its scales, scales of the wrong shape or
    without their kernel) is refused by name."""
    path = directory / PARAMS_FILE
    with np.load(path, allow_pickle=False) as stored:
        flat = {key: stored[key] for key in stored.files}
    params: dict = {}
    for key, value in flat.items():
        if key.endswith(SCALE_SUFFIX):
            kernel = flat.get(key.removesuffix(SCALE_SUFFIX))
            if kernel is None or kernel.dtype != np.int8:
                raise ValueError(f"{path}: {key} scales no int8 kernel")
            continue
        if value.dtype == np.int8:
            if value.ndim != 4:
                raise ValueError(f"{path}: int8 {key} has shape {value.shape}; only 4-D "
                                 "kernels are stored as int8")
            scale = flat.get(key + SCALE_SUFFIX)
            if scale is None or scale.dtype != np.float16 or scale.shape != value.shape[-1:]:
                raise ValueError(f"{path}: int8 {key} {value.shape} needs float16 scales "
                                 f"{key + SCALE_SUFFIX} of shape ({value.shape[-1]},)")
            value = value.astype(np.float32) * scale.astype(np.float32)
        elif value.dtype == np.float16:
            value = value.astype(np.float32)
        else:
            raise ValueError(f"{path}: {key} is {value.dtype}, not float16 or int8")
        node = params
        *parents, leaf = key.split(PATH_SEPARATOR)
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return params


class DamagedEntry(ValueError):
    """A zoo entry whose files do not match its card."""


def load(name: str, rate_point: int | None = None, root: Path | None = None):
    """The `jdc_jax.codec.Codec` of a shipped model (highest rate point unless given).

    The parameters, both tables and the integer network (when the entry has one; the codec
    then writes the integer entropy path) are checked against the card's digests, so a damaged or
    mixed-up file is refused by name instead of writing files no other copy can decode."""
    from jdc_jax.codec.api import INTEGER_ENTROPY_FILE, Codec
    from jdc_jax.codec.model_id import weights_digest
    from jdc_jax.entropy.tables import CodingTables
    from jdc_jax.integer.network import IntegerEntropyModel
    from jdc_jax.models.registry import model_from_config

    directory = entry_directory(name, rate_point, root)
    entry_card, config, params = _read_entry(directory)
    side_tables = CodingTables.load(directory / SIDE_TABLES_FILE)
    latent_tables = CodingTables.load(directory.parent.parent / LATENT_TABLES_FILE)
    for what, digest, expected in (
            (directory / SIDE_TABLES_FILE, side_tables.digest(), "side_tables_sha256"),
            (directory.parent.parent / LATENT_TABLES_FILE, latent_tables.digest(),
             "latent_tables_sha256")):
        if digest != entry_card.get(expected):
            raise DamagedEntry(f"{what} does not match the {expected} of {directory / CARD_FILE}")
    integer = None
    if (directory / INTEGER_ENTROPY_FILE).is_file():
        integer = IntegerEntropyModel.load(directory / INTEGER_ENTROPY_FILE)
        if weights_digest(integer.named_arrays()) != entry_card.get("integer_entropy_sha256"):
            raise DamagedEntry(f"{directory / INTEGER_ENTROPY_FILE} does not match the "
                               f"integer_entropy_sha256 of {directory / CARD_FILE}")
    return Codec(model_from_config(config), params, side_tables=side_tables,
                 latent_tables=latent_tables, model_kind=config["model"], config=config,
                 integer_entropy=integer)
