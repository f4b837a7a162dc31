"""The integer entropy-parameter path: coding-table indexes that every platform derives alike.

A learned codec's range coder needs the encoder and the decoder to derive the same table index
for every symbol. Float networks cannot promise that across platforms (TF32 and bfloat16 passes,
fused and reordered sums); integer networks can (Balle, Johnston & Minnen, ICLR 2019, "Integer
networks for data compression with latent-variable models"). This package holds:

- `network`: the integer layers, heads and groups of one model, their worst-case accumulator
  bounds (asserted below 2^31) and their storage (`integer_entropy.npz`);
- `ops`: their evaluation with XLA integer operations (im2col + int32 matrix products), the
  functions the codec jits;
- `reference`: a plain numpy int64 implementation of the same arithmetic, for tests;
- `float_network`: a float model's hyper synthesis and entropy-parameter networks rewritten as
  the same list of stride-1 layers (sub-pixel and transposed convolutions exactly);
- `calibrate`: post-training conversion from calibration images;
- `python -m jdc_jax.integer calibrate --checkpoint DIR`: the command that stores the integer
  network beside a checkpoint, after which its codec writes the integer path by default
  (`jdc_jax.codec.file_codec`, "Entropy paths"); the training job calibrates its final
  checkpoint itself, from the parameters in memory (`calibrate.calibrate_codec`,
  `config.integer_calibration`).

Only the entropy parameters are integer: the analysis and synthesis transforms stay float, so
decoded pixels may still differ slightly across platforms (README, "Integer entropy path").
"""
