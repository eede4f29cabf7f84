"""Time to construct a supernet (all variables), trace one inference pass, and run it once; prints JSON.

    python benchmarks/build_time.py [--configs=nb201_k4,darts_c36_l20_k6]
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from drnas_tf import complexity  # noqa: E402
from drnas_tf.spaces import build_supernet  # noqa: E402

CONFIGS = {
    "nb201_k4": dict(space="nb201", num_classes=10, init_channels=16, cells_per_stage=5, k=4),
    "nb201_k1": dict(space="nb201", num_classes=10, init_channels=16, cells_per_stage=5, k=1),
    "darts_c16_l8_k4": dict(space="darts", num_classes=10, init_channels=16, layers=8, k=4),
    "darts_c36_l20_k6": dict(space="darts", num_classes=10, init_channels=36, layers=20, k=6),
    "darts_imagenet_c48_l14_k6": dict(space="darts", num_classes=1000, init_channels=48, layers=14, k=6,
                                      stem="imagenet"),
}


def measure(name):
    config = dict(CONFIGS[name])
    size = 224 if config.get("stem") == "imagenet" else 32
    start = time.perf_counter()
    model = build_supernet(config.pop("space"), config.pop("num_classes"), **config)
    built = time.perf_counter()
    forward = tf.function(lambda images: model(images, training=False))
    forward.get_concrete_function(tf.TensorSpec([1, size, size, 3]))
    traced = time.perf_counter()
    forward(tf.zeros([1, size, size, 3]))
    ran = time.perf_counter()
    return {"config": name, "construct_s": round(built - start, 2), "trace_s": round(traced - built, 2),
            "first_run_s": round(ran - traced, 2), "trainable_params": complexity.count_params(model.weight_variables)}


def main():
    names = CONFIGS
    for arg in sys.argv[1:]:
        if arg.startswith("--configs="):
            names = arg.split("=", 1)[1].split(",")
    for name in names:
        print(json.dumps(measure(name)), flush=True)


if __name__ == "__main__":
    main()
