"""Converters from other libraries' weights to jdc_jax checkpoints (`jdc_jax.convert.compressai`)."""
