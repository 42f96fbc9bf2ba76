"""Metrics against hand-computed values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import nero_cli
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


# -- flip and top probability (interpretable classification metrics) ----------------------------


def test_flip_and_top_probability_hand_computed():
    # identity is element 1; two samples, three elements
    probs = torch.tensor([
        [[0.2, 0.7, 0.1], [0.6, 0.3, 0.1]],   # element 0: s0 -> 1 (flips from 0), s1 -> 0 (same)
        [[0.5, 0.4, 0.1], [0.4, 0.3, 0.3]],   # element 1 = identity: s0 -> 0, s1 -> 0
        [[0.9, 0.05, 0.05], [0.1, 0.1, 0.8]],  # element 2: s0 -> 0 (same), s1 -> 2 (flips)
    ])
    chunk = Chunk(identity=1, reference="labels", labels=torch.tensor([0, 0]), targets={}, output=None, spec=None)
    cols = scored_columns(CLS, CLS.score(torch.log(probs), chunk), resampling=False)
    # sample-major rows: (s0,e0), (s0,e1), (s0,e2), (s1,e0), (s1,e1), (s1,e2)
    assert cols["flip"].tolist() == [True, False, False, False, False, True]
    assert cols["top_probability"] == pytest.approx([0.7, 0.5, 0.9, 0.6, 0.4, 0.8])
    flip = CLS.metric("flip")
    assert flip.higher_is_better is False and flip.unit == "fraction"
    assert TASKS["pointcloud"].metric("flip") is flip


def test_flip_rate_and_top_probability_summary_keys():
    keys = CLS.summary_keys
    assert (keys["flip_rate"].metric.name, keys["flip_rate"].reduction) == ("flip", "orbit")
    assert keys["flip_rate"].higher_is_better is False
    assert (keys["top_probability"].metric.name, keys["top_probability"].reduction) == ("top_probability", "identity")
    assert "flip_rate" in CLS.table_columns
    t = _toy_table().assign(flip=[False, False, True, False, False, False],
                            top_probability=[0.9, 0.6, 0.5, 0.8, 0.8, 0.7])
    s = summarise(t, CLS)["m"]["rotation"]
    assert s["flip_rate"] == pytest.approx(1 / 6)  # one flip in 2 samples x 3 elements
    assert s["top_probability"] == pytest.approx((0.9 + 0.8) / 2)  # at the identity only
    assert "orbit_flip" not in s and "worst_element_flip" not in s


def test_no_task_column_collides_with_a_group_parameter_column():
    from orbits import parse_spec

    for rec in TASKS.values():
        names = {c.name for c in rec.columns}
        for group in rec.groups:
            size = None if rec.input_kind == "points" else (28, 28)
            params = set(parse_spec(group, image_size=size).group.columns())
            assert not names & params, (rec.name, group, names & params)


# -- the README's tables of columns and summary keys, generated from the registry ---------------

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN = "<!-- metric tables: generated from the registry by `python -m tests.test_metrics`; do not edit -->"
END = "<!-- end of metric tables -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _tasks_cell(names: list[str]) -> str:
    return "all" if names == sorted(TASKS) else ", ".join(names)


def _grouped(rows: dict[tuple, list[str]]) -> list[str]:
    return [f"| {' | '.join(_cell(str(c)) for c in (row[0], _tasks_cell(tasks), *row[1:]))} |"
            for row, tasks in rows.items()]


def metric_tables() -> str:
    """Markdown: every results column and every summary.json key of every task, with its unit,
    direction and formula, one row per distinct definition (the tasks that share it listed)."""
    cols: dict[tuple, list[str]] = {}
    keys: dict[tuple, list[str]] = {}
    for name in sorted(TASKS):
        rec = TASKS[name]
        for c in rec.columns:
            m = next((m for m in rec.metrics if m.column == c.name), None)
            better = "" if m is None else ("higher" if m.higher_is_better else "lower")
            doc = c.doc if m is None or m.name == c.name else f"{c.doc} (its mean is the metric `{m.name}`)"
            cols.setdefault((f"`{c.name}`", "" if m is None else m.unit, better, doc), []).append(name)
        for key, sk in rec.summary_keys.items():
            keys.setdefault((f"`{key}`", "higher" if sk.higher_is_better else "lower", sk.formula), []).append(name)
    return "\n".join([
        BEGIN, "", "Results columns after the parameter columns:", "",
        "| column | tasks | unit | better | meaning |", "|---|---|---|---|---|", *_grouped(cols), "",
        "`summary.json` keys per model and group (after `n_samples` and `n_elements`):", "",
        "| key | tasks | better | formula |", "|---|---|---|---|", *_grouped(keys), "", END,
    ])


def test_readme_tables_match_the_registry():
    text = README.read_text()
    assert BEGIN in text and END in text, "README lacks the metric tables; run python -m tests.test_metrics"
    block = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert block == metric_tables(), "README's metric tables differ from the registry; run python -m tests.test_metrics"


def test_readme_names_every_top_level_summary_key():
    res = nero_cli.evaluate(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)),
                            torch.rand(2, 1, 8, 8), "rotation:step=90", labels=np.array([0, 1]), device="cpu")
    text = README.read_text()
    section = text[text.index("## What is measured") : text.index("## Tasks:")]
    for key in res.summary:
        assert f"`{key}`" in section, key
    for key in next(iter(next(iter(res.summary["metrics"].values())).values())):
        assert f"`{key}`" in section, key


if __name__ == "__main__":  # rewrite the README's generated tables from the registry
    text = README.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    README.write_text(text[:start] + metric_tables() + text[end:])
