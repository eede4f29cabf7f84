"""Progressive learning (docs/method.md §5): pruning operations between stages."""

import numpy as np


def prune_mask(arch_param, mask, num_keep):
    """Keeps, on every edge, the `num_keep` operations with the largest eta among those still kept.

    The mask half of the reference's `utils.prune`: already-pruned entries are never revived, and ranking uses
    the raw eta, which orders ops the same as beta, softmax(eta) and the Dirichlet mean. Ties go to the lower
    index. The other half, setting the pruned entries of eta to 0, is search_task.next_stage's.

    Args:
        arch_param: float [edges, ops] architecture parameters.
        mask: bool [edges, ops], the current mask.
        num_keep: operations to keep per edge; at most the number currently kept on every edge.
    Returns:
        the new bool [edges, ops] mask.
    """
    arch_param, mask = np.asarray(arch_param, dtype=np.float64), np.asarray(mask, dtype=bool)
    kept_per_edge = mask.sum(axis=1)
    if not 1 <= num_keep <= kept_per_edge.min():
        raise ValueError(f"num_keep={num_keep} must be between 1 and the {kept_per_edge.min()} operations "
                         "currently kept on every edge")
    ranked = np.where(mask, arch_param, -np.inf)
    order = np.argsort(-ranked, axis=1, kind="stable")[:, :num_keep]
    new_mask = np.zeros_like(mask)
    np.put_along_axis(new_mask, order, True, axis=1)
    return new_mask


def duplication_map(old_width, new_width, rng):
    """new channel -> old channel: the old channels in order, then random copies (net2wider, no rescaling)."""
    if new_width < old_width:
        raise ValueError(f"cannot widen {old_width} channels to {new_width}")
    return np.concatenate([np.arange(old_width), rng.integers(0, old_width, new_width - old_width)])


def _op_channel_maps(op, old_width, new_width, rng):
    """{relative variable path: {axis: map}} for one partial-channel operation (docs/method.md §5.3).

    Each stage of the op's channel chain gets its own random map, shared by the layers that meet on it:
    ReLUConvBN (in, out); DilConv (depthwise = pointwise in, pointwise out = BN); SepConv the same twice with
    a fresh map for the second depthwise (the reference's quirk); FactorizedReduce one in- and one out-map
    per branch, the BN following the concatenated out-maps; pooling's BN a random map.
    """
    def new_map():
        return duplication_map(old_width, new_width, rng)

    kind = type(op).__name__
    if kind == "ReLUConvBN":
        m_in, m_out = new_map(), new_map()
        return {"conv/kernel": {2: m_in, 3: m_out}, "bn": {0: m_out}}
    if kind == "DilConv":
        m_dw, m_out = new_map(), new_map()
        return {"depthwise/kernel": {2: m_dw}, "pointwise/kernel": {2: m_dw, 3: m_out}, "bn": {0: m_out}}
    if kind == "SepConv":
        maps = {}
        for block in ("first", "second"):
            m_dw, m_out = new_map(), new_map()
            maps.update({f"{block}/depthwise/kernel": {2: m_dw}, f"{block}/pointwise/kernel": {2: m_dw, 3: m_out},
                         f"{block}/bn": {0: m_out}})
        return maps
    if kind == "FactorizedReduce":
        half_old, half_new = old_width // 2, new_width // 2
        outs = [duplication_map(half_old, half_new, rng) for _ in range(2)]
        return {"conv_1/kernel": {2: new_map(), 3: outs[0]}, "conv_2/kernel": {2: new_map(), 3: outs[1]},
                "bn": {0: np.concatenate([outs[0], half_old + outs[1]])}}
    if kind == "Pool" and op.bn is not None:
        return {"bn": {0: new_map()}}
    return {}


def _relative_path(variable, root):
    return variable.path[len(root.name) + 1:] if variable.path.startswith(root.name + "/") else variable.path


def _mapped(value, axis_maps):
    for axis, mapping in axis_maps.items():
        value = np.take(value, mapping, axis=axis)
    return value


def widen_supernet(old, new, rng, old_slots=None, new_slots=None):
    """Copies a supernet's state into its pruned/widened successor (docs/method.md §5.2-5.3).

    Variables of the same shape are copied as they are (stem, preprocessing, heads, eta). The kept
    operations of every mixed edge are widened from old.k to new.k by `duplication_map`s; optimizer slots
    (e.g. SGD momentum) follow the same maps as their variables.

    Args:
        old, new: supernets of the same space and size; new.masks must keep a subset of old.masks.
        rng: numpy Generator drawing the duplicated channels.
        old_slots, new_slots: optional {variable path: slot variable} of the old and new weight optimizer.
    Returns:
        {relative variable path: {axis: map}} for every widened variable (for tests and logs).
    """
    old_vars = {_relative_path(v, old): v for v in old.variables}
    maps = {}
    for edge_path, old_edge, new_edge in _edge_pairs(old, new):
        old_ops = dict(zip((old_edge.candidates[i] for i in old_edge.active), old_edge.ops))
        for index, new_op in zip(new_edge.active, new_edge.ops):
            name = new_edge.candidates[index]
            if name not in old_ops:
                raise ValueError(f"{edge_path}: operation {name!r} was pruned before; it cannot come back")
            op_maps = _op_channel_maps(old_ops[name], old_edge.partial_channels, new_edge.partial_channels, rng)
            for suffix, axis_maps in op_maps.items():
                for variable in new_op.variables:
                    relative = _relative_path(variable, new)
                    if relative.startswith(f"{edge_path}/{name}/{suffix}"):
                        maps[relative] = axis_maps
    for variable in new.variables:
        relative = _relative_path(variable, new)
        if relative not in old_vars:
            raise ValueError(f"no variable {relative!r} in the previous stage's supernet")
        axis_maps = maps.get(relative, {})
        source = old_vars[relative]
        value = _mapped(source.numpy(), axis_maps)
        if value.shape != tuple(variable.shape):
            raise ValueError(f"cannot carry {relative!r} from shape {source.shape} to {variable.shape}")
        variable.assign(value)
        if old_slots is not None and source.path in old_slots and variable.path in new_slots:
            new_slots[variable.path].assign(_mapped(old_slots[source.path].numpy(), axis_maps))
    return maps


def _edge_pairs(old, new):
    """(relative edge path, old MixedOp, new MixedOp) for every mixed edge of two same-shaped supernets."""
    from drnas_tf.supernet.mixed_op import MixedOp

    old_edges = {layer.path: layer for layer in old._flatten_layers() if isinstance(layer, MixedOp)}
    for layer in new._flatten_layers():
        if isinstance(layer, MixedOp):
            relative = layer.path[len(new.name) + 1:]
            yield relative, old_edges[f"{old.name}/{relative}"], layer
