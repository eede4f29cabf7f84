"""Retraining: schedules, loss, 1 vs 2 replicas, results.json, resume equals an uninterrupted run, bad dirs."""

import json
import math
import os
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from drnas_tf import config as config_lib, optim, train_task
from drnas_tf.config import Execution
from drnas_tf.spaces import darts as darts_space, parse_genotype
from drnas_tf.train_model import Trainer, smoothed_cross_entropy

SIZE, BATCH, STEPS = 12, 8, 3
GENOTYPE = darts_space.PUBLISHED["DrNAS_cifar10"]


def tiny_config(**overrides):
    settings = dict(init_channels=4, layers=4, epochs=2, batch_size=BATCH, learning_rate=0.05, drop_path_prob=0.3)
    settings.update(overrides)
    return config_lib.train_config(GENOTYPE, "digits", **settings)


def pattern_batches(seed, count):
    """Learnable synthetic data: each class brightens its own image rows."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count).astype(np.int32)
    images = rng.normal(scale=0.5, size=(count, SIZE, SIZE, 3)).astype(np.float32)
    images[np.arange(count), labels, :, :] += 2.0
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(BATCH)


def epoch_data(epoch):
    return pattern_batches(epoch, STEPS * BATCH), STEPS


TEST_DATA = pattern_batches(100, 20)  # the last batch is partial


def run(model_dir, config=None, flags_text="", callbacks=(), **execution):
    return train_task.run_train(config or tiny_config(), str(model_dir), epoch_data, TEST_DATA, flags_text,
                                execution=Execution(progress=0, **execution), callbacks=callbacks)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("train")
    return model_dir, run(model_dir, flags_text="--dataset=digits\n")


def final_weights(model_dir):
    network = train_task.build_network(tiny_config())
    train_task.restore_network(network, tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")))
    return [v.numpy() for v in network.variables]


def flat(config):
    """A config's network, genotype and settings, read as attributes whatever section holds them."""
    return types.SimpleNamespace(**config_lib.flat_settings(config), network=config.network, genotype=config.genotype)


def test_paper_defaults():
    cifar = flat(config_lib.train_config(GENOTYPE, "cifar10"))
    assert (cifar.network.layers, cifar.network.init_channels, cifar.epochs, cifar.batch_size) == (20, 36, 600, 64)
    assert (cifar.learning_rate, cifar.lr_schedule, cifar.weight_decay, cifar.cutout) == (0.025, "cosine", 3e-4, 16)
    assert (cifar.auxiliary, cifar.auxiliary_weight, cifar.drop_path_prob, cifar.grad_clip) == (True, 0.4, 0.3, 5.0)
    assert cifar.eval_split == "test" and not cifar.color_jitter and cifar.label_smoothing == 0
    imagenet = flat(config_lib.train_config(parse_genotype("DrNAS_imagenet"), "imagenet"))
    assert (imagenet.network.layers, imagenet.network.init_channels, imagenet.epochs) == (14, 48, 250)
    assert (imagenet.batch_size, imagenet.learning_rate, imagenet.lr_schedule, imagenet.lr_warmup_epochs) == (
        768, 0.5, "linear", 5)
    assert (imagenet.weight_decay, imagenet.label_smoothing, imagenet.auxiliary_weight) == (3e-5, 0.1, 0.4)
    assert imagenet.color_jitter and imagenet.drop_path_prob == 0 and imagenet.eval_split == "validation"
    nb201 = flat(config_lib.train_config(parse_genotype("|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|")))
    assert not nb201.auxiliary and nb201.drop_path_prob == 0
    with pytest.raises(ValueError, match="--auxiliary does not apply to nb201 genotypes; it applies to darts"):
        config_lib.train_config(nb201.genotype, auxiliary=True)


def test_linear_schedule_is_the_references():
    def reference(epoch):  # train_imagenet.py: adjust_lr, then the warm-up for batch > 256
        if epoch < 5:
            return 0.5 * (epoch + 1) / 5.0
        if 250 - epoch > 5:
            return 0.5 * (250 - 5 - epoch) / (250 - 5)
        return 0.5 * (250 - epoch) / ((250 - 5) * 5)

    for epoch in (0, 4, 5, 100, 244, 245, 249):
        assert optim.linear_learning_rate(epoch, 250, 0.5, 5) == pytest.approx(reference(epoch))
    config = tiny_config(epochs=600)
    assert train_task.learning_rate_at(config, 300) == pytest.approx(0.025)  # half-way down the cosine from 0.05
    assert train_task.drop_path_at(config, 0) == 0 and train_task.drop_path_at(config, 300) == pytest.approx(0.15)


def test_smoothed_cross_entropy_against_hand_computation():
    logits = tf.constant([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    labels = tf.constant([0, 2])
    log_probs = tf.nn.log_softmax(logits).numpy()
    targets = 0.9 * np.eye(3)[[0, 2]] + 0.1 / 3
    expected = float(np.mean(-(targets * log_probs).sum(axis=1)))
    assert float(smoothed_cross_entropy(labels, logits, 0.1)) == pytest.approx(expected, rel=1e-6)
    plain = float(np.mean(-log_probs[[0, 1], [0, 2]]))
    assert float(smoothed_cross_entropy(labels, logits)) == pytest.approx(plain, rel=1e-6)


def _one_step(strategy, images, labels):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        trainer = Trainer(train_task.build_network(tiny_config()), learning_rate=0.1, weight_decay=0.0, grad_clip=0.5,
                          seed=3)
        trainer.compile(optimizer=trainer.weight_optimizer)
    trainer.network.set_drop_path_prob(0.0)
    before = [v.numpy() for v in trainer.network.trainable_variables]
    trainer.fit(tf.data.Dataset.from_tensors((images, labels)), epochs=1, verbose=0, shuffle=False)
    return [v.numpy() - b for v, b in zip(trainer.network.trainable_variables, before)]


def test_one_and_two_replicas_take_the_same_clipped_step():
    # The batch repeats its first half, so each replica's half has the whole batch's BN statistics.
    images = tf.tile(tf.random.stateless_normal([4, SIZE, SIZE, 3], seed=[1, 2]), [2, 1, 1, 1])
    labels = tf.constant([0, 1, 2, 3] * 2)
    single = _one_step(tf.distribute.get_strategy(), images, labels)
    # Reduction through one device: a second collective-ops MirroredStrategy in the same pytest process (after
    # tests/test_search_model.py's) can reuse collective instance keys and abort; the sum is the same.
    mirrored = _one_step(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"],
                                                        cross_device_ops=tf.distribute.ReductionToOneDevice()),
                         images, labels)
    for update in (single, mirrored):  # lr x clip: the first velocity is the clipped replica-summed gradient
        assert math.sqrt(sum(float(np.sum(d**2)) for d in update)) == pytest.approx(0.1 * 0.5, rel=1e-3)
    for a, b in zip(single, mirrored):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_results_json_and_outputs(finished_run):
    model_dir, results = finished_run
    on_disk = json.load(open(os.path.join(model_dir, "results.json")))
    assert on_disk == results
    assert 0.0 <= results["test_top1"] <= results["test_top5"] <= 1.0
    assert results["epochs"] == 2 and results["train_seconds"] > 0
    assert parse_genotype(results["genotype"]) == GENOTYPE
    assert results["params"] == train_task.build_network(tiny_config()).count_params_excluding_aux()
    record = json.load(open(os.path.join(model_dir, "train_config.json")))
    assert record["genotype_text"] == GENOTYPE.to_text() and record["network"]["image_size"] == [32, 32]
    assert open(os.path.join(model_dir, "flags.txt")).read() == "--dataset=digits\n"
    assert os.listdir(os.path.join(model_dir, "tensorboard"))


def test_test_accuracy_is_that_of_the_restored_network(finished_run):
    model_dir, results = finished_run
    network = train_task.build_network(tiny_config())
    train_task.restore_network(network, tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")))
    correct = total = 0
    for images, labels in TEST_DATA:
        correct += int(np.sum(np.argmax(network(images).numpy(), axis=1) == labels.numpy()))
        total += len(labels)
    assert total == 20 and results["test_top1"] == pytest.approx(correct / total, abs=1e-6)


def test_resume_mid_epoch_equals_uninterrupted(finished_run, tmp_path):
    model_dir, results = finished_run

    class Crash(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.params["steps"] == STEPS and batch == 1 and self.model.weight_optimizer.iterations >= 5:
                raise KeyboardInterrupt  # epoch 2, after its second step; the last save was after its first

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, checkpoint_every_steps=1, callbacks=[Crash()])
    state = json.load(open(tmp_path / "state.json"))
    assert (state["epoch"], state["step"]) == (1, 1)
    resumed = run(tmp_path, checkpoint_every_steps=1)
    for a, b in zip(final_weights(model_dir), final_weights(tmp_path)):
        np.testing.assert_array_equal(a, b)
    assert resumed["test_top1"] == results["test_top1"]


def test_model_dir_of_another_run_is_refused(finished_run):
    model_dir, _ = finished_run
    with pytest.raises(ValueError, match=r"holds a run with other settings \(epochs\)"):
        run(model_dir, tiny_config(epochs=3))


def test_corrupt_state_is_refused(tmp_path):
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(ValueError, match="state.json is corrupt"):
        run(tmp_path)


def test_weights_that_cannot_reach_the_output_get_no_update(tmp_path):
    # Node 2 feeds only a 'none' edge: its convolutions have no gradient and, as under PyTorch's SGD, are
    # neither stepped nor decayed.
    genotype = parse_genotype("|avg_pool_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|skip_connect~1|"
                              "none~2|")
    config = config_lib.train_config(genotype, "digits", init_channels=4, cells_per_stage=1, epochs=1,
                                     batch_size=BATCH)
    run(tmp_path, config)
    keras.utils.set_random_seed(config.seed)
    initial = train_task.build_network(config)
    trained = train_task.build_network(config)
    train_task.restore_network(trained, tf.train.latest_checkpoint(os.path.join(tmp_path, "checkpoints")))
    for edge in (1, 2):  # 2<-0 and 2<-1
        for before, after in zip(initial.body[0].edge_ops[edge].trainable_variables,
                                 trained.body[0].edge_ops[edge].trainable_variables):
            np.testing.assert_array_equal(before.numpy(), after.numpy())
    stem_before, stem_after = initial.stem.trainable_variables[0], trained.stem.trainable_variables[0]
    assert np.abs(stem_before.numpy() - stem_after.numpy()).max() > 0


def poisoned_data(epoch):
    """epoch_data with NaN images in the second batch of epoch 1: that step's loss and gradient are NaN."""
    dataset, steps = epoch_data(epoch)
    if epoch != 1:
        return dataset, steps
    poison = lambda index, images, labels: (  # noqa: E731
        tf.where(tf.equal(index, 1), tf.fill(tf.shape(images), np.nan), images), labels)
    return dataset.enumerate().map(lambda index, batch: poison(index, *batch)), steps


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    model_dir = str(tmp_path / "run")
    with pytest.raises(ValueError, match=r"non-finite loss at step 2 of epoch 2; stopped, the last good "
                                         r"checkpoint \(.*ckpt-3\) is kept"):
        train_task.run_train(tiny_config(), model_dir, poisoned_data, TEST_DATA,
                             execution=Execution(progress=0, nan_policy="stop"))
    state = json.load(open(os.path.join(model_dir, "state.json")))
    assert (state["epoch"], state["step"]) == (1, 0) and state["checkpoint"].endswith("ckpt-3")
    assert not os.path.exists(os.path.join(model_dir, train_task.RESULTS_FILE))


def test_skip_batch_skips_the_nan_step_and_keeps_bn_statistics_finite(tmp_path, capsys):
    model_dir = str(tmp_path / "run")
    results = train_task.run_train(tiny_config(), model_dir, poisoned_data, TEST_DATA,
                                   execution=Execution(progress=0, nan_policy="skip_batch"))
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split("skipped_steps=")[1].split()[0] for line in printed] == ["0.0000", "1.0000"]
    # The NaN batch went through BN in training mode: without restoring the moving statistics the test loss,
    # computed with them, would be NaN.
    assert np.isfinite(results["test_loss"]) and np.isfinite(results["train_loss"])
    assert all(np.isfinite(value).all() for value in final_weights(model_dir))
