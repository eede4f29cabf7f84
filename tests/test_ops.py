"""Primitive operations: shapes on odd and non-square inputs, parameter counts, reference numerics."""

import gc
import math
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

from tensorflow.python.eager import context

from drnas_tf import ops, tape_gradient
from drnas_tf.spaces import darts, get_space, nb201
from layer_harness import check_layer, random_images

C = 8

# Trainable parameters of each DARTS op at C channels: (affine=False, affine=True), stride 1.
DARTS_PARAMS = {
    "max_pool_3x3": (0, 0),
    "avg_pool_3x3": (0, 0),
    "skip_connect": (0, 0),
    "sep_conv_3x3": (2 * (9 * C + C * C), 2 * (9 * C + C * C) + 4 * C),
    "sep_conv_5x5": (2 * (25 * C + C * C), 2 * (25 * C + C * C) + 4 * C),
    "dil_conv_3x3": (9 * C + C * C, 9 * C + C * C + 2 * C),
    "dil_conv_5x5": (25 * C + C * C, 25 * C + C * C + 2 * C),
}
NB201_PARAMS = {"none": 0, "skip_connect": 0, "nor_conv_1x1": C * C, "nor_conv_3x3": 9 * C * C, "avg_pool_3x3": 0}


def ceil_half(n):
    return -(-n // 2)


@pytest.mark.parametrize("size", [(32, 32), (33, 33), (32, 48), (7, 9)])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", darts.OPS + ("none",))
def test_darts_op_shapes_and_config(name, stride, size):
    x = random_images(*size, channels=C)
    out_size = size if stride == 1 else tuple(ceil_half(n) for n in size)
    op = get_space("darts").make_op(name, C, stride, False)
    check_layer(op, x, (2, *out_size, C))


@pytest.mark.parametrize("name", darts.OPS)
@pytest.mark.parametrize("affine", [False, True])
def test_darts_op_param_counts(name, affine):
    op = get_space("darts").make_op(name, C, 1, affine)
    expected = DARTS_PARAMS[name][affine]
    check_layer(op, random_images(8, 8, C), (2, 8, 8, C), trainable_params=expected)


def test_strided_skip_is_factorized_reduce():
    op = get_space("darts").make_op("skip_connect", C, 2, True)
    assert isinstance(op, ops.FactorizedReduce)
    check_layer(op, random_images(8, 8, C), (2, 4, 4, C), trainable_params=2 * C * (C // 2) + 2 * C)


@pytest.mark.parametrize("name", nb201.OPS)
def test_nb201_op_shapes_and_param_counts(name):
    op = get_space("nb201").make_op(name, C, 1, False)
    check_layer(op, random_images(33, 17, C), (2, 33, 17, C), trainable_params=NB201_PARAMS[name])


def test_nb201_pool_has_no_bn_and_darts_pool_has_affine_free_bn():
    assert get_space("nb201").make_op("avg_pool_3x3", C, 1, True).bn is None
    pool = get_space("darts").make_op("avg_pool_3x3", C, 1, True)
    pool.build()
    bn = pool.bn
    assert not bn.center and not bn.scale and len(bn.non_trainable_variables) == 2


def test_batch_norm_uses_pytorch_numerics():
    bn = ops.batch_norm(True, C)
    assert bn.momentum == pytest.approx(0.9) and bn.epsilon == pytest.approx(1e-5)


def test_unknown_op_and_space_are_rejected():
    with pytest.raises(ValueError, match="unknown operation 'conv_9x9' in the darts space"):
        get_space("darts").make_op("conv_9x9", C, 1, False)
    with pytest.raises(ValueError, match="unknown search space 'nasbench101'"):
        get_space("nasbench101")
    with pytest.raises(ValueError, match="even number of output channels"):
        ops.FactorizedReduce(C, 5)


def test_avg_pool_excludes_padding():
    x = tf.reshape(tf.range(16, dtype=tf.float32), [1, 4, 4, 1])
    out = ops.avg_pool(x, 3, 1, padding=1)[0, :, :, 0].numpy()
    grid = np.arange(16, dtype=np.float32).reshape(4, 4)
    expected = np.array([[grid[max(i - 1, 0):i + 2, max(j - 1, 0):j + 2].mean() for j in range(4)]
                         for i in range(4)])
    np.testing.assert_allclose(out, expected, rtol=1e-6)


@pytest.mark.parametrize("channels,size", [(4, (7, 5)), (3, (1, 6)), (ops.NARROW_CHANNELS, (6, 9))])
def test_avg_pool_gradient_matches_analytic_value(channels, size):
    # Below NARROW_CHANNELS the gradient is built from forward pools; it must equal d/dx of the average.
    height, width = size
    x = tf.constant(random_images(height, width, channels))
    dy = np.random.default_rng(3).normal(size=x.shape).astype(np.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = ops.avg_pool(x, 3, 1, padding=1)
    grad = tape.gradient(out, x, output_gradients=tf.constant(dy)).numpy()
    expected = np.zeros_like(grad)
    for i in range(height):
        for j in range(width):
            rows, cols = slice(max(i - 1, 0), i + 2), slice(max(j - 1, 0), j + 2)
            count = len(range(height)[rows]) * len(range(width)[cols])
            expected[:, rows, cols, :] += dy[:, i:i + 1, j:j + 1, :] / count
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)


def test_narrow_avg_pool_gradient_in_a_traced_step_and_the_graph_is_freed():
    # Traced, the narrow pool's gradient is forward pools (no AvgPoolGrad) with d/dx of the average's values,
    # and a dropped traced function is freed: nothing registered per call keeps its graph alive.
    x = tf.constant(random_images(5, 6, 4))
    dy = tf.constant(np.random.default_rng(4).normal(size=x.shape).astype(np.float32))

    def gradients(pool):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = pool(x)
        return tape.gradient(out, x, output_gradients=dy)

    narrow = tf.function(lambda: gradients(lambda v: ops.avg_pool(v, 3, 1, padding=1)))
    kinds = [op.type for op in narrow.get_concrete_function().graph.get_operations()]
    assert "AvgPoolGrad" not in kinds and kinds.count("AvgPool") >= 2
    expected = gradients(lambda v: tf.nn.avg_pool2d(v, 3, 1, "SAME"))
    np.testing.assert_allclose(narrow().numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    graph = weakref.ref(narrow.get_concrete_function().graph)
    del narrow
    gc.collect()
    assert graph() is None


def test_stride2_pools_pad_symmetrically_like_pytorch():
    # PyTorch MaxPool2d(3, 2, padding=1) on a 4x4 ramp picks windows centred on rows/cols 0 and 2.
    x = tf.reshape(tf.range(16, dtype=tf.float32), [1, 4, 4, 1])
    out = ops.max_pool(x, 3, 2, padding=1)[0, :, :, 0].numpy()
    np.testing.assert_array_equal(out, [[5, 7], [13, 15]])
    avg = ops.avg_pool(x, 3, 2, padding=1)[0, :, :, 0].numpy()
    np.testing.assert_allclose(avg, [[2.5, 4.0], [8.5, 10.0]], rtol=1e-6)


def test_ceil_mode_pools_keep_every_row_of_odd_inputs():
    x = tf.reshape(tf.range(9, dtype=tf.float32), [1, 3, 3, 1])
    np.testing.assert_array_equal(ops.max_pool(x, 2, 2, ceil_mode=True)[0, :, :, 0], [[4, 5], [7, 8]])
    np.testing.assert_allclose(ops.avg_pool(x, 2, 2, ceil_mode=True)[0, :, :, 0], [[2, 3.5], [6.5, 8]])


@pytest.mark.parametrize("height,width", [(8, 6), (7, 5)])
def test_factorized_reduce_matches_reference(height, width):
    """The reference's two stride-2 1x1 convolutions, on x and on x shifted by one pixel (zero-padded at the
    bottom and right on odd sizes, where the reference fails), in outputs and input gradients; built without
    strided slices, whose CPU gradient is slow."""
    op = ops.FactorizedReduce(C, C, affine=False)
    x = random_images(height, width, C)

    def outputs_and_gradients(forward):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = forward(x)
            loss = tf.reduce_sum(tf.sin(y) * tf.range(C, dtype=tf.float32))
        return y, tape.gradient(loss, x)

    def reference(x):
        relu = tf.nn.relu(x)
        first = tf.nn.conv2d(relu, op.conv_1.kernel, 2, "VALID")
        second = tf.nn.conv2d(ops.pad_spatial(relu, 0, 1, 0, 1)[:, 1:, 1:, :], op.conv_2.kernel, 2, "VALID")
        return op.bn(tf.concat([first, second], -1), training=False)

    ours = outputs_and_gradients(lambda x: op(x, training=False))
    theirs = outputs_and_gradients(reference)
    assert ours[0].shape == (2, (height + 1) // 2, (width + 1) // 2, C)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    graph = tf.function(lambda: outputs_and_gradients(lambda x: op(x, training=True))).get_concrete_function().graph
    assert not {"StridedSlice", "StridedSliceGrad"} & {o.type for o in graph.get_operations()}


@pytest.mark.parametrize("stride,offset", [(2, 0), (2, 1), (3, 2)])
@pytest.mark.parametrize("height,width", [(6, 9), (7, 4)])
def test_every_nth_pixel_is_the_strided_slice_zero_padded(stride, offset, height, width):
    x = random_images(height, width, channels=3)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = ops.every_nth_pixel(x, stride, offset)
        loss = tf.reduce_sum(y * y)
    rows, columns = -(-height // stride), -(-width // stride)
    expected = np.zeros((2, rows, columns, 3), np.float32)
    sliced = x.numpy()[:, offset::stride, offset::stride, :]
    expected[:, :sliced.shape[1], :sliced.shape[2]] = sliced
    np.testing.assert_array_equal(y.numpy(), expected)
    gradient = np.zeros(x.shape, np.float32)
    gradient[:, offset::stride, offset::stride, :] = 2 * sliced
    np.testing.assert_array_equal(tape.gradient(loss, x).numpy(), gradient)


@pytest.mark.parametrize("channels, by_matmul", [(12, True), (ops.layers.SHUFFLE_BY_MATMUL_CHANNELS, True),
                                                (48, True), (12, False)])  # product, product, transpose twice
@pytest.mark.parametrize("dtype", [tf.float32, tf.float16, tf.bfloat16])
def test_channel_shuffle_matches_nchw_reference_exactly_with_its_gradient(channels, by_matmul, dtype):
    groups = 4
    rng = np.random.default_rng(0)
    x, dy = (rng.standard_normal((2, 5, 4, channels)).astype(np.float32) for _ in range(2))
    x, dy = (tf.cast(tf.constant(v), dtype).numpy().astype(np.float32) for v in (x, dy))  # representable

    def nchw_shuffle(nhwc):
        b, c, h, w = nhwc.transpose(0, 3, 1, 2).shape
        nchw = nhwc.transpose(0, 3, 1, 2).reshape(b, groups, c // groups, h, w)
        return nchw.transpose(0, 2, 1, 3, 4).reshape(b, c, h, w).transpose(0, 2, 3, 1)

    x_tensor = tf.cast(tf.constant(x), dtype)
    with tf.GradientTape() as tape:
        tape.watch(x_tensor)
        y = ops.channel_shuffle(x_tensor, groups, by_matmul)
    dx = tape.gradient(y, x_tensor, output_gradients=tf.cast(tf.constant(dy), dtype))
    assert y.dtype == dx.dtype == dtype
    traced = tf.function(lambda t: ops.channel_shuffle(t, groups, by_matmul)).get_concrete_function(x_tensor)
    kinds = {op.type for op in traced.graph.get_operations()}
    by_product = by_matmul and channels <= ops.layers.SHUFFLE_BY_MATMUL_CHANNELS
    assert ("MatMul" in kinds, "Transpose" in kinds) == (by_product, not by_product)
    np.testing.assert_array_equal(tf.cast(y, tf.float32).numpy(), nchw_shuffle(x))
    np.testing.assert_array_equal(nchw_shuffle(tf.cast(dx, tf.float32).numpy()), dy)  # dx: dy unshuffled


def test_init_follows_pytorch_default_bounds():
    conv = ops.conv2d(16, 32, 3)
    conv.build(conv.deferred_input_shape)
    bound = 1 / math.sqrt(16 * 9)
    kernel = conv.kernel.numpy()
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.9 * bound
    depthwise = ops.depthwise_conv2d(16, 5)
    depthwise.build(depthwise.deferred_input_shape)
    assert np.abs(depthwise.kernel.numpy()).max() <= 1 / 5


def test_zero_op_strides_like_convolutions():
    out = ops.Zero(2)(random_images(7, 4, C))
    assert out.shape == (2, 4, 2, C) and not np.any(out.numpy())


@pytest.mark.parametrize("channels", [3, 4, 6])
@pytest.mark.parametrize("affine", [False, True])
def test_batch_norm_matches_pytorch_numerics(affine, channels):
    """Training: normalise with the biased batch variance; moving stats take the unbiased one (PyTorch's
    running_var), momentum 0.1 in PyTorch's sense. Gradients equal Keras's unfused BatchNormalization's. On
    channel counts that are not a multiple of 4 the numbers come from column sums, not the fused kernel."""
    x = random_images(5, 7, channels=channels, batch=4) * 3.0 + 1.0
    bn = ops.batch_norm(affine, channels)
    bn.build(bn.deferred_input_shape)
    if affine:
        bn.gamma.assign(np.linspace(-1.0, 2.0, channels))
        bn.beta.assign(np.linspace(0.3, -0.2, channels))
    graph = tf.function(lambda: bn(x, training=True)).get_concrete_function().graph
    fused = [o.type for o in graph.get_operations() if o.type.startswith("FusedBatchNorm")]
    assert fused == ([] if channels % 4 else ["FusedBatchNorm"])
    keras_bn = keras.layers.BatchNormalization(momentum=ops.BN_MOMENTUM, epsilon=ops.BN_EPSILON,
                                                  center=affine, scale=affine)
    keras_bn.build(x.shape)
    for source, target in zip(bn.variables, keras_bn.variables):
        target.assign(source)
    values = x.numpy().reshape(-1, channels)
    n = values.shape[0]
    mean, biased = values.mean(0), values.var(0)
    gamma, beta = (bn.gamma.numpy(), bn.beta.numpy()) if affine else (1.0, 0.0)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        out = bn(x, training=True)
        expected_out = keras_bn(x, training=True)
        loss, keras_loss = (tf.reduce_sum(tf.sin(y)) for y in (out, expected_out))
    expected = (values - mean) / np.sqrt(biased + 1e-5) * gamma + beta
    np.testing.assert_allclose(out.numpy().reshape(-1, channels), expected,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 + 0.1 * biased * n / (n - 1), rtol=1e-5)
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), tape.gradient(keras_loss, x).numpy(),
                               rtol=1e-4, atol=1e-5)
    if affine:
        for ours, theirs in zip(tape.gradient(loss, bn.trainable_variables),
                                tape.gradient(keras_loss, keras_bn.trainable_variables)):
            np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-4)  # sums of 140 terms


@pytest.mark.parametrize("kernel_size,padding", [(3, 2), (5, 4), (3, 1), (5, 3)])
@pytest.mark.parametrize("size", [8, 9])
def test_strided_dilated_conv_subsamples_first(kernel_size, padding, size):
    """A stride-2 DilConv convolves every second row and column with the undilated kernel: the same outputs and
    input gradients as TensorFlow's strided dilated depthwise convolution (space-to-batch at full resolution,
    then subsampling), with none of its space-to-batch ops, on even and odd sizes and paddings."""
    op = ops.DilConv(4, 4, kernel_size, 2, padding, 2, affine=False)
    x = random_images(size, size + 1, channels=4)
    op(x)  # builds
    assert op.subsamples_first()

    def outputs_and_gradients(depthwise):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = depthwise(ops.pad_spatial(x, *[padding] * 4), op.depthwise.kernel)
            loss = tf.reduce_sum(tf.sin(y))
        return y, tape.gradient(loss, x)

    ours = outputs_and_gradients(lambda t, k: ops.strided_dilated_depthwise(t, k, 2))
    theirs = outputs_and_gradients(lambda t, k: keras.ops.depthwise_conv(t, k, 2, "valid", dilation_rate=2))
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    def out(n):  # PyTorch's output size for stride 2, dilation 2
        return (n + 2 * padding - 2 * (kernel_size - 1) - 1) // 2 + 1

    assert ours[0].shape == (2, out(size), out(size + 1), 4)
    graph = tf.function(lambda: op(x, training=True)).get_concrete_function().graph
    kinds = {o.type for o in graph.get_operations()}
    assert "DepthwiseConv2dNative" in kinds and "SpaceToBatchND" not in kinds
    stride_one = ops.DilConv(4, 4, kernel_size, 1, padding, 2, affine=False)
    stride_one(x)
    for source, target in zip(op.weights, stride_one.weights):
        target.assign(source)
    np.testing.assert_allclose(op(x).numpy(), stride_one(x).numpy()[:, ::2, ::2], rtol=1e-5, atol=1e-6)


def test_batch_norm_gradient_builds_no_zeros_for_the_unused_outputs():
    """Each zeros tensor the tape would build for an unused output of the fused kernel is a graph node of the
    search step (ops.batch_norm_together uses the op version whose unused outputs take None). On a channel
    count the fused kernel takes (a multiple of 4)."""
    bn = ops.batch_norm(True, 4)
    bn.build(bn.deferred_input_shape)
    x = random_images(5, 7, channels=4, batch=4)

    def gradients():
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(bn(x, training=True))
        return tape.gradient(loss, [x] + bn.trainable_variables)

    graph = tf.function(gradients).get_concrete_function().graph
    zeros = [op.name for op in graph.get_operations() if op.type == "ZerosLike" or op.name.startswith("zeros")]
    assert zeros == []
    kinds = [op.type for op in graph.get_operations()]
    assert kinds.count("FusedBatchNorm") == 1 and kinds.count("FusedBatchNormGrad") == 1


@pytest.mark.parametrize("channels", [4, 6])
def test_non_affine_batch_norms_share_their_constants(channels):
    """A traced graph holds a BatchNorm's constants once per channel count, not once per call: the fused
    kernel's unit scale and zero offset (~1,850 nodes of a DARTS supernet's pass), or the column sums' shapes,
    axis, epsilon and folding matrix. The numbers are those of a unit scale and zero offset."""
    layers = [ops.batch_norm(False, channels) for _ in range(4)]
    for bn in layers:
        bn.build(bn.deferred_input_shape)
    x = random_images(5, 7, channels=channels, batch=4)

    def constants(calls):
        graph = tf.function(lambda: [bn(x, training=True) for bn in layers[:calls]]).get_concrete_function().graph
        return sum(op.type == "Const" for op in graph.get_operations())

    assert constants(4) == constants(1)
    function = tf.function(lambda: layers[0](x, training=True))
    graph = weakref.ref(function.get_concrete_function().graph)
    del function
    gc.collect()
    assert graph() is None  # the shared constants do not keep a traced graph alive
    mean, variance = tf.nn.moments(x, axes=[0, 1, 2])
    expected = (x - mean) / tf.sqrt(variance + ops.BN_EPSILON)
    for y in tf.function(lambda: [bn(x, training=True) for bn in layers])():
        np.testing.assert_allclose(y.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_batch_norm_output_scale_multiplies_the_output(training, affine, channels):
    """A mixed operation's weight w folded into BN (output_scale): the output is w times the BN's, the
    gradients with respect to x and the BN's weights are w times theirs, the one with respect to w is
    sum(dy * BN(x)), and the moving statistics are the BN's. On the column sums (3 channels) and on the fused
    kernel (4); in inference on the fused kernel."""
    x = random_images(5, 7, channels=channels, batch=4) * 2.0 - 0.5
    layers = [ops.batch_norm(affine, channels) for _ in range(2)]
    for bn in layers:
        bn.build(bn.deferred_input_shape)
        bn.moving_mean.assign(np.linspace(-0.5, 0.5, channels))
        bn.moving_variance.assign(np.linspace(0.5, 2.0, channels))
        if affine:
            bn.gamma.assign(np.linspace(-1.0, 2.0, channels))
            bn.beta.assign(np.linspace(0.3, -0.2, channels))
    w = tf.constant(0.3)
    dy = random_images(5, 7, channels=channels, batch=4)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, w])
        scaled = layers[0](x, training=training, output_scale=w)
        plain = layers[1](x, training=training)
        scaled_loss, plain_loss = tf.reduce_sum(dy * scaled), tf.reduce_sum(dy * plain)
    np.testing.assert_allclose(scaled.numpy(), 0.3 * plain.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tape.gradient(scaled_loss, w).numpy(), tf.reduce_sum(dy * plain).numpy(), rtol=1e-5)
    for ours, theirs in zip(tape.gradient(scaled_loss, [x] + layers[0].trainable_variables),
                            tape.gradient(plain_loss, [x] + layers[1].trainable_variables)):
        np.testing.assert_allclose(ours.numpy(), 0.3 * theirs.numpy(), rtol=1e-4, atol=1e-6)
    for ours, theirs in zip(layers[0].non_trainable_variables, layers[1].non_trainable_variables):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


@pytest.mark.parametrize("channels", [3, 4])
def test_scaled_batch_norm_gradient_keeps_no_copy_of_the_output(channels):
    """The gradient of w * BN(x) computed with w as BN's output_scale reads one tensor of x's size from the
    forward pass (the centred x of the column sums, or x for the fused kernel); that of the product reads a
    second, BN(x), which a search step would keep for every operation of every edge."""
    bn = ops.batch_norm(False, channels)
    bn.build(bn.deferred_input_shape)
    x = random_images(5, 7, channels=channels, batch=4)
    w = tf.constant(0.3)

    def kept_tensors(forward):
        forward_ops = set()

        def gradients():
            with tf.GradientTape() as tape:
                tape.watch([x, w])
                loss = tf.reduce_sum(forward())  # whose gradient reads nothing of the forward pass
            forward_ops.update(tf.compat.v1.get_default_graph().get_operations())
            return tape.gradient(loss, [x, w])

        graph = tf.function(gradients).get_concrete_function().graph
        backward = [op for op in graph.get_operations() if op not in forward_ops]
        return {t.name for op in backward for t in op.inputs
                if t.op in forward_ops and t.shape.num_elements() == x.shape.num_elements()}

    assert len(kept_tensors(lambda: bn(x, training=True, output_scale=w))) == 1
    assert len(kept_tensors(lambda: w * bn(x, training=True))) == 2


def test_column_sums_batch_norm_has_a_recorded_gradient_and_its_traced_graph_is_freed():
    """On 6 channels (column sums) the gradient is BatchNorm's closed form recorded on the tape: this traced
    gradient of a non-affine layer holds 66 graph nodes where differentiating the layer's ops took 91 (the
    numbers: test_batch_norm_matches_pytorch_numerics), and a dropped traced function is freed: nothing
    registered per call keeps its graph alive."""
    bn = ops.batch_norm(False, 6)
    bn.build(bn.deferred_input_shape)
    x = random_images(5, 7, channels=6, batch=4)

    def gradient():
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.sin(bn(x, training=True)))
        return tape.gradient(loss, x)

    traced = tf.function(gradient)
    assert len(traced.get_concrete_function().graph.get_operations()) <= 70
    np.testing.assert_allclose(traced().numpy(), gradient().numpy(), rtol=1e-5, atol=1e-6)
    graph = weakref.ref(traced.get_concrete_function().graph)
    del traced
    gc.collect()
    assert graph() is None


def test_batch_norm_inference_and_float16():
    x = random_images(4, 6, channels=2)
    bn = ops.batch_norm(True, 2)
    bn.build(bn.deferred_input_shape)
    bn.moving_mean.assign([0.5, -1.0])
    bn.moving_variance.assign([4.0, 0.25])
    bn.gamma.assign([2.0, 3.0])
    bn.beta.assign([1.0, 0.0])
    expected = (x.numpy() - [0.5, -1.0]) / np.sqrt(np.array([4.0, 0.25]) + 1e-5) * [2.0, 3.0] + [1.0, 0.0]
    np.testing.assert_allclose(bn(x, training=False).numpy(), expected, rtol=1e-5, atol=1e-5)
    half = bn(tf.cast(x, tf.float16), training=False)
    assert half.dtype == tf.float32  # the layer's compute dtype; mixed_float16 layers compute in float16
    np.testing.assert_allclose(half.numpy(), expected, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("kernel_size,dilation", [(3, 1), (5, 1), (3, 2), (5, 2)])
@pytest.mark.parametrize("depthwise", [False, True])
def test_same_padding_equals_symmetric_padding_at_stride_1(kernel_size, dilation, depthwise):
    padding = dilation * (kernel_size - 1) // 2
    assert ops.same_is_symmetric(kernel_size, 1, padding, dilation)
    assert not ops.same_is_symmetric(kernel_size, 2, padding, dilation)
    x = random_images(7, 10, channels=4)
    make = (lambda mode: ops.depthwise_conv2d(4, kernel_size, 1, dilation, padding=mode)) if depthwise else (
        lambda mode: ops.conv2d(4, 4, kernel_size, 1, dilation, padding=mode))
    same, valid = make("same"), make("valid")
    same.build(same.deferred_input_shape)
    valid.build(valid.deferred_input_shape)
    valid.set_weights(same.get_weights())
    np.testing.assert_allclose(same(x).numpy(), valid(ops.pad_spatial(x, *[padding] * 4)).numpy(), atol=1e-5)


@pytest.mark.parametrize("size", [(7, 10), (8, 8)])
def test_same_pooling_equals_symmetric_padding_at_stride_1(size):
    x = random_images(*size, channels=3)
    padded = ops.pad_spatial(x, 1, 1, 1, 1)
    ones = ops.pad_spatial(tf.ones_like(x), 1, 1, 1, 1)
    expected_avg = tf.nn.avg_pool2d(padded, 3, 1, "VALID") / tf.nn.avg_pool2d(ones, 3, 1, "VALID")
    np.testing.assert_allclose(ops.avg_pool(x, 3, 1, padding=1).numpy(), expected_avg.numpy(), atol=1e-6)
    expected_max = tf.nn.max_pool2d(ops.pad_spatial(x, 1, 1, 1, 1, value=-1e9), 3, 1, "VALID")
    np.testing.assert_allclose(ops.max_pool(x, 3, 1, padding=1).numpy(), expected_max.numpy())


def test_grouped_convolution_gradients_says_whether_tensorflow_computes_one_here():
    x = tf.random.stateless_normal([2, 5, 5, 6], seed=[0, 1])
    kernel = tf.random.stateless_normal([1, 1, 3, 4], seed=[0, 2])  # 6 input channels, 3 per group: grouped
    try:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.conv2d(x, kernel, 1, "VALID")
        computed = tape.gradient(y, x).shape == x.shape
    except tf.errors.InvalidArgumentError:  # "Gradients for grouped convolutions are not supported on CPU"
        computed = False
    assert ops.operations.grouped_convolution_gradients() == computed


def test_recomputed_has_the_analytic_gradient():
    """tape_gradient.recomputed(forward) differentiates forward by running it again in the backward pass: for
    y = [x, x] * w (x tiled twice), dy/dx sums w's two halves times the output gradient and dy/dw is [x, x] times
    it, eagerly and traced."""
    x, w = tf.constant([1.0, 2.0, 3.0]), tf.constant([0.5, -1.0, 2.0, 4.0, 0.25, -3.0])
    dy = tf.constant([1.0, 2.0, 3.0, -1.0, 0.5, 2.0])

    def forward(a, b):
        return tf.tile(a, [2]) * b

    def gradients():
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            y = tape_gradient.recomputed("TestTiledProduct", forward, [x, w])
        return [y] + tape.gradient(y, [x, w], output_gradients=dy)

    expected = [np.tile(x, 2) * w, w[:3] * dy[:3] + w[3:] * dy[3:], np.tile(x, 2) * dy]
    for computed in (gradients(), tf.function(gradients)()):
        for a, b in zip(computed, expected):
            np.testing.assert_array_equal(a.numpy(), b)


@pytest.mark.parametrize("kernel_size,stride,padding,dilation", [(3, 1, 2, 2), (5, 2, 4, 2), (3, 2, 1, 1)])
def test_stacked_depthwise_keeps_only_the_relu_output_for_the_backward_pass(kernel_size, stride, padding, dilation):
    """DilConv blocks run together convolve copies of their ReLU output side by side, padded, through
    space-to-batch where dilated or subsampled where strided: the same outputs and gradients as TensorFlow's ops
    differentiated as they are, but the backward pass makes the copies and the rest again from the ReLU output
    (tape_gradient.recomputed) instead of keeping them. In the graph grappler optimised (TensorFlow's run
    metadata) the made-again Tile stays apart from the forward pass's, and the convolution made again is pruned."""
    blocks = [ops.DilConv(3, 3, kernel_size, stride, padding, dilation, affine=False, name=f"b{i}") for i in range(3)]
    x = random_images(8, 8, channels=3, batch=2)
    for block in blocks:
        block(x)
    kernels = [block.depthwise.kernel for block in blocks]
    dy = tf.random.stateless_normal([2, 8 // stride, 8 // stride, 9], seed=[5, 6])
    forward_ops = set()

    def gradients(depthwise):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = depthwise(tf.nn.relu(x))
        forward_ops.update(tf.compat.v1.get_default_graph().get_operations())
        return [y] + tape.gradient(y, [x] + kernels, output_gradients=dy)

    def theirs(relu):
        padded = ops.pad_spatial(tf.tile(relu, [1, 1, 1, 3]), *[blocks[0].explicit_padding] * 4)
        return keras.ops.depthwise_conv(padded, tf.concat([tf.convert_to_tensor(k) for k in kernels], axis=2),
                                        stride, blocks[0].depthwise.padding, dilation_rate=dilation)

    ours = tf.function(lambda: gradients(lambda relu: ops.DilConv.depthwise_on_copies(blocks, relu, copies=3)))
    context.context().enable_run_metadata()  # the first call optimises the graph
    computed = ours()
    metadata = context.context().export_run_metadata()
    context.context().disable_run_metadata()
    for a, b in zip(computed, gradients(theirs)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)
    graph = ours.get_concrete_function().graph
    backward = [op for op in graph.get_operations() if op.name.startswith("gradient_tape/")]
    assert {t.op.type for op in backward for t in op.inputs  # the activations it keeps (not the [k, k, 9, 1] kernel)
            if t.op in forward_ops and t.shape.rank == 4 and t.shape[-1] > 1} == {"Relu"}
    # The traced function's graph as grappler left it: the largest of those run (eager ops run as functions too).
    optimised = max(([node.op for partition in function.partition_graphs for node in partition.node]
                     for function in metadata.function_graphs), key=len)
    assert optimised.count("Tile") == 2
    assert sum(kind.endswith("DepthwiseConv2dNative") for kind in optimised) == 1


def test_one_relu_per_input_inside_the_block_only():
    x, y = tf.constant([[-1.0, 2.0]]), tf.constant([[3.0, -4.0]])
    assert ops.layers.relu(x) is not ops.layers.relu(x)
    with ops.one_relu_per_input():
        first = ops.layers.relu(x)
        assert ops.layers.relu(x) is first and ops.layers.relu(y) is not first
        np.testing.assert_array_equal(first.numpy(), [[0.0, 2.0]])
        with ops.one_relu_per_input():  # a block of its own, then the outer one again
            assert ops.layers.relu(x) is not first
        assert ops.layers.relu(x) is first
    assert ops.layers.relu(x) is not first
