"""Codec and denoiser models. Every codec returns its reconstructions and one likelihood tensor
per bitstream, so rates can be reported per stream."""

from jdc_jax.models.registry import (MODEL_FIELDS, MODEL_KINDS, build_model, init_params,
                                     model_from_config)

__all__ = ["MODEL_FIELDS", "MODEL_KINDS", "build_model", "init_params", "model_from_config"]
