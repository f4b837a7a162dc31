"""The model identifier written into every ``.jdc`` header, from plain strings and arrays.

    model_id = sha256(b"jdc model id v1\\0"
                      + architecture + b"\\0"        # JSON: kind and architecture fields
                      + weights digest + b"\\0"      # `weights_digest`, hex
                      + side tables digest + b"\\0"  # `CodingTables.digest()`, hex
                      + latent tables digest + b"\\0")

    weights digest = sha256 over the parameters sorted by path, each contributing
                     f"{path}|{dtype.str}|{shape}\\n" and its little-endian bytes

32 bytes. Pure hashlib and numpy, so a decoder that holds only the weights as named arrays (an
exported package) computes the same identifier as the model-based codec.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

import numpy as np

_MODEL_ID_VERSION = b"jdc model id v1\0"


def weights_digest(named_arrays: Iterable[tuple[str, np.ndarray]]) -> str:
    """sha256 hex of (path, array) pairs: sorted by path, each with dtype, shape and bytes."""
    digest = hashlib.sha256()
    for path, array in sorted(named_arrays, key=lambda pair: pair[0]):
        array = np.asarray(array)
        array = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<")))
        digest.update(f"{path}|{array.dtype.str}|{array.shape}\n".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def model_identifier(architecture: str, weights: str, side_tables: str,
                     latent_tables: str) -> bytes:
    """The 32-byte identifier of the architecture JSON and the weights and table digests."""
    digest = hashlib.sha256(_MODEL_ID_VERSION)
    for part in (architecture, weights, side_tables, latent_tables):
        digest.update(part.encode() + b"\0")
    return digest.digest()


_INTEGER_MODEL_ID_VERSION = b"jdc integer model id v1\0"


def integer_model_identifier(float_model_id: bytes, integer_network: str) -> bytes:
    """The 32-byte identifier of files written with the integer entropy path:

        sha256(b"jdc integer model id v1\\0" + float model id + integer network digest (hex))

    The float model identifier covers the architecture, weights and tables; the integer network's
    digest (`weights_digest` of `IntegerEntropyModel.named_arrays()`) covers the integer weights,
    divisors, clip ranges and thresholds. Float-path files keep the float identifier, so a model
    calibrated later still decodes the files it wrote before."""
    return hashlib.sha256(_INTEGER_MODEL_ID_VERSION + bytes(float_model_id)
                          + integer_network.encode() + b"\0").digest()
