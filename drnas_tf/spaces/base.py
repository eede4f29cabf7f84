"""What a search space is: everything the rest of the library asks of one, in one object.

A space owns its candidate operations and edge layout, its genotype type with its text forms and derivation,
its supernet and its discrete network, and its defaults. The library reaches a space only through this
interface, by name (`spaces.get_space`), so a new space is one package (or one file) with a `SearchSpace`
subclass passed to `spaces.register`; nothing outside it names the space.
"""


class SearchSpace:
    """A search space. Subclasses set the attributes and implement the methods that raise.

    Attributes:
        name: the registry's and `--search_space`'s name; also every genotype's `space` field.
        ops: candidate operation names, the columns of every architecture tensor, in order.
        arch_shapes: {cell type: (edges, len(ops))}, one learnt architecture tensor per cell type.
        genotype_type: the genotype class (`from_json`, `to_json`, `to_text`, `space`).
        published: {name: genotype} that `--genotype=NAME` accepts.
        depth_flag: the network setting that sets its depth: "layers" or "cells_per_stage".
        network_defaults: {stem: {"init_channels", "cells", "k"}}: the paper's supernet and network sizes per
            dataset stem ("cifar" covers the CIFAR-style datasets); a stem it lacks is refused.
        search_defaults: {stem: search settings (batch_size, learning rates, ks, num_keeps, stage_epochs,
            arch_warmup_epochs, arch_grad_clip, seed, ...)}: the paper's search recipe.
        network_options: {network setting: default} its supernet takes beyond the common ones (they are
            NetworkConfig fields and flags, e.g. nb201_bypass).
        retrain_options: retraining settings its discrete network supports beyond the common ones
            ("auxiliary", "drop_path_prob"); the others are off for it and refused when asked for.
        relaxation_defaults: {relaxation name: {setting: value}} where this space's default differs from the
            relaxation's own.
        nas_bench: whether NAS-Bench-201 look-ups apply to its genotypes.
    """

    name = None
    ops = ()
    arch_shapes = {}
    genotype_type = None
    published = {}
    depth_flag = "layers"
    network_defaults = {}
    search_defaults = {}
    network_options = {}
    retrain_options = ()
    relaxation_defaults = {}
    nas_bench = False

    def recognizes(self, text):
        """Whether `text` is in this space's genotype text form (then `parse_text` reads it or says why not)."""
        return False

    def parse_text(self, text):
        """The genotype a text in this space's form describes; a one-line ValueError otherwise."""
        raise NotImplementedError

    def derive(self, weights):
        """The genotype that {cell type: [edges, ops] numpy weights} select (docs/method.md §6)."""
        raise NotImplementedError

    def random_genotype(self, rng):
        """A genotype drawn uniformly (as the space defines it) with a numpy Generator."""
        raise NotImplementedError

    def edge_names(self, cell_type):
        """Display names of a cell type's edges, in the architecture tensor's row order."""
        return [f"{cell_type} {edge}" for edge in range(self.arch_shapes[cell_type][0])]

    def make_op(self, name, channels, stride, affine):
        """The Keras layer of candidate operation `name` on `channels` channels."""
        raise NotImplementedError

    def check_k(self, init_channels, k):
        """Raises a one-line ValueError when partial-channel `k` cannot split the space's channels; the
        library has already checked that k divides C, 2C and 4C."""

    def build_supernet(self, num_classes, *, init_channels, depth, k, stem="cifar", masks=None,
                       method="dirichlet", recompute_cells="none", **network_options):
        """The supernet (a supernet.Supernet) with every variable built."""
        raise NotImplementedError

    def build_network(self, genotype, num_classes, *, init_channels=None, depth=None, stem=None, auxiliary=None,
                      drop_path_prob=None):
        """The discrete network of `genotype` (arguments left None take the network's defaults), with every
        variable built; it has `count_params_excluding_aux()` and takes `call(images, training, seed)`."""
        raise NotImplementedError

    def __repr__(self):
        return f"<search space {self.name}>"
