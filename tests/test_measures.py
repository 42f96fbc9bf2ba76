"""The metric registry and its running-sum reductions, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from nero_cli.measures import REDUCTIONS, Stats
from nero_cli.tasks import TASKS

ROWS = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])  # 2 samples x 3 elements, element 0 = identity


def test_reductions_hand_computed():
    st = Stats.empty(3).update(ROWS)
    assert st.compute("identity", 0, True) == 1.0
    assert st.compute("orbit", 0, True) == pytest.approx(5 / 6)
    assert st.compute("worst", 0, True) == 0.5  # curve [1, .5, 1]
    assert st.compute("worst", 0, False) == 1.0
    assert st.compute("all", 0, True) == 0.5  # sample 0 fails at element 1
    assert st.compute("max", 0, True) == 1.0
    assert st.compute("spread", 0, True) == 0.5


def test_running_sums_merge_by_adding():
    whole = Stats.empty(3).update(ROWS)
    parts = Stats.empty(3).update(ROWS[:1]).merge(Stats.empty(3).update(ROWS[1:]))
    for red in REDUCTIONS:
        assert parts.compute(red, 0, True) == pytest.approx(whole.compute(red, 0, True))


def test_sample_weights_equal_repeating_samples():
    weighted = Stats.empty(3).update(ROWS, weights=np.array([2.0, 0.0]))
    repeated = Stats.empty(3).update(np.stack([ROWS[0], ROWS[0]]))
    for red in REDUCTIONS:
        assert weighted.compute(red, 0, True) == pytest.approx(repeated.compute(red, 0, True))
    assert weighted.compute("max", 0, True) == 1.0 and weighted.compute("all", 0, True) == 0.0


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_metric_and_summary_key_is_described(task):
    rec = TASKS[task]
    assert rec.primary in {m.name for m in rec.metrics}
    for m in rec.metrics:
        assert m.label and m.unit and m.doc, m.name
        assert any(c.name == m.column for c in rec.columns), f"{m.name} reads a column the task does not write"
    keys = rec.summary_keys
    assert keys["orbit_spread"].higher_is_better is False
    assert keys["max_equivariance_error"].higher_is_better is False
    assert all("{" not in k.formula and k.metric.name in k.formula for k in keys.values())
    assert set(rec.table_columns) <= set(keys)


def test_a_weight_matrix_computes_every_resample_at_once():
    w = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])
    batch = Stats.empty(3).update(ROWS, weights=w)
    for red in REDUCTIONS:
        one_by_one = [Stats.empty(3).update(ROWS, weights=row).compute(red, 0, True) for row in w]
        assert np.allclose(batch.compute(red, 0, True), one_by_one)


def test_readme_documents_every_reduction_as_the_registry_does():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for r in REDUCTIONS.values():
        assert f"| `{r.key.format(m='M')}` | {r.formula.format(m='M')} |" in readme, r.name


def test_orbit_mean_counts_each_distinct_element_once():
    # elements 1 and 2 are the same group element (weights 1/2 each): the orbit mean is that of [1, 0.5]
    rows = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    st = Stats.empty(3).update(rows)
    w = np.array([1.0, 0.5, 0.5])
    assert st.compute("orbit", 0, True, w) == pytest.approx((1.0 + 0.5) / 2)
    assert st.compute("orbit", 0, True) == pytest.approx(4 / 6)
