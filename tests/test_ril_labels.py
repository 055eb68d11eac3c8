"""Known answers for the information weight (Eq. 6) and densification (Eq. 4, 5, Full)."""

import math

import numpy as np
import pytest
import torch

from engine.errors import RilError
from ril_tools.labels import densify, information_weight, teacher_argmax


def _topk_pairs(probs, k):
    p = torch.tensor(probs, dtype=torch.float64)
    values, indices = torch.topk(p, k, dim=-1)
    return indices, torch.log(values).float()


def test_information_weight_uniform_one_hot_and_hand_value():
    probs = torch.tensor([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]])
    w = information_weight(probs)
    # [0.5, 0.5, 0, 0]: H = log 2, so w = 1 - log 2 / log 4 = 0.5
    assert torch.allclose(w, torch.tensor([0.0, 1.0, 0.5]), atol=1e-6)


def test_information_weight_matches_formula_on_random_rows():
    probs = torch.softmax(torch.randn(7, 11, generator=torch.Generator().manual_seed(0)), dim=1).double()
    expected = 1 - (-(probs * torch.log(probs + 1e-12)).sum(1)) / math.log(11)
    assert torch.allclose(information_weight(probs), expected, atol=1e-12)
    assert information_weight(probs.half()).dtype == torch.float32  # half input is computed in float32


def test_information_weight_rejects_bad_shape():
    with pytest.raises(RilError, match="N, C"):
        information_weight(torch.ones(4))


def test_densify_ms_and_mr_known_answers():
    indices, logprobs = _topk_pairs([[0.5, 0.3, 0.15, 0.05]], 2)
    ms = densify(indices, logprobs, 4, "ms")
    mr = densify(indices, logprobs, 4, "mr")
    assert torch.allclose(ms, torch.tensor([[0.5, 0.3, 0.1, 0.1]]), atol=1e-6)
    assert torch.allclose(mr, torch.tensor([[0.625, 0.375, 0.0, 0.0]]), atol=1e-6)


def test_densify_scatters_to_class_order():
    # top-2 of [0.05, 0.15, 0.3, 0.5] are classes 3 and 2 (stored best first)
    indices, logprobs = _topk_pairs([[0.05, 0.15, 0.3, 0.5]], 2)
    assert indices.tolist() == [[3, 2]]
    assert torch.allclose(densify(indices, logprobs, 4, "ms"), torch.tensor([[0.1, 0.1, 0.3, 0.5]]), atol=1e-6)
    assert teacher_argmax(indices).tolist() == [3]


def test_densify_full_recovers_distribution_and_batches():
    probs = torch.softmax(torch.randn(5, 6, generator=torch.Generator().manual_seed(1)), dim=1)
    indices, logprobs = _topk_pairs(probs.tolist(), 6)
    dense = densify(indices, logprobs, 6, "full")
    assert dense.shape == (5, 6)
    assert torch.allclose(dense, probs, atol=1e-6)
    assert torch.allclose(densify(indices, logprobs, 6, "ms"), probs, atol=1e-6)  # K == C: nothing to share


def test_densify_rows_sum_to_one_and_clamp_fp16_rounding():
    # fp16 log-probs whose exp sums to slightly more than 1: the shared mass must clamp to 0, not go negative
    indices = torch.tensor([[0, 1]])
    logprobs = torch.tensor([[math.log(0.6), math.log(0.4001)]], dtype=torch.float16)
    ms = densify(indices, logprobs, 4, "ms")
    assert (ms >= 0).all() and ms[0, 2:].tolist() == [0.0, 0.0]
    probs = torch.softmax(torch.randn(9, 10, generator=torch.Generator().manual_seed(2)), dim=1)
    idx, lp = _topk_pairs(probs.tolist(), 3)
    for mode in ("ms", "mr"):
        assert torch.allclose(densify(idx, lp.half(), 10, mode).sum(1), torch.ones(9), atol=2e-3)


def test_densify_accepts_numpy_from_the_reader():
    indices = np.array([[1, 0]], dtype=np.int64)
    logprobs = np.log(np.array([[0.7, 0.2]], dtype=np.float32))
    out = densify(indices, logprobs, 3, "ms")
    assert torch.allclose(out, torch.tensor([[0.2, 0.7, 0.1]]), atol=1e-6)


def test_densify_errors_name_the_problem():
    indices, logprobs = _topk_pairs([[0.5, 0.3, 0.15, 0.05]], 2)
    with pytest.raises(RilError, match="unknown densify mode"):
        densify(indices, logprobs, 4, "soft")
    with pytest.raises(RilError, match="label-kind full"):
        densify(indices, logprobs, 4, "full")
    with pytest.raises(RilError, match="same shape"):
        densify(indices, logprobs[:, :1], 4, "ms")
    with pytest.raises(RilError, match="K=2"):
        densify(indices, logprobs, 1, "ms")
