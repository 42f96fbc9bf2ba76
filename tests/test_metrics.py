"""Metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from nero_cli import metrics
from nero_cli.summary import aggregate, rank_samples, summarise
from nero_cli.tasks import TASKS, Chunk
from nero_cli.tasks.base import scored_columns

CLS = TASKS["classification"]


def test_total_variation_hand_computed():
    p = torch.tensor([0.5, 0.3, 0.2])
    q = torch.tensor([0.2, 0.3, 0.5])
    assert metrics.total_variation(p, q).item() == pytest.approx(0.3)  # (0.3 + 0 + 0.3) / 2
    assert metrics.total_variation(p, p).item() == 0
    one_hot_a, one_hot_b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert metrics.total_variation(one_hot_a, one_hot_b).item() == 1.0


def test_consensus_is_argmax_of_mean_not_a_vote_of_means_of_ids():
    # three orbit elements, one sample: votes 2,2,0 but mean probability favours class 0
    probs = torch.tensor([[[0.45, 0.0, 0.55]], [[0.45, 0.0, 0.55]], [[1.0, 0.0, 0.0]]])
    assert metrics.consensus_class(probs).tolist() == [0]  # mean: [0.633, 0, 0.367]


def test_class_confidence_gathers_reference_class():
    probs = torch.tensor([[[0.1, 0.9], [0.8, 0.2]], [[0.3, 0.7], [0.6, 0.4]]])  # (G=2, B=2, K=2)
    out = metrics.class_confidence(probs, torch.tensor([1, 0]))
    assert torch.allclose(out, torch.tensor([[0.9, 0.8], [0.7, 0.6]]))


def test_classification_score_columns():
    logits = torch.log(torch.tensor([
        [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]],   # identity
        [[0.2, 0.7, 0.1], [0.1, 0.1, 0.8]],   # element 1
    ]))
    chunk = Chunk(identity=0, reference="labels", labels=torch.tensor([0, 2]), targets={}, output=None, spec=None)
    cols = scored_columns(CLS, CLS.score(logits, chunk), resampling=False)
    # rows are sample-major: (s0,e0), (s0,e1), (s1,e0), (s1,e1)
    assert cols["prediction"].tolist() == [0, 1, 2, 2]
    assert cols["correct"].tolist() == [True, False, True, True]
    assert cols["confidence"] == pytest.approx([0.7, 0.2, 0.8, 0.8])
    assert cols["equivariance_error"] == pytest.approx([0.0, 0.5, 0.0, 0.0])
    assert cols["consensus"].tolist() == [0, 0, 2, 2]  # mean [0.45, 0.45, 0.1] ties -> lowest id


def _toy_table():
    # 2 samples x 3 elements, element 0 = identity
    return pd.DataFrame({
        "model": ["m"] * 6, "sample": [0, 0, 0, 1, 1, 1], "label": [1, 1, 1, 0, 0, 0],
        "group": ["rotation"] * 6, "element": [0, 1, 2] * 2, "identity": [True, False, False] * 2,
        "angle": [0.0, 120.0, 240.0] * 2,
        "prediction": [1, 1, 0, 0, 0, 0], "reference": [1, 1, 1, 0, 0, 0],
        "confidence": [0.9, 0.6, 0.3, 0.8, 0.8, 0.7], "correct": [True, True, False, True, True, True],
        "consensus": [1, 1, 1, 0, 0, 0], "equivariance_error": [0.0, 0.3, 0.6, 0.0, 0.1, 0.1],
    })


def test_summary_hand_computed():
    s = summarise(_toy_table(), CLS)["m"]["rotation"]
    assert s["accuracy"] == 1.0
    assert s["orbit_accuracy"] == pytest.approx(5 / 6)
    assert s["robust_accuracy"] == 0.5  # sample 0 fails at 240
    assert "mean_confidence" not in s and s["orbit_confidence"] == pytest.approx(np.mean([0.9, 0.6, 0.3, 0.8, 0.8, 0.7]))
    assert s["equivariance_error"] == pytest.approx(1.1 / 6)
    assert s["max_equivariance_error"] == pytest.approx(0.6)
    # aggregate confidence curve: [0.85, 0.7, 0.5] -> spread 0.35
    assert s["orbit_spread"] == pytest.approx(0.35)


def test_aggregate_all_and_per_class():
    agg = aggregate(_toy_table(), ["angle"], CLS, class_names=["zero", "one"])
    all_rows = agg[agg["class"] == "all"].sort_values("element")
    assert all_rows["confidence"].tolist() == pytest.approx([0.85, 0.7, 0.5])
    assert all_rows["accuracy"].tolist() == pytest.approx([1.0, 1.0, 0.5])
    one = agg[agg["class"] == "one"].sort_values("element")
    assert one["confidence"].tolist() == pytest.approx([0.9, 0.6, 0.3])
    assert set(agg["class"]) == {"all", "zero", "one"}
    assert (agg["n"][agg["class"] == "all"] == 2).all()


def test_rank_samples_by_mean_confidence():
    t = _toy_table()
    assert rank_samples(t, "worst", 1) == [0]
    assert rank_samples(t, "best", 2) == [1, 0]
