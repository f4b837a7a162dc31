"""Entropy models and entropy coding: quantization, the factorized and Gaussian densities, their
integer coding tables, and the range coder.

Names are resolved on first use, so importing one submodule (e.g. the range coder, which an
exported inference package needs) does not import Flax through the factorized prior.
"""

import importlib

_EXPORTS = {
    "FactorizedPrior": "factorized",
    "build_factorized_tables": "factorized",
    "SCALE_BOUND": "gaussian",
    "SCALE_TABLE": "gaussian",
    "GaussianConditional": "gaussian",
    "build_gaussian_tables": "gaussian",
    "gaussian_likelihood": "gaussian",
    "scale_indexes": "gaussian",
    "QUANTIZATION_MODES": "quantization",
    "lower_bound": "quantization",
    "quantize": "quantization",
    "Decoder": "range_coder",
    "Encoder": "range_coder",
    "decode": "range_coder",
    "encode": "range_coder",
    "CodingTables": "tables",
    "quantize_pmf": "tables",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
