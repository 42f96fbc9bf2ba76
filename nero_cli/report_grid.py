"""The orbit elements of a ``nero report`` view, and how runs of the same group on different grids share it.

Each group of each run is a :class:`Member` with its own elements (their parameter values come from
``summary.csv`` and the run record). Members of the same task and group, with the same action options
and plot kind, are overlaid in one view even when their grids differ (``rotation:step=30`` beside
``rotation:step=10``): the view's elements are the union of the members' elements, matched by their
parameter values, and each member maps its own element indices into that union (:func:`unite`), so
every model is drawn at its own element positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from orbits import OrbitSpec, parse_spec
from orbits.outputs import time_reversed
from orbits.spec import IMAGE_ACTION_OPTIONS

from .report_media import rounded, rounded_list

#: The parameter columns of a point-cloud orbit that the page rotates the embedded cloud by.
QUATERNION = ("qw", "qx", "qy", "qz")
#: The options of the image action, with their defaults (the page warps thumbnails with them).
ACTION_DEFAULTS = {o.name: str(o.default) for o in IMAGE_ACTION_OPTIONS}


@dataclass
class Member:
    """One group of one run drawn in a view, with its own elements."""

    run: Any  # report_data.ReportRun
    label: str
    data_id: str
    spec: str
    kind: str
    plot_params: list[str]
    params: dict[str, list]  # per parameter column, the value at each of the member's elements
    n: int
    identity: int
    labels: list[str]
    parsed: OrbitSpec | None
    elements: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # own index -> view index

    @property
    def key(self) -> tuple:
        """Members with equal keys are overlaid: same task, group, non-default action options, plot kind
        and plotted parameters (the grid may differ). A spec this nero cannot parse is its own key."""
        if self.parsed is None:
            return (self.run.task.name, "spec", self.spec)
        p = self.parsed
        extra = tuple(sorted((k, str(v)) for k, v in p.action.items() if p.action_defaults.get(k) != v))
        return (self.run.task.name, p.name, extra, self.kind, tuple(self.plot_params))


def _element_rows(agg: pd.DataFrame, label: str) -> pd.DataFrame:
    """One summary.csv row per element of group ``label`` (the "all" class when there is one)."""
    rows = agg[agg["group"] == label]
    rows = rows[rows["class"] == "all"] if (rows["class"] == "all").any() else rows
    return rows.drop_duplicates("element").sort_values("element")


def _element_params(rows: pd.DataFrame, param_columns: Sequence[str], n: int) -> dict[str, list]:
    """Per parameter column of the group, its value at each element (text columns stay text)."""
    params: dict[str, list] = {}
    elements = rows["element"].to_numpy().astype(int)
    for p in param_columns:
        if p not in rows or rows[p].isna().all():
            continue
        values = rows[p]
        text = bool((pd.to_numeric(values, errors="coerce").isna() & values.notna()).any())
        col: list = [None] * n
        for e, v in zip(elements, values.to_numpy()):
            if 0 <= e < n:
                col[e] = str(v) if text else rounded(v, 9)
        params[p] = col
    return params


def _parse(spec: str, run: Any) -> OrbitSpec | None:
    size = run.data.get("image_size")
    image = run.task.input_kind != "points" and size and len(size) == 2
    try:
        return parse_spec(spec, image_size=tuple(int(s) for s in size) if image else None)
    except Exception:  # noqa: BLE001 - a spec this nero cannot parse only costs labels and the transformed view
        return None


def _element_labels(parsed: OrbitSpec | None, n: int, params: dict[str, list], plot_params: Sequence[str]) -> list[str]:
    if parsed is not None:
        group = parsed.group.with_identity()
        if len(group) == n:
            return group.labels()
    return [",".join(f"{p}={params[p][e]}" for p in plot_params if p in params) for e in range(n)]


def member_of(run: Any, label: str, plot: dict[str, Any], data_id: str) -> Member | None:
    """The member for group ``label`` of ``run``; None when summary.csv has no rows for it."""
    rows = _element_rows(run.agg, label)
    if rows.empty:
        return None
    n = int(plot["n_elements"])
    params = _element_params(rows, run.rec.param_columns, n)
    parsed = _parse(str(plot["spec"]), run)
    plot_params = [p for p in plot["params"] if p in params]
    identity = plot.get("identity")
    return Member(run, label, data_id, str(plot["spec"]), str(plot["kind"]), plot_params, params, n,
                  int(identity) if identity is not None and 0 <= int(identity) < n else 0,
                  _element_labels(parsed, n, params, plot_params), parsed)


# ------------------------------------------------------------------------------------------
# The union of the members' elements


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def unite(members: Sequence[Member]) -> dict[str, Any]:
    """The view's elements: the union of the members' elements matched by parameter values. One grid
    keeps its own order; different grids are ordered by their plotted parameters. Sets each member's
    ``elements`` and returns the view's ``params``, ``labels``, ``n_elements`` and ``identity``."""
    names = list(dict.fromkeys(p for mb in members for p in mb.params))
    keys: dict[tuple, int] = {}
    owner: list[tuple[Member, int]] = []
    local = []
    for mb in members:
        idx = []
        for e in range(mb.n):
            k = tuple(mb.params[p][e] if p in mb.params else None for p in names)
            if k not in keys:
                keys[k] = len(owner)
                owner.append((mb, e))
            idx.append(keys[k])
        local.append(idx)
    order = list(range(len(owner)))
    first = members[0]
    plotted = [p for p in first.plot_params if p in names]
    if len(owner) > first.n and plotted and all(_numeric(k[names.index(p)]) for k in keys for p in plotted):
        by_index = list(keys)
        order.sort(key=lambda u: tuple(by_index[u][names.index(p)] for p in plotted))
    where = {u: i for i, u in enumerate(order)}
    for mb, idx in zip(members, local):
        mb.elements = np.array([where[u] for u in idx], dtype=np.int64)
    params = {p: [owner[u][0].params.get(p, [None] * owner[u][0].n)[owner[u][1]] for u in order] for p in names}
    return {"params": params, "labels": [owner[u][0].labels[owner[u][1]] for u in order], "n_elements": len(order),
            "identity": int(first.elements[first.identity]), "plotParams": plotted}


# ------------------------------------------------------------------------------------------
# Transforms of the thumbnails


def _same_order(group: Any, params: dict[str, list]) -> bool:
    """Whether the table's elements are the group's, in its order (shared numeric columns agree)."""
    for p, vals in group.columns().items():
        if p not in params or any(isinstance(x, str) for x in vals):
            continue
        a = np.asarray([np.nan if v is None else float(v) for v in params[p]])
        if not np.allclose(a, np.asarray(vals, dtype=float), atol=1e-6, equal_nan=True):
            return False
    return True


def _member_transform(mb: Member, thumb_scale: float) -> dict[str, Any] | None:
    """Inverse 3x3 matrices of the member's elements in thumbnail pixel coordinates, the action's
    options and which elements reverse time (images); ``{"type": "points"}`` for point clouds."""
    if mb.run.task.input_kind == "points":
        return {"type": "points"} if all(q in mb.params for q in QUATERNION) else None
    if mb.parsed is None:
        return None
    group = mb.parsed.group.with_identity()
    if len(group) != mb.n or not group.is_planar or not _same_order(group, mb.params):
        return None
    try:
        size = tuple(int(s) for s in mb.run.data["image_size"])
        inv = torch.linalg.inv(group.planar(group.elements, size)).numpy()
    except (KeyError, TypeError, ValueError, RuntimeError):  # no image size, or a singular element
        return None
    s = np.array([[thumb_scale, 0, 0.5 * thumb_scale - 0.5], [0, thumb_scale, 0.5 * thumb_scale - 0.5], [0, 0, 1.0]])
    inv = s @ inv @ np.linalg.inv(s)
    inv = inv / inv[:, 2:3, 2:3]
    opts = {**ACTION_DEFAULTS, **{k: str(v) for k, v in mb.parsed.action.items()}}
    return {"type": "image", "inv": [rounded_list(m.reshape(-1), 7) for m in inv], **opts, "swap": time_reversed(group)}


def view_transform(members: Sequence[Member], data_key: str, n_elements: int, thumb_scale: float) -> dict[str, Any] | None:
    """What the page needs to apply each view element to the thumbnails of the view's data set
    (members of other data sets do not count): per element an inverse matrix, or None where no member
    of that data set has it."""
    parts = [(mb, _member_transform(mb, thumb_scale)) for mb in members if mb.run.data_key == data_key]
    first = next((t for _, t in parts if t is not None), None)
    if first is None or first["type"] == "points":
        return first
    inv: list = [None] * n_elements
    swap = [False] * n_elements
    for mb, t in parts:
        if t is None:
            continue
        for e, u in enumerate(mb.elements.tolist()):
            if inv[u] is None:
                inv[u], swap[u] = t["inv"][e], t["swap"][e]
    return {**first, "inv": inv, "swap": swap}


__all__ = ["Member", "member_of", "unite", "view_transform", "QUATERNION", "ACTION_DEFAULTS"]
