"""Synthetic camera noise, in two halves that implement the same models: `numpy_noise` (the
reference, used by evaluation and tests) and `tf_noise` (stateless TF ops, used inside the
tf.data pipeline). Read them side by side; tests/test_input_pipeline.py checks that their
distributions agree.

`jdc_jax.noise` itself is the numpy half (it imports no TensorFlow).
"""

from jdc_jax.noise.numpy_noise import (  # noqa: F401
    CHANNELS,
    ChannelParameterDistributions,
    Choice,
    Interval,
    InverseCDF,
    NOISE_KINDS,
    NoiseSpec,
    Parameter,
    PracticalNoiseParameters,
    SIDD_QUANTILES,
    SIDD_QUANTILE_LEVELS,
    add_noise,
    load_practical_parameters,
    noisy_for_file,
    parse_noise_spec,
    quantize_8bit,
    seed_for_name,
    synthesize_unclipped,
)
