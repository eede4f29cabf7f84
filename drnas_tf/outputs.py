"""What a search run writes to its model_dir: TensorBoard summaries and genotype files, atomically."""

import io
import json
import os

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from drnas_tf import distributed, relaxations

GENOTYPE_FILE = "genotype.json"
STATE_FILE = "state.json"  # where a search or a retraining run records how far it got, beside its checkpoint
HEATMAP_DPI = 80  # pixels per inch of the TensorBoard heatmaps (heatmap_size)
HEATMAP_MARGINS = (1.3, 1.1, 0.35, 1.0)  # inches left (edge names), right (colour bar), top (title), bottom
OP_ENTROPY_DESCRIPTION = ("Shannon entropy (nats) of each edge's Dirichlet mean over its kept operations, "
                          "averaged over edges: log K when undecided, 0 when one operation holds all.")
DIFFERENTIAL_ENTROPY_DESCRIPTION = ("Differential entropy of each edge's Dirichlet over its kept operations, "
                                    "averaged over edges: not bounded below by 0, falls as the concentration grows.")
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


def operation_entropy(probabilities):
    """Shannon entropy (nats) of each row of [edges, ops] operation probabilities. Pruned operations hold 0 and
    add nothing, so an edge with K kept operations lies in [0, log K]: log K while all are equally likely, 0
    once one holds everything. Unlike the Dirichlet's differential entropy it reads as "how undecided"."""
    probabilities = np.asarray(probabilities, np.float64)
    logs = np.log(np.where(probabilities > 0, probabilities, 1.0))
    return -(probabilities * logs).sum(axis=1)


def edge_statistics(supernet):
    """Per cell type: Dirichlet mean [edges, ops] (pruned ops 0), concentration [edges, ops], and per edge
    [edges] the operation entropy of the mean (`operation_entropy`) and the differential entropy of the
    Dirichlet over the kept operations."""
    stats = {}
    means = relaxations.dirichlet_means({name: param.numpy() for name, param in supernet.arch.items()}, supernet.masks)
    for name, (mean, beta) in means.items():
        mask = supernet.masks[name]
        differential = np.array([float(tfp.distributions.Dirichlet(row[kept]).entropy())
                                 for row, kept in zip(beta, mask)])
        stats[name] = {"mean": mean, "concentration": beta, "op_entropy": operation_entropy(mean),
                       "differential_entropy": differential}
    return stats


def heatmap_figure(values, mask, ops, edges, title, label, vmax):
    """[edges, ops] `values` as a labelled heatmap Figure (`png` renders it): operation names across, edge names
    down, each value printed in its cell, a colour bar from 0 to `vmax`, and pruned operations (mask false)
    blank and hatched so that they cannot be read as a small value.

    A bare Figure on the Agg canvas, not pyplot: nothing needs a display, and no global registry keeps a figure
    alive once its caller drops it. Margins are fixed (HEATMAP_MARGINS) rather than computed by a layout engine,
    which would cost more than the drawing; the image is heatmap_size * HEATMAP_DPI pixels.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    values, mask = np.asarray(values, np.float64), np.asarray(mask, bool)
    (width, height), (left, right, top, bottom) = heatmap_size(values.shape), HEATMAP_MARGINS
    figure = Figure(figsize=(width, height), dpi=HEATMAP_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((left / width, bottom / height, 1 - (left + right) / width, 1 - (top + bottom) / height))
    bar = figure.add_axes((1 - (right - 0.2) / width, bottom / height, 0.15 / width, 1 - (top + bottom) / height))
    colours = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    image = axes.imshow(np.ma.masked_array(values, ~mask), cmap=colours, vmin=0.0, vmax=vmax, aspect="auto")
    figure.colorbar(image, cax=bar, label=label)
    for (edge, op), value in np.ndenumerate(values):
        if mask[edge, op]:
            shade = "black" if value / vmax > 0.6 else "white"  # viridis turns light above ~0.6
            axes.text(op, edge, f"{value:.2f}", ha="center", va="center", fontsize=8, color=shade)
        else:
            axes.add_patch(Rectangle((op - 0.5, edge - 0.5), 1, 1, fill=False, hatch="//", edgecolor="0.75"))
    axes.set_xticks(range(len(ops)), ops, rotation=30, ha="right", fontsize=8)
    axes.set_yticks(range(len(edges)), edges, fontsize=8)
    axes.set_xlabel("operation (hatched: pruned)")
    axes.set_ylabel("edge (node<-input)")
    axes.set_title(title, fontsize=10)
    return figure


def png(figure):
    """A Figure (heatmap_figure) as PNG bytes, drawn by its Agg canvas."""
    buffer = io.BytesIO()
    figure.canvas.print_png(buffer)
    return buffer.getvalue()


def heatmap_size(shape):
    """(width, height) in inches of the heatmap of an [edges, ops] table: the margins plus a fixed cell size."""
    edges, ops = shape
    left, right, top, bottom = HEATMAP_MARGINS
    return left + right + 0.8 * ops, top + bottom + 0.3 * edges


def _image(figure):
    """A Figure as the [1, H, W, 3] uint8 tensor tf.summary.image takes."""
    return tf.image.decode_png(png(figure), channels=3)[None]


def _log_cell(name, cell, supernet, epoch):
    """One cell type's `edge_statistics` under arch/<name>/: the mean operation entropy and mean differential
    entropy over edges, both per edge (edge_NN in the architecture tensor's row order), and the Dirichlet mean
    and concentration heatmaps."""
    tf.summary.scalar(f"arch/{name}/mean_op_entropy", cell["op_entropy"].mean(), description=OP_ENTROPY_DESCRIPTION)
    tf.summary.scalar(f"arch/{name}/mean_differential_entropy", cell["differential_entropy"].mean(),
                      description=DIFFERENTIAL_ENTROPY_DESCRIPTION)
    for edge, (entropy, differential) in enumerate(zip(cell["op_entropy"], cell["differential_entropy"])):
        tf.summary.scalar(f"arch/{name}/op_entropy/edge_{edge:02d}", entropy)
        tf.summary.scalar(f"arch/{name}/differential_entropy/edge_{edge:02d}", differential)
    ops, edges, mask = supernet.space.ops, supernet.space.edge_names(name), supernet.masks[name]
    mean = heatmap_figure(cell["mean"], mask, ops, edges, f"{name}: Dirichlet mean, epoch {epoch}",
                          "probability", vmax=1.0)
    tf.summary.image(f"arch/{name}/dirichlet_mean", _image(mean),
                     description="Each edge's operation probabilities (Dirichlet mean); hatched: pruned.")
    beta = cell["concentration"]  # scaled to at least 2, so that the initial 1 (eta = 0) sits mid-scale
    concentration = heatmap_figure(beta, mask, ops, edges, f"{name}: concentration, epoch {epoch}",
                                   "concentration elu(eta) + 1", vmax=max(2.0, float(beta.max())))
    tf.summary.image(f"arch/{name}/concentration", _image(concentration),
                     description="Each edge's Dirichlet concentration; hatched: pruned.")


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
                _log_cell(name, cell, supernet, epoch)
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
