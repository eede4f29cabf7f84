"""What a search run writes to its model_dir: TensorBoard summaries and genotype files, atomically."""

import json
import os

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from drnas_tf import distributed, relaxations

GENOTYPE_FILE = "genotype.json"
STATE_FILE = "state.json"  # where a search or a retraining run records how far it got, beside its checkpoint
HEATMAP_SCALE = 16  # pixels per (edge, op) cell of the TensorBoard heatmaps
_LOG_TAGS = {"loss": "train/loss", "accuracy": "train/accuracy", "valid_loss": "valid/loss",
             "valid_accuracy": "valid/accuracy", "eval_loss": "eval/loss", "eval_accuracy": "eval/accuracy"}


def atomic_write_text(path, text):
    """Writes a file so that a crash leaves either the old or the new contents, never a truncated file."""
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def read_run_state(model_dir, identity, required):
    """The STATE_FILE of an earlier run in model_dir (None if there is none), checked against this run.

    identity: the settings a resumed run must share; required: keys the state must hold. A corrupt file or
    other settings raise a one-line ValueError naming the directory: never a silent fresh start.
    """
    path = os.path.join(model_dir, STATE_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as file:
            state = json.load(file)
        missing = {"identity", *required} - set(state)
        if missing:
            raise KeyError(", ".join(sorted(missing)))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is corrupt ({error}); remove {model_dir} or choose another --model_dir") from None
    if state["identity"] != identity:
        changed = sorted(key for key in identity if state["identity"].get(key) != identity[key])
        raise ValueError(f"--model_dir={model_dir} holds a run with other settings ({', '.join(changed)}); "
                         "choose another --model_dir")
    return state


def restore_run(checkpoint, state, model_dir, strategy, optimizer):
    """Restores `checkpoint` from the one `state` (read_run_state) names and checks that every worker resumes
    from the same `optimizer` step; a checkpoint that cannot be read or does not match gives one line naming it."""
    if state:
        try:
            checkpoint.restore(state["checkpoint"]).assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError) as error:
            raise ValueError(f"cannot restore {state['checkpoint']} in --model_dir={model_dir}: "
                             f"{str(error).splitlines()[0]}") from None
    distributed.check_same_on_workers(strategy, int(optimizer.iterations.numpy()),
                                      f"the step resumed from --model_dir={model_dir}")


def relaxation_of(record):
    """The Relaxation class an epoch record (genotype_record) names; the DARTS softmax for a name this process
    has not registered (a relaxation defined in a user's own code), whose probabilities are then shown as
    softmax(eta)."""
    name = record.get("relaxation", "dirichlet")
    return relaxations.get(name) if name in relaxations.names() or name in relaxations.ALIASES \
        else relaxations.Softmax


def operation_probabilities(record):
    """{cell type: [edges, ops]} operation probabilities of an epoch record (genotype_record), as its relaxation
    shows them (the Dirichlet mean for DrNAS, the masked softmax of eta otherwise); pruned operations get 0."""
    relaxation = relaxation_of(record)
    return {name: relaxation.probabilities(eta, np.asarray(record["masks"][name], bool))
            for name, eta in record["arch_parameters"].items()}


def top_operations(record):
    """[(edge name, top operation, its probability, runner-up operation, its probability)] for every edge of an
    epoch record, from `operation_probabilities`: how decided the search is, edge by edge."""
    from drnas_tf.spaces import get_space

    space = get_space(record["space"])
    rows = []
    for cell_type, probabilities in operation_probabilities(record).items():
        for name, row in zip(space.edge_names(cell_type), probabilities):
            first, second = np.argsort(-row, kind="stable")[:2]
            rows.append((name, space.ops[first], float(row[first]), space.ops[second], float(row[second])))
    return rows


def edge_statistics(supernet):
    """Per cell type: Dirichlet mean [edges, ops] (pruned ops 0), concentration [edges, ops] and the
    differential entropy of each edge's Dirichlet over its kept operations [edges]."""
    stats = {}
    means = relaxations.dirichlet_means({name: param.numpy() for name, param in supernet.arch.items()}, supernet.masks)
    for name, (mean, beta) in means.items():
        mask = supernet.masks[name]
        entropy = np.array([float(tfp.distributions.Dirichlet(row[kept]).entropy())
                            for row, kept in zip(beta, mask)])
        stats[name] = {"mean": mean, "concentration": beta, "entropy": entropy}
    return stats


def _heatmap(values):
    """[edges, ops] values in [0, max] as a [1, H, W, 1] grey image, each cell HEATMAP_SCALE pixels wide."""
    scaled = values / max(values.max(), 1e-12)
    image = np.kron(scaled, np.ones((HEATMAP_SCALE, HEATMAP_SCALE)))
    return image[None, :, :, None].astype(np.float32)


class SearchSummaries:
    """TensorBoard summaries of a search, one step per epoch."""

    def __init__(self, model_dir):
        self.writer = tf.summary.create_file_writer(os.path.join(model_dir, "tensorboard"))

    def log_epoch(self, epoch, logs, learning_rates, supernet, genotype, analysis=None):
        """Writes the epoch's metrics, learning rates, per-edge statistics and genotype text, and the
        benchmark results and sampled-architecture statistics of `analysis` (trajectory.epoch_analysis):
        benchmark/<dataset>/<split> for the genotype; trajectory/distinct_genotypes, trajectory/op_entropy
        and trajectory/<dataset>/<split>/{min,median,max} for the samples."""
        analysis = analysis or {}
        stats = edge_statistics(supernet)
        with self.writer.as_default(step=epoch):
            for key, tag in _LOG_TAGS.items():
                if key in logs:
                    tf.summary.scalar(tag, logs[key])
            for name, value in learning_rates.items():
                tf.summary.scalar(f"learning_rate/{name}", value)
            for name, cell in stats.items():
                tf.summary.scalar(f"arch/{name}/mean_entropy", cell["entropy"].mean())
                for edge, entropy in enumerate(cell["entropy"]):
                    tf.summary.scalar(f"arch/{name}/entropy/edge_{edge:02d}", entropy)
                tf.summary.image(f"arch/{name}/dirichlet_mean", _heatmap(cell["mean"]))
                tf.summary.image(f"arch/{name}/concentration", _heatmap(cell["concentration"]))
            tf.summary.text("genotype", genotype.to_text())
            for metric, value in (analysis.get("benchmark") or {}).items():
                tf.summary.scalar(f"benchmark/{metric}", value)
            trajectory = analysis.get("trajectory", {})
            for key in ("distinct_genotypes", "op_entropy"):
                if key in trajectory:
                    tf.summary.scalar(f"trajectory/{key}", trajectory[key])
            for metric, statistics in trajectory.get("accuracy", {}).items():
                for statistic, value in statistics.items():
                    tf.summary.scalar(f"trajectory/{metric}/{statistic}", value)
        self.writer.flush()


def genotype_record(genotype, supernet, epoch, stage, k, analysis=None, arch_steps=None):
    """The genotype's JSON object plus what analysis needs: text form, relaxation, eta and masks, the "benchmark"
    and "trajectory" entries of `analysis` (trajectory.epoch_analysis) when given (spaces.metadata), and
    `arch_steps`, the architecture updates made so far, which bounds how far eta can have moved
    (docs/search_dynamics.md)."""
    record = json.loads(genotype.to_json())
    if arch_steps is not None:
        record["arch_steps"] = int(arch_steps)
    record.update(text=genotype.to_text(), epoch=epoch, stage=stage, k=k, relaxation=supernet.relaxation.name,
                  arch_parameters={name: v.numpy().tolist() for name, v in supernet.arch.items()},
                  masks={name: mask.tolist() for name, mask in supernet.masks.items()}, **(analysis or {}))
    return record


def write_genotype(model_dir, record):
    """Writes genotypes/epoch_NNN.json, and genotype.json and genotype.txt for the latest epoch."""
    os.makedirs(os.path.join(model_dir, "genotypes"), exist_ok=True)
    text = json.dumps(record, indent=1)
    atomic_write_text(os.path.join(model_dir, "genotypes", f"epoch_{record['epoch']:03d}.json"), text)
    atomic_write_text(os.path.join(model_dir, GENOTYPE_FILE), text)
    atomic_write_text(os.path.join(model_dir, "genotype.txt"), record["text"] + "\n")
