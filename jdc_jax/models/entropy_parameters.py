"""Context model and entropy-parameter network for one latent group (Minnen et al. 2018,
Cheng et al. 2020), with optional extra conditioning.

For a group of C_g latent channels the network predicts a Gaussian mean and scale per element:

    ctx   = MaskedConv5x5_A(y_hat_group) -> 2 C_g channels         (if a context model is used)
    (mean, scale) = EP(concat(psi, ctx, extra))                   (1x1 convolutions)

`psi` are the hyper-synthesis features (2M channels) and `extra` optional conditioning: the JICD
enhancement group is conditioned on the decoded base latent, while the base group sees only its
own context and psi, so the base stream decodes without any enhancement bytes. The 1x1 EP network
narrows its input width D as D -> 5D/6 -> 2D/3 -> 2 C_g with LeakyReLU, which for the full
Cheng latent (D = 4M) is the paper's 12M/3 -> 10M/3 -> 8M/3 -> 2M.

Context kinds: "none" (hyperprior only), "serial" (5x5 raster-order masked convolution, decoded
one wavefront of positions at a time, or one position at a time: `jdc_jax.codec.scan_order`), "checkerboard" (He et al. 2021: anchors from the hyperprior alone,
non-anchors from a masked convolution over the anchors; two parallel passes).

Without the EP network (`parameter_network=False`, hyperprior only, no context) psi itself holds
the parameters: its first C_g channels are the mean and the last C_g the scale (Minnen et al.'s
"mbt2018-mean"). With `predicts_mean=False` the mean is 0 and psi (or the network) gives only
the scale (Balle et al. 2018's scale hyperprior, "bmshj2018-hyperprior").
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jdc_jax.entropy import latent_coding
from jdc_jax.layers.blocks import conv, leaky_relu
from jdc_jax.layers.causal_mask import checkerboard_anchors
from jdc_jax.layers.conv import MaskedConv, masked_conv_mask

CONTEXT_MODELS = ("none", "serial", "checkerboard")


def checkerboard_anchor_mask(height: int, width: int):
    """(height, width) float mask, 1 at anchor positions (`causal_mask.checkerboard_anchors`)."""
    return jnp.asarray(checkerboard_anchors(height, width), jnp.float32)


class GroupEntropyParameters(nn.Module):
    """Predicts (mean, scale), each (B, h, w, channels), for one latent group."""
    channels: int            # C_g, the group's latent channels
    hyper_channels: int      # channels of psi (2M)
    extra_channels: int = 0  # channels of the extra conditioning (0: none)
    context_model: str = "serial"
    dtype: Any = jnp.float32
    parameter_network: bool = True  # False: psi holds (mean, scale) itself (no context/extra)
    predicts_mean: bool = True      # False: the mean is 0, only the scale is predicted

    @property
    def parameters_per_channel(self) -> int:
        """Predicted values per latent channel: mean and scale (2), or the scale alone (1)."""
        return 2 if self.predicts_mean else 1

    def setup(self):
        if self.context_model not in CONTEXT_MODELS:
            raise ValueError(f"unknown context_model {self.context_model!r}; "
                             f"expected one of {CONTEXT_MODELS}")
        if not self.parameter_network:
            wanted = self.parameters_per_channel * self.channels
            if self.context_model != "none" or self.extra_channels:
                raise ValueError("without an entropy-parameter network the parameters come from "
                                 "psi alone: context_model must be 'none', with no extra input")
            if self.hyper_channels != wanted:
                raise ValueError(f"without an entropy-parameter network psi must have "
                                 f"{wanted} channels (the parameters), got {self.hyper_channels}")
            return
        width = self.hyper_channels + self.extra_channels
        if self.context_model == "serial":
            self.context = MaskedConv(2 * self.channels, 5, "A")
            width += 2 * self.channels
        elif self.context_model == "checkerboard":
            # Its input is masked to the anchors, so a plain 5x5 kernel sees exactly the
            # neighbouring anchors.
            self.context = conv(2 * self.channels, 5, dtype=self.dtype)
            width += 2 * self.channels
        self.ep0 = conv(max(width * 5 // 6, 1), 1, dtype=self.dtype)
        self.ep1 = conv(max(width * 2 // 3, 1), 1, dtype=self.dtype)
        self.ep2 = conv(self.parameters_per_channel * self.channels, 1, dtype=jnp.float32)

    def context_features(self, y_hat_group):
        """Masked-convolution features (B, h, w, 2 C_g) of an already quantized group."""
        return self.context(y_hat_group)

    def serial_context_taps(self):
        """(k, k) bool numpy mask of the causal taps of the serial context's k x k window: the
        positions before its centre in raster order (`masked_conv_mask` type "A"); T of them
        (12 for k = 5)."""
        if self.context_model != "serial":
            raise ValueError(f"the {self.context_model!r} context model has no causal taps")
        return masked_conv_mask(self.context.kernel_size, self.context.mask_type) > 0

    def serial_context_matrix(self):
        """The serial context of one position as one matrix product.

        Returns (matrix (T * C_g, 2 C_g), bias (2 C_g,)) float32 such that, for taps (B, T, C_g)
        the quantized latent at the T causal positions around a position (`serial_context_taps`
        in raster order; zero outside the latent), taps.reshape(B, T * C_g) @ matrix + bias is
        the masked convolution `context_features` gives at that position, up to floating-point
        summation order. Computed once per model, so a per-position step reads only these taps.
        """
        parameters = self.context.variables["params"]
        kernel = jnp.asarray(parameters["kernel"], jnp.float32)[self.serial_context_taps()]
        return kernel.reshape(-1, kernel.shape[-1]), jnp.asarray(parameters["bias"], jnp.float32)

    def entropy_parameters_at(self, psi_at, causal_taps, context_matrix, context_bias,
                              extra_at=None):
        """(mean, scale), each (B, C_g) float32, at B positions of a serial-context group (one
        position, or the positions of one wavefront).

        psi_at (B, 2M) and extra_at (B, E) are the hyper-synthesis features and the extra
        conditioning at the positions, causal_taps (B, T, C_g) its already decoded neighbours and
        (context_matrix, context_bias) `serial_context_matrix()`. This is the per-position form
        the serial encoder and decoder both run, so they see identical floats.
        """
        taps = jnp.asarray(causal_taps, jnp.float32)
        # No -1 in the shape: B may be a symbolic dimension (`jax.export`).
        context = (taps.reshape(taps.shape[0], taps.shape[1] * taps.shape[2]) @ context_matrix
                   + context_bias)
        extra = None if extra_at is None else extra_at[:, None, None, :]
        mean, scale = self.entropy_parameters(psi_at[:, None, None, :],
                                              context[:, None, None, :], extra)
        return mean[:, 0, 0], scale[:, 0, 0]

    def entropy_parameters(self, psi, context=None, extra=None):
        """The 1x1 EP network on concat(psi, context, extra) (or psi itself without one);
        returns (mean, scale) in float32."""
        parts = [psi] + [p for p in (context, extra) if p is not None]
        h = jnp.concatenate([p.astype(jnp.float32) for p in parts], axis=-1)
        if self.parameter_network:
            h = leaky_relu(self.ep0(h))
            h = leaky_relu(self.ep1(h))
            h = self.ep2(h).astype(jnp.float32)
        if not self.predicts_mean:
            return jnp.zeros_like(h), h
        mean, scale = jnp.split(h, 2, axis=-1)
        return mean, scale

    def __call__(self, psi, y_hat_group=None, extra=None):
        """Parallel form used in training and in the eval forward pass.

        For "serial" the masked convolution over the whole quantized group gives, at every
        position, exactly the context the serial decoder sees there. For "checkerboard" the
        context is zero at anchors (computed from anchors only, then masked), matching the
        two-pass decoder.
        """
        if self.context_model == "none":
            return self.entropy_parameters(psi, None, extra)
        if y_hat_group is None:
            raise ValueError("a context model needs the quantized latent group")
        if self.context_model == "serial":
            return self.entropy_parameters(psi, self.context_features(y_hat_group), extra)
        anchors = checkerboard_anchor_mask(*y_hat_group.shape[1:3])[None, :, :, None]
        ctx = self.context_features(y_hat_group * anchors) * (1.0 - anchors)
        return self.entropy_parameters(psi, ctx, extra)

    @property
    def round_around_mean(self) -> bool:
        """Whether y_hat is rounded around the predicted mean (`latent_coding.rounds_around_mean`)."""
        return latent_coding.rounds_around_mean(self.context_model)

    def quantize_and_model(self, psi, y, extra=None, *, train: bool, decoder_input: str = "ste"):
        """Quantizes a latent group and models it.

        Returns (y_hat, likelihoods, mean, scale). In training y_hat is the decoder input
        (`decoder_input`: "ste" rounding or "noise") and the likelihood that of y + U(-1/2, 1/2);
        in evaluation y_hat is rounded and the likelihood is the range coder's own model."""
        mode = decoder_input if train else "round"
        rng = self.make_rng("noise") if train else None
        around = self.round_around_mean
        if self.context_model == "none":
            mean, scale = self(psi, None, extra)
        elif self.context_model == "serial":
            y_hat = latent_coding.quantize_latent(y, jnp.zeros_like(y),
                                                  round_around_mean=False, mode=mode, rng=rng)
            mean, scale = self(psi, y_hat, extra)
        else:  # checkerboard: anchors from psi alone, then non-anchors from the anchors
            anchor_mean, _ = self(psi, jnp.zeros_like(y), extra)
            anchors = checkerboard_anchor_mask(*y.shape[1:3])[None, :, :, None]
            y_anchor = latent_coding.quantize_latent(y, anchor_mean, round_around_mean=True,
                                                     mode=mode, rng=rng)
            mean, scale = self(psi, y_anchor * anchors, extra)
        if self.context_model != "serial":
            y_hat = latent_coding.quantize_latent(y, mean, round_around_mean=around, mode=mode,
                                                  rng=rng)
        rate_rng = self.make_rng("noise") if train else None
        likelihoods = latent_coding.latent_likelihood(
            y, y_hat, mean, scale, round_around_mean=around, train=train, rng=rate_rng)
        return y_hat, likelihoods, mean, scale
