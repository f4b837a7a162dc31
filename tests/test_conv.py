"""Tests of the convolution layers (jdc_jax.layers.conv)."""

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest

from jdc_jax.layers.conv import (MaskedConv, SubPixelConv, TransposedConv, conv, depth_to_space,
                                 masked_conv_mask, phase_kernel, space_to_depth,
                                 transposed_conv_padding)

DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def conv_transpose_reference(x, kernel, strides):
    """The definition TransposedConv must match: lax.conv_transpose with its padding."""
    pad = transposed_conv_padding(kernel.shape[0], strides)
    return jax.lax.conv_transpose(x, kernel, strides=(strides, strides), padding=(pad, pad),
                                  dimension_numbers=DIMENSION_NUMBERS)


def scatter_transpose_reference(x, weight, stride, padding):
    """PyTorch's ConvTranspose2d(stride, padding, output_padding=stride - 1) without bias, as
    its definition reads: input (b, i, j, c) adds weight[c, f, t, u] to output
    (b, i*s - p + t, j*s - p + u, f). weight is (C_in, F, k, k), as PyTorch stores it."""
    batch, height, width, _ = x.shape
    _, features, k, _ = weight.shape
    out = np.zeros((batch, height * stride + 2 * k, width * stride + 2 * k, features))
    for t in range(k):
        for u in range(k):
            contribution = np.einsum("bijc,cf->bijf", x.astype(np.float64), weight[:, :, t, u])
            out[:, k + t - padding:k + t - padding + height * stride:stride,
                k + u - padding:k + u - padding + width * stride:stride] += contribution
    return out[:, k:k + height * stride, k:k + width * stride]


def strided_conv_reference(x, weight, stride, padding):
    """PyTorch's Conv2d(stride, padding) without bias: output (b, o, q, f) is the sum over taps
    of x[b, o*s - p + t, q*s - p + u, c] * weight[f, c, t, u] (OIHW, zeros outside x)."""
    batch, height, width, _ = x.shape
    features, _, k, _ = weight.shape
    padded = np.pad(x.astype(np.float64), ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    out_h = (height + 2 * padding - k) // stride + 1
    out_w = (width + 2 * padding - k) // stride + 1
    out = np.zeros((batch, out_h, out_w, features))
    for t in range(k):
        for u in range(k):
            window = padded[:, t:t + stride * out_h:stride, u:u + stride * out_w:stride]
            out += np.einsum("bijc,fc->bijf", window, weight[:, :, t, u])
    return out


def _normal(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _random_params(layer, x, seed=1):
    """Parameters of `layer` for input x, filled with N(0, 1) (no PRNG compilation needed)."""
    shapes = jax.eval_shape(layer.init, jax.random.PRNGKey(0), x)
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), shapes)


# --- depth_to_space / space_to_depth -------------------------------------------------------

@pytest.mark.parametrize("block_size", [2, 3])
def test_depth_to_space_follows_the_tf_channel_order(block_size):
    batch, height, width, channels = 2, 3, 4, 5
    x = np.arange(batch * height * width * block_size**2 * channels, dtype=np.float32)
    x = x.reshape(batch, height, width, block_size**2 * channels)
    y = np.asarray(depth_to_space(jnp.asarray(x), block_size))
    assert y.shape == (batch, height * block_size, width * block_size, channels)
    expected = np.empty_like(y)
    for h in range(height):
        for w in range(width):
            for i in range(block_size):
                for j in range(block_size):
                    for c in range(channels):
                        expected[:, h * block_size + i, w * block_size + j, c] = (
                            x[:, h, w, (i * block_size + j) * channels + c])
    np.testing.assert_array_equal(y, expected)


def test_space_to_depth_and_depth_to_space_invert_each_other():
    pixels = _normal(0, (2, 6, 9, 4))
    packed = space_to_depth(pixels, 3)
    assert packed.shape == (2, 2, 3, 36)
    np.testing.assert_array_equal(np.asarray(depth_to_space(packed, 3)), pixels)
    channels = _normal(1, (2, 3, 5, 8))
    np.testing.assert_array_equal(np.asarray(space_to_depth(depth_to_space(channels, 2), 2)),
                                  channels)


def test_shuffles_reject_sizes_that_do_not_divide():
    with pytest.raises(ValueError, match="not divisible"):
        depth_to_space(jnp.zeros((1, 2, 2, 6)), 2)
    with pytest.raises(ValueError, match="not divisible"):
        space_to_depth(jnp.zeros((1, 5, 4, 1)), 2)


# --- conv, SubPixelConv ------------------------------------------------------------------------

def test_strided_conv_maps_odd_sizes_to_their_ceiling_half():
    x = _normal(0, (2, 7, 5, 3))
    out = jax.eval_shape(lambda v: conv(6, kernel_size=5, stride=2).init_with_output(
        jax.random.PRNGKey(0), v)[0], x)
    assert out.shape == (2, 4, 3, 6)


def test_sub_pixel_conv_is_same_conv_then_pixel_shuffle():
    layer = SubPixelConv(features=3, kernel_size=3, upscale=2)
    x = _normal(0, (2, 5, 7, 4))
    params = _random_params(layer, x)
    y = np.asarray(jax.jit(layer.apply)(params, x))
    assert y.shape == (2, 10, 14, 3)

    kernel = params["params"]["conv"]["kernel"]
    bias = params["params"]["conv"]["bias"]
    assert kernel.shape == (3, 3, 4, 12)
    inner = np.asarray(jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=DIMENSION_NUMBERS) + bias)
    # Output pixel (2h + i, 2w + j), feature c comes from channel (2i + j) * 3 + c at (h, w).
    for i in range(2):
        for j in range(2):
            phase = 2 * i + j
            np.testing.assert_allclose(y[:, i::2, j::2, :], inner[..., 3 * phase:3 * phase + 3],
                                       rtol=1e-5, atol=1e-5)


# --- TransposedConv ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "kernel_size, stride, in_shape, features",
    [
        (5, 2, (2, 5, 7, 3), 4),
        (5, 2, (3, 4, 4, 2), 5),
        (3, 2, (2, 5, 7, 3), 2),
        (4, 2, (2, 5, 7, 3), 4),
        (6, 2, (2, 3, 4, 2), 3),
        (5, 1, (2, 5, 7, 3), 4),
        (2, 1, (2, 5, 6, 2), 3),
        (3, 1, (1, 4, 4, 2), 2),
        (5, 3, (2, 4, 5, 2), 3),
        (1, 2, (2, 3, 5, 2), 3),  # k < s: some output phases are all zero (bias only)
    ],
)
def test_transposed_conv_equals_lax_conv_transpose(kernel_size, stride, in_shape, features):
    layer = TransposedConv(features, kernel_size=kernel_size, strides=stride)
    x = _normal(0, in_shape)
    params = _random_params(layer, x)
    y = jax.jit(layer.apply)(params, x)

    kernel, bias = params["params"]["kernel"], params["params"]["bias"]
    expected = conv_transpose_reference(x, kernel, stride) + bias
    batch, height, width, _ = in_shape
    assert y.shape == (batch, height * stride, width * stride, features)
    np.testing.assert_allclose(np.asarray(y), np.asarray(expected), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel_size, in_shape", [(5, (2, 4, 6, 3)), (5, (1, 3, 5, 2)),
                                                   (3, (2, 4, 4, 2))])
def test_transposed_conv_equals_pytorch_conv_transpose_of_the_flipped_kernel(kernel_size,
                                                                              in_shape):
    """ConvTranspose2d(k, stride=2, padding=k // 2, output_padding=1), the upsampling layer of
    the reference Balle/Minnen synthesis transforms, with weight W (C_in, F, k, k) equals this
    layer with kernel W[:, :, ::-1, ::-1] in HWIO."""
    layer = TransposedConv(4, kernel_size=kernel_size, strides=2, use_bias=False)
    x = _normal(0, in_shape)
    weight = _normal(1, (in_shape[-1], 4, kernel_size, kernel_size))
    kernel = weight[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)
    y = jax.jit(layer.apply)({"params": {"kernel": kernel}}, x)
    expected = scatter_transpose_reference(x, weight, 2, kernel_size // 2)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel_size, stride, shape", [(3, 2, (2, 8, 6, 3)), (5, 2, (1, 7, 9, 2)),
                                                        (3, 1, (1, 5, 4, 2)), (1, 2, (1, 6, 5, 3))])
def test_conv_equals_pytorch_conv2d_with_symmetric_padding(kernel_size, stride, shape):
    """conv(k, s) is Conv2d(k, stride=s, padding=k // 2) with the OIHW weight in HWIO."""
    layer = conv(4, kernel_size, stride)
    x = _normal(0, shape)
    weight = _normal(1, (4, shape[-1], kernel_size, kernel_size))
    params = {"params": {"kernel": weight.transpose(2, 3, 1, 0), "bias": np.zeros(4, np.float32)}}
    y = jax.jit(layer.apply)(params, x)
    expected = strided_conv_reference(x, weight, stride, kernel_size // 2)
    assert y.shape == (shape[0], -(-shape[1] // stride), -(-shape[2] // stride), 4)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-5)


def test_conv_refuses_even_kernels():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        conv(4, 4, 2)


@pytest.mark.parametrize("kernel_size", [5, 4, 3])
def test_transposed_conv_gradients_equal_those_of_lax_conv_transpose(kernel_size):
    layer = TransposedConv(3, kernel_size=kernel_size, strides=2, use_bias=False)
    x = _normal(0, (2, 3, 5, 2))
    kernel = _random_params(layer, x)["params"]["kernel"]
    cotangent = _normal(2, (2, 6, 10, 3))

    def phase_loss(k, v):
        return jnp.sum(layer.apply({"params": {"kernel": k}}, v) * cotangent)

    def reference_loss(k, v):
        return jnp.sum(conv_transpose_reference(v, k, 2) * cotangent)

    grads = jax.jit(jax.grad(phase_loss, argnums=(0, 1)))(kernel, x)
    expected = jax.jit(jax.grad(reference_loss, argnums=(0, 1)))(kernel, x)
    for grad, reference in zip(grads, expected):
        assert np.max(np.abs(np.asarray(reference))) > 0.1
        np.testing.assert_allclose(np.asarray(grad), np.asarray(reference), rtol=1e-4, atol=1e-4)


def test_transposed_conv_and_its_gradient_use_only_undilated_stride_1_convolutions():
    """lax.conv_transpose is a convolution with lhs_dilation = stride; none may appear."""
    layer = TransposedConv(3, kernel_size=5, strides=2)
    x = _normal(0, (1, 4, 4, 2))
    params = _random_params(layer, x)
    jaxpr = jax.make_jaxpr(jax.grad(lambda p, v: jnp.sum(layer.apply(p, v) ** 2),
                                    argnums=(0, 1)))(params, x)

    def convolutions(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "conv_general_dilated":
                yield eqn
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                yield from convolutions(sub)

    found = list(convolutions(jaxpr.jaxpr))
    assert len(found) == 3  # forward, input gradient, kernel gradient
    for eqn in found:
        assert tuple(eqn.params["lhs_dilation"]) == (1, 1)
        assert tuple(eqn.params["window_strides"]) == (1, 1)


def test_phase_kernel_of_5x5_stride_2_is_3x3_with_four_phases():
    kernel = _normal(0, (5, 5, 2, 3))
    phases, padding = phase_kernel(jnp.asarray(kernel), 2)
    assert phases.shape == (3, 3, 2, 12)
    assert padding == (1, 1)
    # Every tap of the 5x5 kernel is used by exactly one phase; the rest of the window is zero.
    assert np.count_nonzero(np.asarray(phases)) == kernel.size
    np.testing.assert_array_equal(np.sort(np.asarray(phases)[np.asarray(phases) != 0]),
                                  np.sort(kernel.ravel()))


def test_transposed_conv_init_gives_float32_kernel_and_zero_bias():
    layer = TransposedConv(4, kernel_size=5, strides=2)
    params = layer.init(jax.random.PRNGKey(0), jnp.zeros((1, 3, 3, 2)))["params"]
    assert params["kernel"].shape == (5, 5, 2, 4) and params["kernel"].dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(params["bias"]), np.zeros(4, np.float32))
    no_bias = jax.eval_shape(TransposedConv(4, use_bias=False).init, jax.random.PRNGKey(0),
                             jnp.zeros((1, 3, 3, 2)))
    assert set(no_bias["params"]) == {"kernel"}


@pytest.mark.parametrize(
    "layer, out_shape",
    [
        (TransposedConv(4, 5, 2, dtype=jnp.bfloat16), (2, 8, 10, 4)),
        (SubPixelConv(4, 3, 2, dtype=jnp.bfloat16), (2, 8, 10, 4)),
        (MaskedConv(4, 5, "A", dtype=jnp.bfloat16), (2, 4, 5, 4)),
    ],
    ids=["transposed", "sub_pixel", "masked"],
)
def test_bfloat16_compute_dtype_keeps_float32_parameters_and_close_outputs(layer, out_shape):
    x = _normal(0, (2, 4, 5, 3))
    params = _random_params(layer, x)
    for leaf in jax.tree_util.tree_leaves(params):
        assert leaf.dtype == jnp.float32
    y = jax.jit(layer.apply)(params, x)
    assert y.dtype == jnp.bfloat16 and y.shape == out_shape
    y32 = jax.jit(layer.clone(dtype=jnp.float32).apply)(params, x)
    assert y32.dtype == jnp.float32
    # bfloat16 keeps 8 mantissa bits; sums of ~75 unit-variance products stay within 0.3.
    np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(y32), rtol=0.03, atol=0.3)


def test_transposed_conv_rejects_non_nhwc_input():
    with pytest.raises(ValueError, match="NHWC"):
        TransposedConv(2).init(jax.random.PRNGKey(0), jnp.zeros((3, 3, 2)))


# --- MaskedConv --------------------------------------------------------------------------------

def test_masked_conv_masks_are_raster_order_causal():
    expected_a = np.array([
        [1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1],
        [1, 1, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ], np.float32)
    np.testing.assert_array_equal(masked_conv_mask(5, "A"), expected_a)
    np.testing.assert_array_equal(masked_conv_mask(3, "B"),
                                  np.array([[1, 1, 1], [1, 1, 0], [0, 0, 0]], np.float32))


def test_masked_conv_mask_rejects_even_kernels_and_unknown_types():
    with pytest.raises(ValueError, match="odd"):
        masked_conv_mask(4, "A")
    with pytest.raises(ValueError, match="mask_type"):
        masked_conv_mask(5, "C")


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_masked_conv_output_depends_exactly_on_earlier_positions_in_its_window(mask_type):
    height, width, kernel_size = 7, 6, 5
    layer = MaskedConv(features=3, kernel_size=kernel_size, mask_type=mask_type)
    x = _normal(0, (2, height, width, 2))
    params = _random_params(layer, x)
    # jacobian[b, row, col, c, b', in_row, in_col, c'] = d y[b, row, col, c] / d x[b', ...]
    jacobian = np.asarray(jax.jit(jax.jacrev(lambda v: layer.apply(params, v)))(x))
    reach = kernel_size // 2

    positions = [(0, 0), (0, 5), (3, 2), (2, 5), (6, 0), (6, 5), (4, 4)]
    for row, col in positions:
        grad = jacobian[0, row, col, 1]
        assert np.all(grad[1] == 0.0)  # other batch elements never leak in
        depends = np.any(grad[0] != 0.0, axis=-1)
        for in_row in range(height):
            for in_col in range(width):
                before = (in_row, in_col) < (row, col) or (
                    mask_type == "B" and (in_row, in_col) == (row, col))
                in_window = abs(in_row - row) <= reach and abs(in_col - col) <= reach
                assert depends[in_row, in_col] == (before and in_window), (
                    (row, col), (in_row, in_col))
