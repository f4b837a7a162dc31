"""Evaluation results files: CompressAI-shaped JSON, written atomically and validated on read.

A results file describes one method evaluated on one data set. Its top-level object
(``RESULTS_SCHEMA``)::

    {
      "name": "JICD sigma=25",            # str, required: legend entry / table row
      "description": "...",               # str, optional (default "")
      "kind": "rate_distortion",          # "rate_distortion" (default) or "reference"
      "meta": {"dataset": "kodak", "noise": "awgn sigma=25", "seed": 0,
               "checkpoints": [...], "date": "...", "machine": "..."},   # object, free-form
      "results": {"bpp": [0.12, 0.25, 0.51], "psnr": [28.1, 29.4, 30.2], ...},
      "per_image": [{"image": "kodim01", "rate_point": 0, "bpp": 0.11, ...}, ...]  # optional
    }

Kinds:

- ``"rate_distortion"``: a codec at several rate points (one checkpoint each). Every value in
  ``results`` is a list of finite numbers with one entry per rate point; all lists have the same
  length (at least 1); ``results["bpp"]`` is required and all lists are ordered by increasing
  ``bpp`` (writing and reading both sort them). A file without ``"kind"`` is of this kind, so
  CompressAI's own results files read as they are.
- ``"reference"``: a method without a rate, such as a denoiser applied to the raw noisy image or
  CBM3D. Every value in ``results`` is a single finite number and no rate key (a key starting
  with ``"bpp"``) may appear. Plots draw these as horizontal lines.

Keys written by our evaluation (others are allowed). Images are compared in [0, 255]:

==================================  ==========================================================
``bpp``                             bits per pixel of the denoised product (side + base
                                    streams), divided by the real (unpadded) pixel count
``bpp_full``                        bits per pixel of the whole file (side + base + enhancement)
``psnr``, ``ssim``, ``ms-ssim``     denoised output vs clean image (PSNR in dB)
``psnr_noisy_reconstruction``,      full (noisy) reconstruction vs noisy input
``ssim_noisy_reconstruction``,
``ms-ssim_noisy_reconstruction``
``psnr_base_vs_noisy``              denoised output (base layer alone) vs noisy input, for
                                    scalable codecs: what the full reconstruction improves on
``psnr_noisy_input``                noisy input vs clean image (how hard the noise is)
``encoding_time``,                  seconds per image, mean over the data set
``decoding_time``
==================================  ==========================================================

Each value is the mean over the images of the data set; ``per_image`` (a list of free-form
objects) may hold the individual values.
"""

import json
import math
import numbers
import os
from typing import Any, NamedTuple

from jdc_jax.atomic_write import write_bytes_atomic

RATE_DISTORTION = "rate_distortion"
REFERENCE = "reference"
KINDS = (RATE_DISTORTION, REFERENCE)
RATE_KEY = "bpp"


class Field(NamedTuple):
    """One top-level key of a results file."""

    json_type: type
    required: bool
    description: str


RESULTS_SCHEMA: dict[str, Field] = {
    "name": Field(str, True, "label of the method, used as legend entry and table row"),
    "description": Field(str, False, "free text; defaults to an empty string"),
    "kind": Field(str, False, f"one of {KINDS}; defaults to {RATE_DISTORTION!r}"),
    "meta": Field(dict, False, "free-form object: dataset, noise, seed, checkpoints, date, ..."),
    "results": Field(dict, True, "metric name -> list of numbers per rate point, or one number"),
    "per_image": Field(list, False, "optional list of free-form objects, one per image/point"),
}


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _finite_number(value: Any, where: str) -> float:
    if not _is_number(value):
        raise ValueError(f"{where} is not a number: {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{where} is not finite: {value}")
    return value


def _validated_rate_distortion(results: dict, source: str) -> dict[str, list[float]]:
    """Checks one-list-per-metric results of equal lengths and returns them sorted by bpp."""
    if RATE_KEY not in results:
        raise ValueError(f"{source}: missing key results[{RATE_KEY!r}]")
    columns = {}
    for key, values in results.items():
        if hasattr(values, "tolist"):  # numpy arrays from the evaluation
            values = values.tolist()
        if not isinstance(values, (list, tuple)):
            raise ValueError(
                f"{source}: results[{key!r}] must be a list (one entry per rate point), "
                f"got {values!r}"
            )
        columns[key] = [
            _finite_number(value, f"{source}: results[{key!r}][{index}]")
            for index, value in enumerate(values)
        ]
    point_count = len(columns[RATE_KEY])
    if point_count == 0:
        raise ValueError(f"{source}: results[{RATE_KEY!r}] is empty")
    for key, values in columns.items():
        if len(values) != point_count:
            raise ValueError(
                f"{source}: results[{key!r}] has {len(values)} entries but "
                f"results[{RATE_KEY!r}] has {point_count}"
            )
    order = sorted(range(point_count), key=lambda index: columns[RATE_KEY][index])
    return {key: [values[index] for index in order] for key, values in columns.items()}


def _validated_reference(results: dict, source: str) -> dict[str, float]:
    """Checks single-number results without any rate key."""
    rate_keys = [key for key in results if key.startswith(RATE_KEY)]
    if rate_keys:
        raise ValueError(f"{source}: a {REFERENCE!r} result has no rate, but has {rate_keys}")
    return {
        key: _finite_number(value, f"{source}: results[{key!r}]") for key, value in results.items()
    }


def validate_results(document: Any, source: str = "results") -> dict:
    """Checks a results object against ``RESULTS_SCHEMA`` and returns a normalized copy.

    The copy has every optional key filled in (``description`` "", ``kind``, ``meta`` {},
    ``per_image`` []), numbers as Python floats, and rate-distortion lists sorted by ``bpp``.

    Raises:
      ValueError: naming ``source`` and the problem (missing key, wrong type, unknown kind,
        non-numeric or non-finite value, lists of different lengths, rate in a reference).
    """
    if not isinstance(document, dict):
        raise ValueError(
            f"{source}: a results file holds a JSON object, got {type(document).__name__}"
        )
    for key, field in RESULTS_SCHEMA.items():
        if key not in document:
            if field.required:
                raise ValueError(f"{source}: missing key {key!r}")
            continue
        if not isinstance(document[key], field.json_type):
            raise ValueError(
                f"{source}: {key!r} must be a JSON {field.json_type.__name__}, "
                f"got {type(document[key]).__name__}"
            )
    kind = document.get("kind", RATE_DISTORTION)
    if kind not in KINDS:
        raise ValueError(f"{source}: unknown kind {kind!r}; expected one of {KINDS}")
    per_image = list(document.get("per_image", []))
    for index, entry in enumerate(per_image):
        if not isinstance(entry, dict):
            raise ValueError(f"{source}: per_image[{index}] must be an object, got {entry!r}")

    if kind == RATE_DISTORTION:
        results = _validated_rate_distortion(document["results"], source)
    else:
        results = _validated_reference(document["results"], source)
    return {
        "name": document["name"],
        "description": document.get("description", ""),
        "kind": kind,
        "meta": dict(document.get("meta", {})),
        "results": results,
        "per_image": per_image,
    }


def write_results(
    path: str | os.PathLike,
    name: str,
    results: dict,
    *,
    description: str = "",
    meta: dict | None = None,
    per_image: list | None = None,
    kind: str = RATE_DISTORTION,
) -> dict:
    """Validates and atomically writes a results file; returns the document as written.

    Args:
      path: destination ``.json`` file.
      name: label of the method.
      results: metric name -> list of numbers per rate point (``kind="rate_distortion"``,
        ``"bpp"`` required) or -> one number (``kind="reference"``); numpy values are accepted.
      description, meta, per_image: see the module docstring. ``meta`` and ``per_image`` must be
        JSON-serializable.
      kind: ``"rate_distortion"`` or ``"reference"``.
    """
    document = {
        "name": name,
        "description": description,
        "kind": kind,
        "meta": meta if meta is not None else {},
        "results": dict(results),
        "per_image": per_image if per_image is not None else [],
    }
    document = validate_results(document, source=os.fspath(path))
    try:
        text = json.dumps(document, indent=2, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{os.fspath(path)}: meta or per_image is not JSON-serializable: {error}")
    write_bytes_atomic(path, (text + "\n").encode("utf-8"))
    return document


def read_results(path: str | os.PathLike) -> dict:
    """Reads and validates a results file (see ``validate_results`` for the returned form)."""
    source = os.fspath(path)
    with open(source, "rb") as stream:
        raw = stream.read()
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"{source}: not valid JSON: {error}") from None
    return validate_results(document, source=source)


def rate_distortion_curve(
    document: dict, rate_key: str, quality_key: str, source: str | None = None
) -> tuple[list[float], list[float]]:
    """The (rates, qualities) lists of a validated rate-distortion results document.

    Raises:
      ValueError: if the document is a reference (no rate) or lacks either key.
    """
    source = source or document["name"]
    if document["kind"] != RATE_DISTORTION:
        raise ValueError(f"{source}: is a {document['kind']!r} result and has no rate points")
    return result(document, rate_key, source), result(document, quality_key, source)


def result(document: dict, key: str, source: str | None = None) -> list[float] | float:
    """``document["results"][key]``, or a ValueError naming the missing key and those present."""
    if key not in document["results"]:
        available = sorted(document["results"])
        raise ValueError(
            f"{source or document['name']}: missing key results[{key!r}]; available: {available}"
        )
    return document["results"][key]
