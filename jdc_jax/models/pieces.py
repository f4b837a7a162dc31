"""The transform pieces every codec model exposes to the bitstream codec.

Each is one `model.apply(params, ..., method=...)`: the encoder and decoder run exactly these
compiled functions. Transforms run in the model's compute dtype; everything handed to entropy
modelling is float32.
"""

from __future__ import annotations

import jax.numpy as jnp


class CodecPieces:
    """Mixin for Flax codec modules that define `g_a`, `h_a`, `side_prior` and `h_s` in setup."""

    def factorized_prior(self):
        """The factorized prior whose coding tables the codec builds: the side latent's."""
        return self.side_prior

    def analysis(self, x):
        """x (B, H, W, 3) in [0, 1] -> y (B, H/16, W/16, M)."""
        return self.g_a(x.astype(self.dtype)).astype(jnp.float32)

    def hyper_analysis(self, y):
        """y -> z (B, H/64, W/64, N)."""
        return self.h_a(y.astype(self.dtype)).astype(jnp.float32)

    def hyper_synthesis(self, z_hat):
        """z_hat -> psi (B, H/16, W/16, 2M)."""
        return self.h_s(z_hat.astype(self.dtype)).astype(jnp.float32)

    def single_layer_forward(self, x, *, train: bool):
        """The forward pass of a single-layer codec (side + base streams, one synthesis)."""
        y = self.analysis(x)
        z_hat, side_likelihoods = self.side_prior(self.hyper_analysis(y),
                                                  mode="noise" if train else "round")
        y_hat, base_likelihoods, _, _ = self.base_parameters.quantize_and_model(
            self.hyper_synthesis(z_hat), y, train=train, decoder_input=self.decoder_input)
        return {
            "reconstruction": self.synthesize(y_hat),
            "likelihoods": {"side": side_likelihoods, "base": base_likelihoods},
        }
