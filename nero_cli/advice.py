"""Advice on a summary: one-line warnings where a number says less than it seems to.

The classification tasks' ``equivariance_error`` is the total-variation distance between the
softmax at an element and at the identity. A model whose softmax is flat everywhere (random
weights, barely trained) has a small TV distance between any two inputs, so it *looks*
invariant. :func:`advice` names such models, per model and group, from the summary alone:

- identity ``accuracy`` within :data:`CHANCE_MARGIN` of chance, 1/K for K classes (scored
  against labels only: against the consensus, accuracy is agreement, not skill);
- ``top_probability`` (the mean over samples of the largest softmax probability at the
  identity) below :data:`CONFIDENT`.

Tasks without a ``top_probability`` summary key (detection, flow, segmentation) get no advice.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from .tasks import TaskRecord

#: "Near chance": identity accuracy within this many (fraction) points of 1/K.
CHANCE_MARGIN = 0.05
#: "Unconfident": mean top softmax probability at the identity below this.
CONFIDENT = 0.5


def _number(row: Mapping[str, Any], key: str) -> float | None:
    v = row.get(key)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _reasons(row: Mapping[str, Any], chance: float | None) -> list[str]:
    out = []
    acc, top = _number(row, "accuracy"), _number(row, "top_probability")
    if chance is not None and acc is not None and abs(acc - chance) <= CHANCE_MARGIN + 1e-12:
        out.append(f"identity accuracy {acc:.2f} is within {CHANCE_MARGIN * 100:.0f} points of chance ({chance:.2f})")
    if top is not None and top < CONFIDENT:
        out.append(f"mean top probability {top:.2f} < {CONFIDENT}")
    return out


def n_classes_of(summary: Mapping[str, Any], n_classes: int | None = None) -> int | None:
    """K: ``n_classes`` if given, else the summary's ``n_classes`` or the length of its ``class_names``."""
    k = n_classes or summary.get("n_classes") or len(summary.get("class_names") or ())
    return int(k) if k else None


def advice(summary: Mapping[str, Any], task: TaskRecord, n_classes: int | None = None) -> list[str]:
    """One-line warnings for ``summary`` (summary.json's dict: ``reference``, ``metrics`` per model
    and group) of ``task``; ``n_classes`` (K) sets chance at 1/K (default: the summary's
    ``n_classes`` or ``class_names``; unknown K skips the chance check). A model whose groups
    get the same warning gets one line naming them all."""
    if "top_probability" not in task.summary_keys:
        return []
    k = n_classes_of(summary, n_classes)
    chance = 1.0 / k if k and summary.get("reference", "labels") == "labels" else None
    out = []
    for model, groups in (summary.get("metrics") or {}).items():
        by_reason: dict[str, list[str]] = {}
        for group, row in groups.items():
            reasons = _reasons(row, chance)
            if reasons:
                by_reason.setdefault(" and ".join(reasons), []).append(str(group))
        for reason, names in by_reason.items():
            where = f"group{'s' if len(names) > 1 else ''} {', '.join(names)}"
            out.append(f"model {model} ({where}): {reason}: an unconfident model looks invariant; "
                       "its equivariance_error says little")
    return out


__all__ = ["advice", "n_classes_of", "CHANCE_MARGIN", "CONFIDENT"]
