"""Forward + backward time of a stride-1 3x3 average pool: TF's AvgPoolGrad against ops' narrow-channel
gradient (built from forward pools), one JSON line per shape.

    python benchmarks/pool_gradient.py

It decides `ops.NARROW_CHANNELS`, the channel count below which ops.avg_pool takes the narrow path: rerun it
on a new CPU or a GPU before trusting that threshold there. Medians of `--calls` calls inside tf.function,
after 3 warm-up calls; `max_abs_diff` compares the two gradients.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

SHAPES = [(64, 32, 32, 4), (64, 16, 16, 8), (64, 8, 8, 16), (64, 32, 32, 16), (64, 16, 16, 32)]


def forward_backward_ms(pool, x, dy, calls):
    import numpy as np
    import tensorflow as tf

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = pool(x)
        return tape.gradient(y, x, output_gradients=dy)

    gradient = step(x).numpy()
    for _ in range(3):
        step(x).numpy()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        step(x).numpy()
        times.append(1000 * (time.perf_counter() - start))
    return float(np.median(times)), gradient


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()
    import numpy as np
    import tensorflow as tf

    from drnas_tf import ops
    from drnas_tf.ops import pooling

    rng = np.random.default_rng(0)
    for shape in SHAPES:
        x = tf.constant(rng.normal(size=shape), tf.float32)
        dy = tf.constant(rng.normal(size=shape), tf.float32)
        tf_ms, tf_grad = forward_backward_ms(lambda t: tf.nn.avg_pool2d(t, 3, 1, "SAME"), x, dy, args.calls)
        narrow_ms, narrow_grad = forward_backward_ms(lambda t: pooling._narrow_avg_pool(t, 3), x, dy, args.calls)
        print(json.dumps({"shape": list(shape), "tf_avg_pool_grad_ms": round(tf_ms, 3),
                          "narrow_ms": round(narrow_ms, 3), "narrow_path_used": shape[-1] < ops.NARROW_CHANNELS,
                          "max_abs_diff": float(np.abs(tf_grad - narrow_grad).max())}), flush=True)


if __name__ == "__main__":
    main()
