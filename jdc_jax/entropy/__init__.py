"""Entropy models and entropy coding: quantization, the factorized and Gaussian densities, their
integer coding tables, and the range coder."""

from jdc_jax.entropy.factorized import FactorizedPrior, build_factorized_tables
from jdc_jax.entropy.gaussian import (
    SCALE_BOUND,
    SCALE_TABLE,
    GaussianConditional,
    build_gaussian_tables,
    gaussian_likelihood,
    scale_indexes,
)
from jdc_jax.entropy.quantization import QUANTIZATION_MODES, lower_bound, quantize
from jdc_jax.entropy.range_coder import Decoder, Encoder, decode, encode
from jdc_jax.entropy.tables import CodingTables, quantize_pmf
