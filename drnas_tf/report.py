"""Renders what a search's epoch records hold: `python -m drnas_tf.report MODEL_DIR`.

Writes a PNG figure (default MODEL_DIR/report.png) and prints a Markdown summary table, one row per epoch.
The figure's panels flow row by row over a grid just large enough for them, in this order:
- Trajectory panels, one per NAS-Bench-201 dataset (runs searched with --nb201_benchmark): the accuracy range
  (min to max) of the architectures sampled each epoch as a band, their median dashed, and the accuracy of the
  architecture the parameters select as a solid line, as the paper's NAS-Bench-201 trajectory figure (see
  docs/analysis.md).
- An exploration panel (runs searched with --trajectory_samples, any space): distinct genotypes among the
  samples, and the mean per-edge entropy of the sampled operation.
- "top operation probability per edge": each edge's largest operation probability over the epochs (every cell
  type), against a dashed uniform level 1/(kept operations of the first epoch): lines leaving it show the
  distribution concentrating. Legend beside the panel; none for DARTS's 28 edges (the title says so).
- One panel per edge: each operation's probability over the epochs (the Dirichlet mean for DrNAS, softmax of
  the parameters for DARTS and Gumbel runs); pruned operations drop to 0. One operation legend below the grid.
"""

import glob
import json
import math
import os

from absl import flags

from drnas_tf import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("output", None, "Where to write the PNG figure (default: MODEL_DIR/report.png).")
flags.DEFINE_enum("split", "test", ["train", "valid", "test"], "Benchmark accuracy shown in the trajectory "
                  "panels and the table.")

RECORD_GLOB = os.path.join("genotypes", "epoch_*.json")


def load_records(model_dir):
    """The per-epoch records of a search's model_dir, in epoch order; one-line errors name the directory."""
    paths = sorted(glob.glob(os.path.join(model_dir, RECORD_GLOB)))
    if not paths:
        raise ValueError(f"{model_dir} holds no {RECORD_GLOB}: pass the --model_dir of a search")
    records = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as file:
                records.append(json.load(file))
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read {path}: {error}") from None
    return sorted(records, key=lambda record: record["epoch"])


def _space(record):
    from drnas_tf.spaces import get_space

    return get_space(record["space"])


LEGEND_LIMIT = 10  # more lines than this (DARTS: 28 edges) make a legend that hides the plot


def build_figure(records, split="test"):
    """The figure (module docstring) of `records` as a matplotlib Figure, for `render` to save and tests to read.

    All panels form one sequence laid out row by row over a grid only as large as needed, and axes are made
    only for panels, so no cell of the figure is an empty frame whichever benchmark results or samples a
    run recorded.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from drnas_tf import outputs
    from drnas_tf.spaces.nb201.nas_bench import DATASETS

    epochs = [record["epoch"] + 1 for record in records]
    space = _space(records[0])
    probabilities = [outputs.operation_probabilities(record) for record in records]
    edges = [(name, edge, label) for name in probabilities[0]
             for edge, label in enumerate(space.edge_names(name))]
    datasets = [d for d in DATASETS if any(_chosen(r, d, split) is not None or _band(r, d, split) for r in records)]
    panels = [lambda axes, d=d: _trajectory_panel(axes, records, epochs, d, split) for d in datasets]
    if any("trajectory" in record for record in records):
        panels.append(lambda axes: _exploration_panel(axes, records, epochs))
    panels.append(lambda axes: _top_probability_panel(axes, records, epochs, probabilities, edges))
    for position, (name, edge, label) in enumerate(edges):
        panels.append(lambda axes, n=name, e=edge, l=label, first=not position:
                      _edge_panel(axes, space, epochs, probabilities, n, e, l, first))
    columns = min(len(panels), max(4, math.ceil(math.sqrt(len(panels)))))
    rows = math.ceil(len(panels) / columns)
    figure = plt.figure(figsize=(3.4 * columns, 2.8 * rows), constrained_layout=True)
    for index, draw in enumerate(panels):
        axes = figure.add_subplot(rows, columns, index + 1)
        draw(axes)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs: no 1.5 ticks on short runs
    # One operation legend for all edge panels, below the grid: inside a panel it would hide a rising line.
    handles, labels = figure.axes[-1].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize="small")
    return figure


def render(records, path, split="test"):
    """Writes the figure (module docstring) of `records` to `path` as PNG."""
    import matplotlib.pyplot as plt

    figure = build_figure(records, split)
    try:
        figure.savefig(path, dpi=80)
    finally:
        plt.close(figure)


def _trajectory_panel(axes, records, epochs, dataset, split):
    """Accuracy band of the epoch's samples and the selected architecture's accuracy on one dataset."""
    import numpy as np

    bands = [_band(record, dataset, split) for record in records]
    with_band = [(e, b) for e, b in zip(epochs, bands) if b]
    if with_band:
        band_epochs = [e for e, _ in with_band]
        axes.fill_between(band_epochs, [b["min"] for _, b in with_band], [b["max"] for _, b in with_band],
                          alpha=0.3, label="samples min-max")
        axes.plot(band_epochs, [b["median"] for _, b in with_band], "--", label="samples median")
    chosen = [_chosen(record, dataset, split) for record in records]
    axes.plot(epochs, [np.nan if c is None else c for c in chosen], "-", color="black", label="selected")
    axes.set(title=f"{dataset} {split} accuracy (%)", xlabel="epoch")
    axes.legend(fontsize="x-small")


def _exploration_panel(axes, records, epochs):
    """Distinct genotypes among the samples (left axis) and mean per-edge op entropy (right axis)."""
    import numpy as np

    trajectories = [record.get("trajectory", {}) for record in records]
    axes.plot(epochs, [t.get("distinct_genotypes", np.nan) for t in trajectories], color="tab:blue")
    axes.set(title="sampled architectures", xlabel="epoch")
    axes.set_ylabel("distinct genotypes", color="tab:blue")
    entropy_axes = axes.twinx()
    entropy_axes.plot(epochs, [t.get("op_entropy", np.nan) for t in trajectories], color="tab:red")
    entropy_axes.set_ylabel("op entropy (nats)", color="tab:red")


def _top_probability_panel(axes, records, epochs, probabilities, edges):
    """Each edge's largest operation probability over the epochs against the uniform levels (1/kept operations,
    one line per count kept at some epoch: pruning raises it): lines rising away from the dashed levels show
    the distribution concentrating on one operation."""
    for name, edge, label in edges:
        axes.plot(epochs, [p[name][edge].max() for p in probabilities], label=label)
    kept = {int(sum(row)) for record in records for mask in record["masks"].values() for row in mask}
    for count in sorted(kept):
        axes.axhline(1 / count, linestyle="--", color="grey", linewidth=1, label=f"uniform 1/{count}")
    title = "top operation probability per edge"
    if len(edges) > LEGEND_LIMIT:
        title += f"\n({len(edges)} edges, no legend)"
    axes.set(title=title, ylim=(0, 1), xlabel="epoch")
    if len(edges) <= LEGEND_LIMIT:  # beside the panel: the lines start at the uniform level and may go anywhere
        axes.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.02, 0.5))


def _edge_panel(axes, space, epochs, probabilities, name, edge, label, first):
    """Each operation's probability on one edge over the epochs (the figure's legend names the operations)."""
    for op_index, op in enumerate(space.ops):
        axes.plot(epochs, [p[name][edge, op_index] for p in probabilities], label=op)
    axes.set(title=f"edge {label}", ylim=(0, 1), xlabel="epoch")
    if first:
        axes.set_ylabel("operation probability")


def _chosen(record, dataset, split):
    return (record.get("benchmark") or {}).get(f"{dataset}/{split}")


def _band(record, dataset, split):
    return record.get("trajectory", {}).get("accuracy", {}).get(f"{dataset}/{split}")


def summary_rows(records, split="test"):
    """(header, rows) of the per-epoch summary table; columns empty in every row are left out. "top p" is the
    smallest, median and largest over edges of each edge's top operation probability."""
    from drnas_tf import outputs
    from drnas_tf.spaces.nb201.nas_bench import DATASETS

    import numpy as np

    header = ["epoch", "stage", "k", "top p min/median/max", "distinct / samples", "op entropy"]
    header += [f"{dataset} {split}" for dataset in DATASETS] + [f"samples {dataset} {split} min/median/max"
                                                                 for dataset in DATASETS] + ["genotype"]
    rows = []
    for record in records:
        sampled = record.get("trajectory", {})
        top = np.concatenate([p.max(axis=1) for p in outputs.operation_probabilities(record).values()])
        row = [record["epoch"] + 1, record["stage"] + 1, record["k"],
               "/".join(f"{v:.2f}" for v in (top.min(), np.median(top), top.max())),
               f"{sampled['distinct_genotypes']} / {sampled['samples']}" if sampled else "",
               f"{sampled['op_entropy']:.3f}" if sampled else ""]
        row += [_format(_chosen(record, dataset, split)) for dataset in DATASETS]
        row += ["/".join(f"{band[s]:.2f}" for s in ("min", "median", "max")) if band else ""
                for band in (_band(record, dataset, split) for dataset in DATASETS)]
        rows.append(row + [f"`{record['text']}`"])
    kept = [column for column in range(len(header)) if any(row[column] != "" for row in rows)]
    return [header[c] for c in kept], [[row[c] for c in kept] for row in rows]


def _format(value):
    return "" if value is None else f"{value:.2f}"


def main(argv):
    if len(argv) != 2:
        raise ValueError("expected one MODEL_DIR: python -m drnas_tf.report MODEL_DIR [--output=report.png]")
    from drnas_tf.tables import markdown_table

    model_dir = argv[1]
    records = load_records(model_dir)
    output = FLAGS.output or os.path.join(model_dir, "report.png")
    header, rows = summary_rows(records, FLAGS.split)
    print(markdown_table(header, rows), end="")
    try:
        render(records, output, FLAGS.split)
    except OSError as error:
        raise ValueError(f"cannot write --output={output}: {error.strerror}") from None
    print(f"figure written to {output}")


if __name__ == "__main__":
    cli.run(main, "drnas_tf.report")
