"""Progressive learning (SPEC §5): pruning operations between stages."""

import numpy as np


def prune_mask(arch_param, mask, num_keep):
    """Keeps, on every edge, the `num_keep` operations with the largest eta among those still kept.

    As the reference (`utils.prune`): already-pruned entries are never revived, and ranking uses the raw
    eta, which orders ops the same as beta, softmax(eta) and the Dirichlet mean. Ties go to the lower index.

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
