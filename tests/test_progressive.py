"""Progressive learning: pruning by eta, and net2wider widening of weights and momentum (docs/method.md §5)."""

import numpy as np
import pytest
import tensorflow as tf

from drnas_tf import progressive
from drnas_tf.search_model import Searcher
from drnas_tf.spaces.darts.supernet import DartsSupernet
from drnas_tf.spaces.nb201.supernet import Nb201Supernet


def test_prune_keeps_largest_eta_and_never_revives():
    eta = np.array([[0.3, -1.0, 0.5, 0.1, 0.0], [1.0, 1.0, 0.0, 0.0, 2.0]])
    mask = np.ones((2, 5), bool)
    mask[0, 2] = False  # pruned earlier: its large eta must not bring it back
    kept = progressive.prune_mask(eta, mask, 2)
    np.testing.assert_array_equal(kept, [[True, False, False, True, False], [True, False, False, False, True]])
    assert progressive.prune_mask(eta, np.ones((2, 5), bool), 1).sum() == 2
    with pytest.raises(ValueError, match="num_keep=5 must be between 1 and the 4 operations"):
        progressive.prune_mask(eta, mask, 5)


def test_duplication_map_keeps_old_channels_first():
    mapping = progressive.duplication_map(4, 8, np.random.default_rng(0))
    assert mapping[:4].tolist() == [0, 1, 2, 3] and len(mapping) == 8 and mapping.max() < 4


def momentum_slots(searcher):
    optimizer = searcher.weight_optimizer
    return {v.path: optimizer.momentums[optimizer._get_variable_index(v)] for v in searcher.supernet.weight_variables}


def test_nb201_widening_copies_kernels_and_momentum_along_the_same_maps():
    old = Searcher(Nb201Supernet(10, 8, 1, 4))
    for slot in momentum_slots(old).values():
        slot.assign(tf.random.normal(slot.shape))
    mask = np.ones((6, 5), bool)
    mask[:, [0, 4]] = False  # keep skip, 1x1 and 3x3 convs
    new = Searcher(Nb201Supernet(10, 8, 1, 2, masks={"cell": mask}))
    maps = progressive.widen_supernet(old.supernet, new.supernet, np.random.default_rng(1),
                                      momentum_slots(old), momentum_slots(new))
    suffix = "cell_0_0/edge_3_1/nor_conv_3x3/conv/kernel"
    old_var = next(v for v in old.supernet.variables if v.path.endswith(suffix))
    new_var = next(v for v in new.supernet.variables if v.path.endswith(suffix))
    assert old_var.shape == (3, 3, 2, 2) and new_var.shape == (3, 3, 4, 4)
    m_in, m_out = maps[suffix][2], maps[suffix][3]
    expected = old_var.numpy()[:, :, m_in][:, :, :, m_out]
    np.testing.assert_array_equal(new_var.numpy(), expected)
    np.testing.assert_array_equal(new_var.numpy()[:, :, :2, :2], old_var.numpy())
    old_slot, new_slot = momentum_slots(old)[old_var.path], momentum_slots(new)[new_var.path]
    np.testing.assert_array_equal(new_slot.numpy(), old_slot.numpy()[:, :, m_in][:, :, :, m_out])
    bn_mean = next(v for v in new.supernet.variables if v.path.endswith("edge_3_1/nor_conv_3x3/bn/moving_mean"))
    assert maps["cell_0_0/edge_3_1/nor_conv_3x3/bn/moving_mean"][0] is m_out
    assert bn_mean.shape == (4,)
    # pruned ops have no variables in the new supernet; unchanged layers are copied as they are
    assert not any("avg_pool" in v.path or "none" in v.path for v in new.supernet.variables)
    for suffix in ("stem/conv/kernel", "classifier/linear/kernel", "arch_cell"):
        a = next(v for v in old.supernet.variables if v.path.endswith(suffix))
        b = next(v for v in new.supernet.variables if v.path.endswith(suffix))
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert new.supernet(tf.zeros([1, 8, 8, 3])).shape == (1, 10)


def test_darts_sep_conv_widening_uses_a_fresh_map_for_the_second_depthwise():
    old = DartsSupernet(10, 8, 3, 4)
    new = DartsSupernet(10, 8, 3, 2)
    maps = progressive.widen_supernet(old, new, np.random.default_rng(2))
    prefix = "cell_0/edge_2_0/sep_conv_5x5"
    first_out = maps[f"{prefix}/first/pointwise/kernel"][3]
    assert maps[f"{prefix}/first/bn/moving_mean"][0] is first_out
    assert maps[f"{prefix}/second/depthwise/kernel"][2] is not first_out
    reduce_prefix = "cell_1/edge_2_0/skip_connect"  # a FactorizedReduce on a reduction edge
    halves = maps[f"{reduce_prefix}/conv_1/kernel"][3], maps[f"{reduce_prefix}/conv_2/kernel"][3]
    np.testing.assert_array_equal(maps[f"{reduce_prefix}/bn/moving_mean"][0],
                                  np.concatenate([halves[0], 2 + halves[1]]))  # old half = 16 // 4 // 2


def test_widening_refuses_to_revive_a_pruned_op():
    mask = np.ones((6, 5), bool)
    mask[:, 3] = False
    old = Nb201Supernet(10, 8, 1, 4, masks={"cell": mask})
    with pytest.raises(ValueError, match="'nor_conv_3x3' was pruned before"):
        progressive.widen_supernet(old, Nb201Supernet(10, 8, 1, 2), np.random.default_rng(0))
